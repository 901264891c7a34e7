"""A fast, faithful re-implementation of Interana's eventsim for Sparkify logs.

How it maps to eventsim (see ``shared/reference/sparkify-event-log.md`` section 4):

- Model: an eventsim config file (default: the Accordion template, the 22 pages of the
  Sparkify log) -> :mod:`.eventsim_config` loads, validates and compiles it; states are
  (page, auth, level, method, status), edges are walked in file order with one uniform
  draw, 1 - sum(p) ends the session.
- Users: per-user lognormal alpha/beta (mean-1 multipliers), start-up users drawn from
  ``auths``/``levels``, growth users arriving as a Poisson process as Guests who may
  register, registration ``start - min(Exp(growth * 1 yr), 5 yr)``, attributes from
  eventsim's tables (:mod:`.attributes`), songs from a synthetic Zipf catalogue
  (:mod:`.songs`).
- Time: whole seconds; session gap with daily warp and weekend/US-holiday damping;
  warm-up from ``T0 - 2 beta``; 3xx pages +1 s, NextSong snaps to the end of the playing
  song, other pages +Exp(alpha) (:mod:`.engine`).
- Churn only through Cancel -> Cancellation Confirmation (auth ``Cancelled``), after
  which the user emits nothing; Logged Out / Guest rows keep the session but show the
  hidden userId (``""``, or a placeholder like the full log's ``"1261737"``) and no user
  fields.
- Output: JSON Lines in the real key order with null fields omitted.
- Churn model: eventsim's (above) by default; ``churn_model="satisfaction"`` replaces it
  with a daily cancel hazard driven by each user's experiences, with known drivers
  (:mod:`.satisfaction`).

What differs from eventsim:

- Users are simulated independently in parallel (they never interact); sessionIds are
  numbered afterwards per cohort in eventsim's creation order, and the events are then
  sorted globally by time, so the result matches eventsim's single priority queue
  without its cost, and does not depend on the number of workers.
- Cohorts: the real mini log merges several eventsim runs with different propensities;
  :data:`.presets.DEFAULT_COHORTS` does the same in one run, each cohort with its own
  userId base, sessionId counter and transition overrides (``page_scale``).
- Calibration (:mod:`.presets`): the per-user alpha/beta multipliers spread less than
  eventsim's (lognormal sigma 0.5, not 1), so churners are not the heaviest users; users
  return sooner (beta x 0.5) and keep the template's session ends, which gives the real
  mini log's ~14 sessions of ~88 events per user; a few page propensities are nudged
  (About, Settings, Error, Submit Upgrade) so every page rate is within ~5 % of the
  real mini log's; each preset scales beta to the real file's events per user.
- Songs: eventsim's Million-Song listen counts are not shipped; a synthetic catalogue with
  the same size, Zipf-like popularity and the real length distribution stands in.
- ``users`` counts the distinct users in the log at the end of the window (as the real
  files do); the number of start-up users is derived from it (:mod:`.presets`).
- Attrition option (buggy and 0 by default in eventsim) and Kafka output are left out.

Ordering: output is globally time-ordered (ties by user then sequence): a single file
fully; a directory as part files that are consecutive time slices (``part-00000.json``
has the earliest events).

Ground truth beside the log: ``<name>_truth.parquet`` for a file ``<name>.json``, or
``<dir>/_truth.parquet`` for a directory: one row per user in the log (userId, cohort,
alpha, beta, initial_level, initial_auth, registration, arrival_ts, churned, churn_ts,
n_events, n_hidden_events, ...). Training never reads it. Its key-value metadata
``sparkify.simulator`` (also ``DataFrame.attrs`` after ``pq.read_table(p).to_pandas()``)
holds the run spec (config, cohort overrides, window, seed) from which
:mod:`.hazard` rebuilds each user's exact model.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sparkify.simulator.eventsim_config import ConfigError, EventsimConfig, compile_model, load_config
from sparkify.simulator.presets import (
    ACTIVITY_SIGMA,
    ALPHA_SCALE,
    BETA_SCALE,
    DEFAULT_COHORTS,
    GROWTH_RATE,
    PRESETS,
    WINDOW_DAYS,
    WINDOW_START,
    Cohort,
    initial_users,
)
from sparkify.simulator.satisfaction import CHURN_MODELS, SatisfactionModel, satisfaction_run

__all__ = ["simulate", "SimulationSummary", "ConfigError", "Cohort", "PRESETS", "DEFAULT_COHORTS"]

YEAR = 365 * 86_400
SMALL_RUN_USERS = 120  # up to this, simulate in-process (forking buys nothing)


@dataclass
class SimulationSummary:
    """What :func:`simulate` wrote."""

    path: Path  # the .json(.gz) file, or the directory of part files
    truth_path: Path
    events: int  # rows written
    users: int  # distinct userIds in the log
    churned: int  # users with a Cancellation Confirmation in the window
    bytes: int
    seconds: float
    hidden_events: int = 0
    parts: list[Path] = field(default_factory=list)
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    seed: int = 0

    @property
    def churn_rate(self) -> float:
        return self.churned / self.users if self.users else 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def _to_epoch(value, name: str) -> int:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{name}: not an ISO date/time: {value!r}") from None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return int(value.timestamp())
    raise ValueError(f"{name}: expected a datetime, a date or an ISO string, got {value!r}")


def _output_paths(out: Path, gzip: bool) -> tuple[Path | None, Path | None, Path, bool]:
    """(single_file, directory, truth_path, gzip) for an output path."""
    name = out.name
    if name.endswith(".json.gz") or name.endswith(".json"):
        if name.endswith(".json.gz"):
            gzip = True
            stem = name[: -len(".json.gz")]
        else:
            stem = name[: -len(".json")]
            if gzip:
                out = out.with_name(name + ".gz")
        return out, None, out.with_name(stem + "_truth.parquet"), gzip
    return None, out, out / "_truth.parquet", gzip


def _prepare_output(single: Path | None, directory: Path | None) -> None:
    target = single.parent if single is not None else directory
    try:
        if single is not None and single.is_dir():
            raise ValueError(f"output {single} is a directory; give a file name or a directory without .json")
        if directory is not None and directory.exists() and not directory.is_dir():
            raise ValueError(f"output {directory} exists and is not a directory")
        target.mkdir(parents=True, exist_ok=True)
        if directory is not None:
            for old in list(directory.glob("part-*.json")) + list(directory.glob("part-*.json.gz")):
                old.unlink()
        with tempfile.TemporaryFile(dir=target, prefix=".sparkify-write-test-"):
            pass
    except PermissionError:
        raise PermissionError(f"output directory is not writable: {target}") from None
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"cannot create output directory {target}: a file is in the way") from None
    except OSError as exc:
        raise ValueError(f"cannot write to {target}: {exc.strerror or exc}") from None


def _stratified_normal(rng: np.random.Generator, n: int) -> np.ndarray:
    """n standard-normal draws, one from each of n equal-probability strata, in random
    order: exactly the same marginal distribution, much less spread in their sum (so a
    run's events per user vary less from seed to seed)."""
    from statistics import NormalDist

    u = (rng.permutation(n) + rng.random(n)) / max(n, 1)
    inv = NormalDist().inv_cdf
    return np.array([inv(min(max(v, 1e-12), 1 - 1e-12)) for v in u.tolist()])


def build_roster(cfg: EventsimConfig, cohorts: tuple[Cohort, ...], models, n_initial: int, start: int, end: int,
                 seed: int, growth_rate: float, beta_scale: float = 1.0):
    """Draw every user: cohort, id, rates, start state, registration, arrival, attributes."""
    from sparkify.simulator.attributes import load_tables
    from sparkify.simulator.writer import Roster

    tables = load_tables()
    auth_names = list(cfg.auths)
    auth_w = np.array([cfg.auths[a] for a in auth_names])
    level_names = list(cfg.levels)
    level_w = np.array([cfg.levels[lv] for lv in level_names])
    shares = np.array([c.share for c in cohorts], dtype=float)
    shares = shares / shares.sum()
    counts = np.floor(shares * n_initial).astype(int)
    # largest remainders, deterministic
    rem = shares * n_initial - counts
    for i in np.argsort(-rem, kind="stable")[: n_initial - counts.sum()]:
        counts[i] += 1
    cols: dict[str, list] = {k: [] for k in ("cohort", "user_id", "alpha", "beta", "t0", "arrival", "group",
                                             "auth", "level", "registration")}
    for ci, (cohort, n0) in enumerate(zip(cohorts, counts.tolist())):
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(10_000 + ci,))))
        # growth: Poisson arrivals with rate N(t) * growth / year, N growing with each arrival
        arrivals = []
        if growth_rate > 0 and n0 > 0:
            t, cur = float(start), n0
            while True:
                t += rng.exponential(YEAR / (cur * growth_rate))
                if t >= end:
                    break
                arrivals.append(int(t))
                cur += 1
        na = len(arrivals)
        n_c = n0 + na
        m = models[ci]
        auth = [auth_names[i] for i in rng.choice(len(auth_names), size=n0, p=auth_w / auth_w.sum())]
        level = [level_names[i] for i in rng.choice(len(level_names), size=n0, p=level_w / level_w.sum())]
        auth += [cfg.new_user_auth] * na
        level += [cfg.new_user_level] * na
        cols["auth"] += auth
        cols["level"] += level
        cols["group"] += [m.group_id(a, lv) for a, lv in zip(auth, level)]
        cols["cohort"] += [ci] * n_c
        cols["user_id"] += list(range(cohort.user_id_base + 1, cohort.user_id_base + 1 + n_c))
        z = ACTIVITY_SIGMA * np.vstack([_stratified_normal(rng, n_c), _stratified_normal(rng, n_c)])
        spread = ACTIVITY_SIGMA ** 2 / 2  # mean-1 multipliers
        cols["alpha"] += (cfg.alpha * ALPHA_SCALE * cohort.alpha_scale * np.exp(z[0] - spread)).tolist()
        cols["beta"] += (cfg.beta * BETA_SCALE * beta_scale * cohort.beta_scale * np.exp(z[1] - spread)).tolist()
        cols["t0"] += [start] * n0 + arrivals
        cols["arrival"] += [-1] * n0 + arrivals
        if growth_rate > 0:
            age = np.minimum(rng.exponential(growth_rate * YEAR, size=n0), 5 * YEAR).astype(np.int64)
        else:
            age = np.zeros(n0, dtype=np.int64)
        cols["registration"] += (start - age).tolist() + arrivals
    n = len(cols["user_id"])
    ids = np.sort(np.asarray(cols["user_id"], dtype=np.int64))
    if len(ids) > 1 and (np.diff(ids) == 0).any():
        raise ValueError("cohort userId ranges overlap: give the cohorts user_id_base values further apart "
                         "(or fewer users)")
    arng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(20_000,))))
    return Roster(
        cohort=np.asarray(cols["cohort"], dtype=np.int16),
        user_id=np.asarray(cols["user_id"], dtype=np.int64),
        alpha=np.asarray(cols["alpha"], dtype=np.float64),
        beta=np.asarray(cols["beta"], dtype=np.float64),
        t0=np.asarray(cols["t0"], dtype=np.int64),
        arrival=np.asarray(cols["arrival"], dtype=np.int64),
        group=np.asarray(cols["group"], dtype=np.int16),
        initial_auth=cols["auth"],
        initial_level=cols["level"],
        registration=np.asarray(cols["registration"], dtype=np.int64),
        first_name=tables["first_name"].sample(arng, n),
        last_name=tables["last_name"].sample(arng, n),
        location=tables["location"].sample(arng, n),
        user_agent=tables["user_agent"].sample(arng, n),
    )


