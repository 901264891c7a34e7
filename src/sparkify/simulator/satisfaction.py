"""The ``satisfaction`` churn model: churn with known drivers (``simulate(churn_model=...)``).

eventsim's churn is memoryless: every page view carries the same small chance of leading
to Cancel. Here each registered user carries a dissatisfaction D that the user's own
experiences move, D shapes how much the user plays, and the daily chance to cancel is a
stated function of D and the level. The ground truth keeps each user's daily hazard, so a
model trained on such a log can be judged against what it should have found.

The rules (all constants are fields of :class:`SatisfactionModel`, stored in the run spec):

- Counters of recent experience, each decaying with a half-life of ``half_life_days``:
  songs played, and the planted drivers: thumbs down given, adverts heard while free,
  help visits (the ``share_weights``: what share of the listening they spoil), error
  pages and Submit Downgrade (the ``shock_weights``: each one a blow of its own). They
  are updated at the end of each session from the events it emitted.
- ``D = baseline_u + sum_k share_weight_k * counter_k / (songs + prior_songs)
  + sum_j shock_weight_j * counter_j``: how much of the recent listening went wrong,
  whatever the amount of listening, plus the recent blows;
  ``baseline_u ~ N(0, baseline_sd)`` per user (unobserved).
- Temperament: each user is equally likely to have any of ``temperaments`` (k), which
  multiplies the propensity to visit each page of ``temperament_pages`` by k to that
  page's power: fussy users give more thumbs down and visit help more (k), and give
  fewer thumbs up (k^-1/2), every day: a lasting trait the log shows. ``page_scale``
  keeps the pooled page ratios where the template has them.
- Daily hazard, decided at each midnight UTC in the window while the user is registered
  (Logged In or Logged Out): ``h = min(max_hazard, hazard[level] * exp(hazard_slope * D))``,
  with D and the level as they are at that midnight. A user who decides to cancel visits
  at a uniform time that day (or at the next planned session, if that is earlier; or
  right after the session in progress) and
  goes Settings -> Cancel -> Cancellation Confirmation (logging in first when logged out).
- Engagement ``e = clip(exp(-engagement_slope * (D - reference)), *engagement_range)``:
  the gap between sessions is divided by e and each state's session-end probability is
  multiplied by 1/e (rounded to one of :data:`ENGAGEMENT_LEVELS`), so a user losing
  interest plays fewer and shorter sessions for the days or weeks before leaving.
- The template's own Cancel edges are switched off (page scale 0): cancelling happens
  only through the hazard.
- Start-up users live ``warmup_days`` before the window (not written, but counted, at
  their initial level) so that their counters start full.

The ground truth adds per user ``daily_hazard`` (the hazard decided at each midnight of
the window, NaN where none was), ``daily_state`` (the state it was decided from:
:data:`STATE_FIELDS` per day, flattened), ``baseline`` and ``temperament``. From them:
:func:`true_probability` (the exact chance to cancel within a horizon given the state at
t, simulated forward: the ceiling), :func:`hazard_at` with :func:`horizon_probability`
(the daily hazard at t held over the horizon) and :func:`driver_contributions` (each
driver's part of the log-hazard at t).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

CHURN_MODELS = ("eventsim", "satisfaction")
DAY = 86_400
#: Engagement multipliers a session can run at (each is a compiled model variant).
ENGAGEMENT_LEVELS = (1.25, 1.0, 0.8, 0.64, 0.5, 0.4)
#: The counters kept per user, in order: songs first, then the per-song drivers.
COUNTERS = ("songs", "thumbs_down", "adverts_free", "errors", "help", "downgrades")
#: What the truth records of a user at each midnight (``daily_state``): the counters, the
#: time they were last updated, the (auth, level) group and the end of the last session.
STATE_FIELDS = (*COUNTERS, "t_ref", "group", "t_last")
#: Page (and level, where it matters) of each counter.
COUNTER_PAGES = {"songs": ("NextSong", None), "thumbs_down": ("Thumbs Down", None),
                 "adverts_free": ("Roll Advert", "free"), "errors": ("Error", None), "help": ("Help", None),
                 "downgrades": ("Submit Downgrade", None)}
#: The planted drivers of a satisfaction run and the model features that measure each one
#: (``level``: the base hazard differs by level).
DRIVER_FEATURES = {
    "thumbs_down": ("thumbs_down_share", "thumbs_down_per_day"),
    "adverts_free": ("adverts_per_song", "adverts_per_day"),
    "errors": ("errors_per_day",),
    "help": ("help_per_day",),
    "downgrades": ("level_changes", "downgrade_visits_per_day"),
    "level": ("level", "paid_song_share"),
}


@dataclass(frozen=True)
class SatisfactionModel:
    """The constants of the satisfaction churn model (see the module docstring)."""

    half_life_days: float = 7.0
    warmup_days: float = 28.0
    share_weights: dict = field(default_factory=lambda: {"thumbs_down": 30.0, "adverts_free": 10.0, "help": 30.0})
    shock_weights: dict = field(default_factory=lambda: {"errors": 0.5, "downgrades": 1.0})
    prior_songs: float = 15.0
    baseline_sd: float = 0.1
    temperaments: tuple = (0.3, 1.0, 2.5)
    temperament_pages: dict = field(default_factory=lambda: {"Thumbs Down": 1.0, "Help": 1.0, "Thumbs Up": -0.5})
    page_scale: dict = field(default_factory=lambda: {"Thumbs Up": 0.87})
    hazard: dict = field(default_factory=lambda: {"free": 0.00004, "paid": 0.00005})
    hazard_slope: float = 3.0
    max_hazard: float = 0.25
    engagement_slope: float = 0.3
    reference: float = 0.75
    engagement_range: tuple = (0.4, 1.25)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SatisfactionModel:
        data = dict(data)
        for key in ("engagement_range", "temperaments"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    def daily_hazard(self, d: float, paid: bool) -> float:
        """The chance to cancel on a day that starts with dissatisfaction ``d`` at the
        given level."""
        return min(self.max_hazard, self.hazard["paid" if paid else "free"] * math.exp(self.hazard_slope * d))

    def engagement(self, d: float) -> float:
        lo, hi = self.engagement_range
        return min(hi, max(lo, math.exp(-self.engagement_slope * (d - self.reference))))


def engagement_bucket(e: float) -> int:
    """Index of the :data:`ENGAGEMENT_LEVELS` entry nearest to ``e`` (in log scale)."""
    le = math.log(e)
    return min(range(len(ENGAGEMENT_LEVELS)), key=lambda i: abs(math.log(ENGAGEMENT_LEVELS[i]) - le))


class UserMood:
    """One user's decaying experience counters and dissatisfaction.

    In: the model, the per-state counter index (-1: none; from :func:`state_counters`)
    and the user's baseline. ``update(t, counts)`` decays to time t (epoch s) and adds a
    session's counts per counter; ``dissatisfaction(t)`` is D at time t."""

    __slots__ = ("m", "baseline", "c", "t_ref", "rate", "shares", "shocks")

    def __init__(self, model: SatisfactionModel, baseline: float):
        self.m = model
        self.baseline = baseline
        self.c = [0.0] * len(COUNTERS)
        self.t_ref = None
        self.rate = math.log(2) / (model.half_life_days * DAY)
        self.shares = [(COUNTERS.index(k), w) for k, w in model.share_weights.items()]
        self.shocks = [(COUNTERS.index(k), w) for k, w in model.shock_weights.items()]

    def _decayed(self, t: int) -> list[float]:
        if self.t_ref is None or t <= self.t_ref:
            return self.c
        f = math.exp(-self.rate * (t - self.t_ref))
        return [v * f for v in self.c]

    def state(self) -> tuple:
        """The counters and when they were last updated (-1: never): the first fields of
        :data:`STATE_FIELDS`."""
        return (*self.c, -1 if self.t_ref is None else self.t_ref)

    @classmethod
    def from_state(cls, model: SatisfactionModel, baseline: float, state) -> UserMood:
        """The mood a :meth:`state` tuple (and the user's baseline) describes."""
        m = cls(model, baseline)
        n = len(COUNTERS)
        m.c = [float(v) for v in state[:n]]
        m.t_ref = None if state[n] < 0 else int(state[n])
        return m

    def update(self, t: int, counts: list[int]) -> None:
        """Decay the counters to time ``t`` and add a session's ``counts``."""
        self.c = [v + n for v, n in zip(self._decayed(t), counts)]
        self.t_ref = t

    def dissatisfaction(self, t: int) -> float:
        c = self._decayed(t)
        spoiled = sum(w * c[i] for i, w in self.shares) / (c[0] + self.m.prior_songs)
        return self.baseline + spoiled + sum(w * c[i] for i, w in self.shocks)