def user_suffixes(roster) -> list[bytes]:
    """Pre-encoded user fields per user, in the real key order:
    ``,"location":..,"userAgent":..,"lastName":..,"firstName":..,"registration":..,"gender":..``."""
    import orjson

    from sparkify.simulator.attributes import load_tables

    t = load_tables()
    fn, ln, loc, ua = t["first_name"], t["last_name"], t["location"], t["user_agent"]
    enc = orjson.dumps
    out = []
    for f, l_, lc, u, reg in zip(roster.first_name.tolist(), roster.last_name.tolist(), roster.location.tolist(),
                                 roster.user_agent.tolist(), roster.registration.tolist()):
        out.append(b',"location":' + enc(loc.values[lc]) + b',"userAgent":' + enc(ua.values[u])
                   + b',"lastName":' + enc(ln.values[l_].capitalize()) + b',"firstName":' + enc(fn.values[f])
                   + b',"registration":' + str(reg * 1000).encode() + b',"gender":' + enc(fn.extra[f]))
    return out


TRUTH_META_KEY = "sparkify.simulator"  # parquet key-value metadata (and DataFrame.attrs) key of the run spec


def _config_dict(cfg: EventsimConfig) -> dict:
    """The eventsim config of a run as a JSON-able dict (the file as read, else rebuilt)."""
    if cfg.raw:
        return cfg.raw
    return {
        "alpha": cfg.alpha, "beta": cfg.beta, "damping": cfg.damping, "weekend-damping": cfg.weekend_damping,
        "weekend-damping-offset": cfg.weekend_damping_offset, "weekend-damping-scale": cfg.weekend_damping_scale,
        "session-gap": cfg.session_gap, "churned-state": cfg.churned_state,
        "show-user-details": [{"auth": a, "show": v} for a, v in cfg.show_user_details.items()],
        "levels": [{"level": k, "weight": v} for k, v in cfg.levels.items()],
        "auths": [{"auth": k, "weight": v} for k, v in cfg.auths.items()],
        "new-user-auth": cfg.new_user_auth, "new-user-level": cfg.new_user_level,
        "new-session": cfg.new_session, "transitions": cfg.transitions,
    }


def run_spec(cfg: EventsimConfig, cohorts, start: int, end: int, seed: int, growth_rate: float,
             satisfaction=None) -> str:
    """What rebuilds every user's model (config, cohort overrides, window, churn model and
    its constants) as a JSON string: stored beside the ground truth so :mod:`.hazard` can
    recompute true churn hazards."""
    import json

    churn = {"churn_model": "eventsim"} if satisfaction is None else {
        "churn_model": "satisfaction", "satisfaction": satisfaction.to_dict()}
    return json.dumps({
        "version": 1, "seed": int(seed), "start": int(start), "end": int(end), "growth_rate": float(growth_rate),
        **churn,
        "cohorts": [{"name": c.name, "share": c.share, "user_id_base": c.user_id_base, "page_scale": c.page_scale,
                     "alpha_scale": c.alpha_scale, "beta_scale": c.beta_scale, "end_scale": c.end_scale}
                    for c in cohorts],
        "config": _config_dict(cfg),
    }, separators=(",", ":"))


def _with_spec(table, spec: str):
    """Attach the run spec as parquet key-value metadata, and as pandas ``attrs`` so that
    ``pq.read_table(p).to_pandas().attrs[TRUTH_META_KEY]`` carries it too (the frame is
    otherwise exactly what it was without the metadata)."""
    import json

    import pyarrow as pa

    pandas_meta = json.loads(pa.Table.from_pandas(table.to_pandas(), preserve_index=False).schema.metadata[b"pandas"])
    pandas_meta["attributes"] = {TRUTH_META_KEY: spec}
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode(),
                                          TRUTH_META_KEY.encode(): spec.encode()})