def state_counters(states) -> list[int]:
    """Per state (page, auth, level, method, status): the index in :data:`COUNTERS` of the
    counter it moves, or -1."""
    out = []
    for page, _auth, level, _method, _status in states:
        idx = -1
        for i, name in enumerate(COUNTERS):
            p, lv = COUNTER_PAGES[name]
            if page == p and (lv is None or lv == level):
                idx = i
        out.append(idx)
    return out


def first_midnight(start: int) -> int:
    """The first midnight UTC at or after ``start`` (epoch s): the first day decided."""
    return -(-int(start) // DAY) * DAY


def row_days(rows, spec: dict) -> np.ndarray:
    """Each row's day index in a satisfaction run (``as_of_ms`` -> days since the run's
    first midnight): the day whose midnight decision and state apply at that time."""
    return (rows["as_of_ms"].to_numpy(dtype=np.int64) // 1000 - first_midnight(spec["start"])) // DAY


def hazard_at(truth, rows, spec: dict) -> np.ndarray:
    """Each row's known daily hazard at its date (``userId``, ``as_of_ms``; the hazard
    decided at the midnight that starts that day). A day without one (the user not
    registered, or already decided to cancel) takes the base hazard of the row's
    ``level``. Raises ValueError for users not in the truth."""
    model = SatisfactionModel.from_dict(spec["satisfaction"])
    by_user = dict(zip(truth["userId"].astype(str), truth["daily_hazard"]))
    uid = rows["userId"].astype(str).tolist()
    missing = sorted(set(uid) - set(by_user))
    if missing:
        raise ValueError(f"{len(missing)} user(s) not in the ground truth, e.g. {missing[:3]}")
    days = row_days(rows, spec).tolist()
    levels = rows["level"].astype(str).tolist() if "level" in rows else ["free"] * len(rows)
    out = np.empty(len(rows))
    for i, (u, d, lv) in enumerate(zip(uid, days, levels)):
        hz = by_user[u]
        h = float(hz[d]) if 0 <= d < len(hz) else float("nan")
        out[i] = model.daily_hazard(0.0, lv == "paid") if math.isnan(h) else h
    return out


def driver_contributions(truth, rows, spec: dict) -> pd.DataFrame:
    """Each planted driver's part of the log-hazard at each row's date (``userId``,
    ``as_of_ms``), from the user's recorded state: ``hazard_slope`` x its term of D (the
    drivers of :data:`DRIVER_FEATURES` but the level), and for the level log(paid/free
    base hazard) when paid. A row without a recorded state (the user not registered, or
    already decided to cancel) gets zeros. Out: one column per driver, one row per row."""
    import pandas as pd

    from sparkify.simulator.session_tables import run_model

    model = SatisfactionModel.from_dict(spec["satisfaction"])
    paid_groups = {g for g, (_auth, level) in enumerate(run_model(truth, spec).models[0].groups) if level == "paid"}
    first = first_midnight(spec["start"])
    width = len(STATE_FIELDS)
    states = {u: np.asarray(s, dtype=np.float64).reshape(-1, width)
              for u, s in zip(truth["userId"].astype(str), truth["daily_state"])}
    days = row_days(rows, spec).tolist()
    level_effect = math.log(model.hazard["paid"] / model.hazard["free"])
    paid_group = STATE_FIELDS.index("group")
    out = {name: np.zeros(len(rows)) for name in DRIVER_FEATURES}
    for i, (u, d) in enumerate(zip(rows["userId"].astype(str).tolist(), days)):
        st = states[u][d] if 0 <= d < len(states[u]) else None
        if st is None or np.isnan(st[0]):
            continue
        c = UserMood.from_state(model, 0.0, st)._decayed(first + d * DAY)
        songs = c[0] + model.prior_songs
        for name, w in model.share_weights.items():
            out[name][i] = model.hazard_slope * w * c[COUNTERS.index(name)] / songs
        for name, w in model.shock_weights.items():
            out[name][i] = model.hazard_slope * w * c[COUNTERS.index(name)]
        out["level"][i] = level_effect * (int(st[paid_group]) in paid_groups)
    return pd.DataFrame(out, index=rows.index)


def horizon_probability(daily_hazard: np.ndarray, horizon_days: float) -> np.ndarray:
    """P(cancel within ``horizon_days``) for daily hazards held over the horizon."""
    h = np.clip(np.asarray(daily_hazard, dtype=np.float64), 0.0, 1.0)
    return 1.0 - np.power(1.0 - h, float(horizon_days))


@dataclass
class SatisfactionRun:
    """What the engine needs to run the satisfaction model: the model; per cohort, the
    compiled chain at each of :data:`ENGAGEMENT_LEVELS`; per state, its counter index;
    per (auth, level) group, whether the user is registered, is paid, and the states of a
    cancelling visit (None for guests); and the window's midnights (epoch s)."""

    model: SatisfactionModel
    variants: list  # [cohort][temperament][engagement level] -> Model
    counters: list[int]
    registered: list[bool]
    paid: list[bool]
    cancel_path: list
    first_midnight: int
    n_days: int
    warmup: int  # seconds of history simulated before the window for start-up users


def satisfaction_run(model: SatisfactionModel, cfg, cohorts, start: int, end: int) -> SatisfactionRun:
    """Compile the cohorts' chains at each engagement level (without the template's Cancel
    edges) and the per-state and per-group tables. In: the model, the eventsim config,
    the cohorts and the window (epoch s)."""
    from sparkify.simulator.eventsim_config import compile_model

    variants = []
    for c in cohorts:
        per_temper = []
        for k in model.temperaments:
            scale = {**c.page_scale, "Cancel": 0.0}
            for page, f in model.page_scale.items():
                scale[page] = scale.get(page, 1.0) * f
            for page, power in model.temperament_pages.items():
                scale[page] = scale.get(page, 1.0) * k ** power
            per_temper.append([compile_model(cfg, scale, c.end_scale / e) for e in ENGAGEMENT_LEVELS])
        variants.append(per_temper)
    m = variants[0][0][0]
    paths = []
    for auth, level in m.groups:
        if auth not in ("Logged In", "Logged Out"):
            paths.append(None)
            continue
        visit = ["Settings", "Cancel"]
        head = [("Home", "Logged Out", level), ("Login", "Logged Out", level)] if auth == "Logged Out" else []
        ids = [m.state_id(*s) for s in head] + [m.state_id("Home", "Logged In", level)]
        ids += [m.state_id(p, "Logged In", level) for p in visit]
        ids.append(m.state_id("Cancellation Confirmation", "Cancelled", level))
        paths.append(ids)
    first = first_midnight(start)
    return SatisfactionRun(
        model=model, variants=variants, counters=state_counters(m.states),
        registered=[p is not None for p in paths], paid=[lv == "paid" for _a, lv in m.groups],
        cancel_path=paths, first_midnight=first, n_days=max(0, -(-(end - first) // DAY)),
        warmup=int(model.warmup_days * DAY))


def satisfaction_spec(spec_text: str | None) -> dict | None:
    """The run spec (JSON text) as a dict when it is a satisfaction run, else None."""
    import json

    if not spec_text:
        return None
    spec = json.loads(spec_text)
    return spec if spec.get("churn_model") == "satisfaction" else None


def true_probability(truth, rows, horizon_days: float, spec: dict, n_paths: int = 32, seed: int = 0) -> np.ndarray:
    """P(Cancellation Confirmation within the horizon) per row for a satisfaction run,
    given each user's true state at the row's date.

    How: the truth records every user's state at each midnight (``daily_state``: the
    experience counters, the level, the end of the last session) and ``baseline``. From
    the state at t the user is simulated on with the simulator's own engine, ``n_paths``
    times on fresh random streams (the next session is drawn again given that none came
    by t), and each path's chance of no cancel decision in the horizon, the product of
    (1 - daily hazard), is averaged: P = 1 - mean. The days' decisions themselves are not
    drawn, so the only noise is in the experiences to come.

    In: the ground truth (pandas, with ``daily_state``, ``baseline``, ``temperament``, ``cohort``,
    ``alpha``, ``beta``), rows with ``userId`` and ``as_of_ms`` (epoch ms; the state at
    the midnight that starts that day), the horizon in days and the run spec. A user not
    registered at t (no recorded state) gets the base hazard of the row's ``level`` held
    over the horizon. Out: float64 per row. Raises ValueError for users not in the truth.
    """
    from sparkify.simulator.engine import Timing, UserBlock, simulate_block
    from sparkify.simulator.session_tables import run_model
    from sparkify.simulator.songs import build_catalogue

    model = SatisfactionModel.from_dict(spec["satisfaction"])
    run = run_model(truth, spec)
    first = first_midnight(spec["start"])
    users = truth.assign(_uid=truth["userId"].astype(str)).drop_duplicates("_uid").set_index("_uid")
    uid = rows["userId"].astype(str).tolist()
    missing = sorted(set(uid) - set(users.index))
    if missing:
        raise ValueError(f"{len(missing)} user(s) not in the ground truth, e.g. {missing[:3]}")
    t_rows = row_days(rows, spec) * DAY + first
    horizon = int(round(float(horizon_days) * DAY))
    stop = int(t_rows.max()) + horizon if len(t_rows) else first
    sat = satisfaction_run(model, run.config, run.cohorts, int(spec["start"]), stop)
    catalogue = build_catalogue()
    timing = Timing.from_config(run.config)
    levels = rows["level"].astype(str).tolist() if "level" in rows else ["free"] * len(rows)
    width = len(STATE_FIELDS)
    out = np.empty(len(rows))
    for i, (u, t, lv) in enumerate(zip(uid, t_rows.tolist(), levels)):
        user = users.loc[u]
        day = (t - first) // DAY
        states = np.asarray(user["daily_state"], dtype=np.float64).reshape(-1, width)
        if not 0 <= day < len(states) or np.isnan(states[day, 0]):
            out[i] = horizon_probability([model.daily_hazard(0.0, lv == "paid")], horizon_days)[0]
            continue
        ci = run.cohort_index(str(user["cohort"]))
        temper = model.temperaments.index(float(user["temperament"]))
        block = UserBlock(index=np.zeros(1, np.int64), cohort=np.array([ci]), alpha=np.array([user["alpha"]]),
                          beta=np.array([user["beta"]]), t0=np.array([t]), group=np.array([0]), seed=0)
        key = zlib.crc32(u.encode())
        survival = 0.0
        for path in range(n_paths):
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(key, day, path))))
            resume = Resume(states[day], float(user["baseline"]), temper, t, t + horizon, rng)
            r = simulate_block(block, list(run.models), t, t + horizon, timing, catalogue.cum, catalogue.length_s,
                               sat, resume)
            survival += float(r.survival[0])
        out[i] = 1.0 - survival / n_paths
    return out


@dataclass
class Resume:
    """A user's recorded state at the midnight ``t_branch`` (a row of the truth's
    ``daily_state`` and the user's ``baseline``), to simulate the user on from there with
    the random stream ``rng`` until ``t_stop`` (epoch s)."""

    state: np.ndarray
    baseline: float
    temperament: int  # index into SatisfactionModel.temperaments
    t_branch: int
    t_stop: int
    rng: np.random.Generator

    @property
    def group(self) -> int:
        return int(self.state[STATE_FIELDS.index("group")])

    @property
    def t_last(self) -> int:
        return int(self.state[STATE_FIELDS.index("t_last")])

    def mood(self, model: SatisfactionModel) -> UserMood:
        return UserMood.from_state(model, self.baseline, self.state)


def planted_drivers(spec: dict) -> list[dict]:
    """The drivers a satisfaction run planted, from its run spec: ``driver``, its true
    ``effect`` on D (per share of recent songs for thumbs down, adverts and help; per
    recent event for errors and downgrades; for the level, log(paid base hazard / free base
    hazard) / slope), the ``hazard_slope`` that turns D into log-hazard, and the model
    ``features`` that measure it (:data:`DRIVER_FEATURES`)."""
    m = SatisfactionModel.from_dict(spec["satisfaction"])
    effects = {**m.share_weights, **m.shock_weights,
               "level": math.log(m.hazard["paid"] / m.hazard["free"]) / m.hazard_slope}
    return [{"driver": name, "effect": float(effects[name]), "hazard_slope": m.hazard_slope,
             "features": list(feats)} for name, feats in DRIVER_FEATURES.items()]