def _write_truth(path: Path, roster, cohorts, outcome: dict, models, spec: str | None = None) -> None:
    """Write the ground-truth parquet: one row per user with at least one visible event
    (roster fields plus the run's per-user ``outcome``), with the run ``spec`` attached."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    keep = np.flatnonzero(outcome["n_events"] > 0)
    churn_ts = outcome["churn_ts"][keep]
    arrival = roster.arrival[keep]
    table = pa.table({
        "userId": pa.array([str(u) for u in roster.user_id[keep].tolist()], pa.string()),
        "cohort": pa.array([cohorts[c].name for c in roster.cohort[keep].tolist()], pa.string()),
        "alpha": pa.array(roster.alpha[keep], pa.float64()),
        "beta": pa.array(roster.beta[keep], pa.float64()),
        "initial_level": pa.array([roster.initial_level[i] for i in keep.tolist()], pa.string()),
        "initial_auth": pa.array([roster.initial_auth[i] for i in keep.tolist()], pa.string()),
        "registration": pa.array(roster.registration[keep] * 1000, pa.int64()),
        "arrival_ts": pa.array(arrival * 1000, pa.int64(), mask=arrival < 0),
        "churned": pa.array(churn_ts >= 0, pa.bool_()),
        "churn_ts": pa.array(churn_ts * 1000, pa.int64(), mask=churn_ts < 0),
        "n_events": pa.array(outcome["n_events"][keep], pa.int64()),
        "n_hidden_events": pa.array(outcome["n_hidden"][keep], pa.int64()),
    })
    if "daily_hazard" in outcome:  # the satisfaction model: hazard and state at each midnight of the window
        hz = outcome["daily_hazard"][keep]
        table = table.append_column("daily_hazard", pa.array(list(hz), pa.list_(pa.float32())))
        st = outcome["daily_state"][keep]
        table = table.append_column("daily_state", pa.array(list(st.reshape(len(keep), -1)), pa.list_(pa.float64())))
        table = table.append_column("baseline", pa.array(outcome["baseline"][keep], pa.float64()))
        table = table.append_column("temperament", pa.array(outcome["temperament"][keep], pa.float64()))
    if spec is not None:
        table = _with_spec(table, spec)
    pq.write_table(table, path)


def simulate(out, users: int | None = None, preset: str | None = None, days: float | None = None, seed: int = 42,
             workers: int | None = None, gzip: bool = False, hidden_user_id: str | None = None,
             config=None, progress: bool = True, start=None, end=None,
             cohorts: tuple[Cohort, ...] | None = None, growth_rate: float | None = None,
             churn_model: str = "eventsim") -> SimulationSummary:
    """Simulate a Sparkify event log and write it (plus the ground-truth table).

    In:
      out: ``X.json`` / ``X.json.gz`` (one file) or a directory (part files);
      users: distinct users in the log at the end of the window (default: the preset's,
        else the mini preset's 225); preset: ``mini``/``medium``/``full``;
      days: window length (default 61), start/end: window bounds (default 2018-10-01 UTC);
      seed: same seed -> same bytes, whatever ``workers``; gzip: compress;
      hidden_user_id: userId of Logged Out/Guest rows (default: the preset's, ``""``);
      config: eventsim config path or :class:`EventsimConfig` (default: Accordion);
      cohorts: the cohort mix (default :data:`DEFAULT_COHORTS`; ``()`` for a single plain run);
      churn_model: ``eventsim`` (every page view may lead to Cancel, memoryless) or
        ``satisfaction`` (a daily hazard driven by each user's experiences, with the
        hazards in the ground truth: :mod:`.satisfaction`), or a
        :class:`~.satisfaction.SatisfactionModel` with other constants.
    Out: :class:`SimulationSummary`.
    Raises ConfigError/ValueError for bad input, PermissionError for an unwritable output.
    """
    from sparkify.simulator.engine import Timing
    from sparkify.simulator.songs import build_catalogue
    from sparkify.simulator.writer import run

    t_begin = time.perf_counter()
    p, users, hidden_user_id = _check_size(preset, users, hidden_user_id, seed)
    start_s, end_s = _window(start, end, days)
    cfg = config if isinstance(config, EventsimConfig) else load_config(config)
    cohorts, models = _cohort_models(cfg, cohorts, users)
    satisfaction = _churn_model(churn_model)
    g = GROWTH_RATE if growth_rate is None else float(growth_rate)
    if cfg.growth_rate is not None and growth_rate is None:
        g = cfg.growth_rate

    single, directory, truth_path, gzip = _output_paths(Path(out), gzip)
    _prepare_output(single, directory)

    n_initial = initial_users(int(users), (end_s - start_s) / 86_400, g)
    roster = build_roster(cfg, cohorts, models, n_initial, start_s, end_s, seed, g,
                          beta_scale=p.beta_scale if preset else 1.0)
    workers = _workers(workers, len(roster))
    total, nbytes, written, outcome = run(
        roster=roster, models=models, start=start_s, end=end_s, timing=Timing.from_config(cfg),
        catalogue=build_catalogue(), seed=int(seed), workers=workers, out_files=None, single_file=single,
        directory=directory, gzip=gzip, hidden_user_id=hidden_user_id, user_suffix=user_suffixes(roster),
        progress=progress,
        sat=None if satisfaction is None else satisfaction_run(satisfaction, cfg, cohorts, start_s, end_s))
    _write_truth(truth_path, roster, cohorts, outcome, models,
                 spec=run_spec(cfg, cohorts, start_s, end_s, int(seed), g, satisfaction))
    visible = outcome["n_events"] > 0
    return SimulationSummary(
        path=single if single is not None else directory,
        truth_path=truth_path,
        events=int(total),
        users=int(visible.sum()),
        churned=int(((outcome["churn_ts"] >= 0) & visible).sum()),
        bytes=int(nbytes),
        seconds=time.perf_counter() - t_begin,
        hidden_events=int(outcome["n_hidden"].sum()),
        parts=written,
        start=dt.datetime.fromtimestamp(start_s, dt.timezone.utc),
        end=dt.datetime.fromtimestamp(end_s, dt.timezone.utc),
        seed=int(seed),
    )


def _churn_model(churn_model) -> SatisfactionModel | None:
    """The satisfaction model of a ``churn_model`` argument (None for eventsim's churn).
    Raises ValueError for an unknown name."""
    if isinstance(churn_model, SatisfactionModel):
        return churn_model
    if churn_model not in CHURN_MODELS:
        raise ValueError(f"unknown churn model {churn_model!r} (choose from {', '.join(CHURN_MODELS)})")
    return SatisfactionModel() if churn_model == "satisfaction" else None


def _check_size(preset: str | None, users, hidden_user_id: str | None, seed):
    """Validate the size arguments of :func:`simulate`. In: its ``preset``, ``users``,
    ``hidden_user_id`` and ``seed``. Out: (the preset, default mini; the user count; the
    hidden userId). Raises ValueError for an unknown preset, a bad count or seed."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    p = PRESETS.get(preset or "mini")
    if users is None:
        users = p.users
    if isinstance(users, bool) or not isinstance(users, (int, np.integer)) or users < 1:
        raise ValueError(f"users must be a positive integer, got {users!r}")
    if hidden_user_id is None:
        hidden_user_id = p.hidden_user_id if preset else ""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return p, users, hidden_user_id


def _window(start, end, days: float | None) -> tuple[int, int]:
    """The window (start, end) in epoch s from :func:`simulate`'s ``start`` (default
    2018-10-01 UTC) and either ``end`` or ``days`` (default 61). Raises ValueError for
    both, a non-positive length, or an end not after the start."""
    start_s = _to_epoch(start if start is not None else WINDOW_START, "start")
    if end is not None:
        if days is not None:
            raise ValueError("give either days or end, not both")
        end_s = _to_epoch(end, "end")
    else:
        d = WINDOW_DAYS if days is None else days
        if not isinstance(d, (int, float)) or d <= 0:
            raise ValueError(f"days (--days) must be more than 0, not {d!r}")
        end_s = start_s + int(round(d * 86_400))
    if end_s <= start_s:
        raise ValueError("the window end must be after its start")
    return start_s, end_s


def _cohort_models(cfg: EventsimConfig, cohorts, users: int) -> tuple[tuple[Cohort, ...], list]:
    """The run's cohorts (None: the defaults, with userId bases widened x10 as often as
    ``users`` needs; empty: one plain ``base`` cohort) and each one's compiled model."""
    cohorts = DEFAULT_COHORTS if cohorts is None else tuple(cohorts)
    if not cohorts:
        cohorts = (Cohort("base", 1.0, 0),)
    if cohorts is DEFAULT_COHORTS:
        # the default bases are 100,000 apart: widen them (x10) for very large runs
        step = 100_000
        while max(c.share for c in cohorts) * int(users) * 1.5 >= step:
            step *= 10
        if step != 100_000:
            cohorts = tuple(replace(c, user_id_base=c.user_id_base // 100_000 * step) for c in cohorts)
    models = [compile_model(cfg, c.page_scale, c.end_scale) for c in cohorts]
    if any(m.states != models[0].states for m in models):  # pragma: no cover - scaling keeps states
        raise ConfigError("cohort overrides changed the state set")
    return cohorts, models


def _workers(workers: int | None, n_users: int) -> int:
    """The worker processes for ``n_users``: ``workers`` if given, else a pool only for
    runs worth it and only from a single-threaded process (forking a process with
    threads, e.g. a py4j gateway, is unsafe)."""
    from sparkify.simulator.writer import default_workers

    if workers is None:
        import threading

        parallel = n_users > SMALL_RUN_USERS and threading.active_count() == 1
        workers = default_workers() if parallel else 1
    return max(1, int(workers))
