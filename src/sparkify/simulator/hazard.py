"""The true probability that a simulated user churns within a horizon (the "ceiling").

For a log written by :func:`sparkify.simulator.simulate`, each user's behaviour is fully
fixed by latent parameters that the ground-truth table keeps (cohort -> page-transition
model, alpha, beta) plus the user's state. :func:`true_churn_probability` turns them into
P(the user reaches "Cancellation Confirmation" in (t, t + horizon]) given that the user is
still subscribed at t and has level free/paid at t: the best any predictor could do.

How (the simulator's own rules, :mod:`.engine`):

1. Within a session (exact). The compiled chain (:mod:`.eventsim_config`) is an absorbing
   Markov chain: from state s the session moves along each edge with its probability or
   ends with probability 1 - sum(p). With Q the state-to-state matrix and R[s, k] the
   probability of ending in s when s belongs to outcome k (each (auth, level) group a
   session can end in, plus "churned" for the Cancelled auth), B = (I - Q)^-1 R; the
   new-session start weights of a group g give M[g, k] = P(a session started in g ends
   in outcome k) (:func:`session_outcomes`).
2. Between sessions (Monte Carlo, ``n_paths`` per row, vectorised NumPy). Session start
   times follow eventsim's gap rule exactly as the engine does: ``warp(last +
   int(Exp(beta_u)) + session_gap)`` with the daily warp, the backwards retry and the
   weekend/US-holiday damping (kept with probability 1 - wd(t)). Each session started
   in the horizon multiplies the path's survival weight by 1 - M[g, churned], then the
   (auth, level) group of the next session is drawn from M[g, :] given no churn (so
   upgrades, downgrades and logouts carry over), and the next gap starts at the
   session's end: start + the mean session length (next point).
3. Session length: the mean time from the first to the last event of a session that does
   not churn, for the cohort, start group and the user's alpha, estimated once per run
   spec by walking the page chain with the engine's timing rules (3xx pages +1 s,
   NextSong snapping to the end of the playing song, other pages +int(Exp(alpha))) for a
   pool of sessions with common random numbers over a grid of alphas (interpolated
   linearly in between) (:func:`mean_session_durations`).

   P(churn) = 1 - mean over paths of the product of the per-session survival
   probabilities (a Rao-Blackwellised estimate: the churn draw itself is never
   simulated, so the Monte Carlo noise only comes from the session times and levels).

Approximations (each small next to a horizon of days; the tests measure the result):

- A session in progress at t is ignored: the gap process starts at t as if the last
  session had just ended (eventsim's gap is memoryless apart from the 30-minute
  ``session_gap``).
- A session that starts in (t, t + horizon] counts fully, even though its
  Cancellation Confirmation comes minutes to hours after its start.
- Session lengths are their (cohort, start group, alpha) mean, not random, and
  independent of the session's outcome (given no churn).
- The auth at t (Logged In or Logged Out: it decides where the next session starts) is
  taken from an optional ``auth`` column of ``rows``; without it, it is drawn from the
  stationary share of sessions that end Logged Out at that level (per cohort). A user
  whose last visible event before t is a ``Logout`` is Logged Out at t. Growth users
  who arrived as Guests are in the log only once registered: they are treated like
  everyone else.

Speed: about 1,000-2,000 rows/s at 400 paths and a 14-day horizon on one core (the
work grows with the number of sessions in the horizon), plus ~1 s per cohort once per
run spec for the tables. The result is deterministic for a seed.

The run's config and cohort overrides come from the truth table's metadata
(``DataFrame.attrs["sparkify.simulator"]`` after ``pq.read_table(p).to_pandas()``, or
:func:`read_truth`); truth tables written before that metadata existed fall back to the
Accordion template and :data:`~sparkify.simulator.presets.DEFAULT_COHORTS` by name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from sparkify.simulator import TRUTH_META_KEY as META_KEY
from sparkify.simulator.engine import DAY, Timing, day_off
from sparkify.simulator.eventsim_config import EventsimConfig, Model, compile_model, load_config, parse_config
from sparkify.simulator.presets import DEFAULT_COHORTS, Cohort

__all__ = ["true_churn_probability", "read_truth", "run_model", "session_outcomes", "mean_session_durations",
           "RunModel"]

ALPHA_GRID = np.geomspace(0.5, 2e4, 24)  # seconds: the session-length table's alphas
POOL_SESSIONS = 3000  # sessions per (cohort, start group) for the mean session lengths
POOL_SEED = 20181001
CHUNK_PATHS = 1 << 18  # paths simulated at once (memory: ~100 bytes each)


# --------------------------------------------------------------------------- run spec
def read_truth(path: str | Path) -> pd.DataFrame:
    """The ground-truth table beside a simulated log, with its run spec in ``attrs``."""
    import pyarrow.parquet as pq

    table = pq.read_table(str(path))
    df = table.to_pandas()
    meta = table.schema.metadata or {}
    if META_KEY.encode() in meta:
        df.attrs[META_KEY] = meta[META_KEY.encode()].decode()
    return df


@dataclass(eq=False)
class RunModel:
    """Everything that fixes a run's users' behaviour, compiled per cohort (plus a cache
    of the per-cohort tables derived from it)."""

    config: EventsimConfig
    timing: Timing
    cohorts: tuple[Cohort, ...]
    models: tuple[Model, ...]
    cache: dict = field(default_factory=dict, repr=False)

    def cohort_index(self, name: str) -> int:
        for i, c in enumerate(self.cohorts):
            if c.name == name:
                return i
        raise ValueError(f"cohort {name!r} is not in the run spec (known: {', '.join(c.name for c in self.cohorts)})")


def _spec_text(truth: pd.DataFrame | None, spec) -> str | None:
    if spec is None:
        return None if truth is None else truth.attrs.get(META_KEY)
    if isinstance(spec, dict):
        return json.dumps(spec, separators=(",", ":"))
    if isinstance(spec, Path) or (isinstance(spec, str) and not spec.lstrip().startswith("{")):
        return read_truth(spec).attrs.get(META_KEY)
    return str(spec)


@lru_cache(maxsize=8)
def _run_model_cached(text: str | None, cohort_names: tuple[str, ...]) -> RunModel:
    if text is None:  # a truth table from before the spec metadata: the defaults
        cfg = load_config(None)
        known = {c.name: c for c in DEFAULT_COHORTS}
        cohorts = []
        for name in cohort_names:
            if name in known:
                cohorts.append(known[name])
            elif name == "base":  # simulate(cohorts=()) : one plain run of the config
                cohorts.append(Cohort("base", 1.0, 0))
            else:
                raise ValueError(f"the truth table has no run spec and cohort {name!r} is not a default cohort: "
                                 "pass spec= (the truth parquet's path or its 'sparkify.simulator' metadata)")
        cohorts = tuple(cohorts) or DEFAULT_COHORTS
    else:
        d = json.loads(text)
        cfg = parse_config(d["config"], source="<truth spec>")
        cohorts = tuple(Cohort(c["name"], float(c.get("share", 1.0)), int(c.get("user_id_base", 0)),
                               dict(c.get("page_scale") or {}), float(c.get("alpha_scale", 1.0)),
                               float(c.get("beta_scale", 1.0)), float(c.get("end_scale", 1.0)))
                        for c in d["cohorts"])
    timing = Timing(session_gap=int(cfg.session_gap), damping=cfg.damping, weekend_damping=cfg.weekend_damping,
                    weekend_offset=cfg.weekend_damping_offset * 60, weekend_scale=cfg.weekend_damping_scale * 60)
    models = tuple(compile_model(cfg, c.page_scale, c.end_scale) for c in cohorts)
    return RunModel(cfg, timing, cohorts, models)


def run_model(truth: pd.DataFrame | None = None, spec=None) -> RunModel:
    """The compiled models of a run: from ``spec`` (a truth parquet path, the spec JSON
    or dict), else ``truth.attrs``, else the defaults (for the cohort names in ``truth``)."""
    text = _spec_text(truth, spec)
    names = () if text is not None or truth is None else tuple(sorted(set(truth["cohort"].astype(str))))
    return _run_model_cached(text, names)


# --------------------------------------------------------------------------- one session (exact)
def _edges(m: Model) -> tuple[np.ndarray, np.ndarray]:
    """State-to-state probabilities Q and the session-end probability of each state."""
    n = len(m.states)
    q = np.zeros((n, n))
    end = np.ones(n)
    for s in range(n):
        prev = 0.0
        for c, d in zip(m.cum[s], m.dest[s]):
            q[s, d] += c - prev
            prev = c
        end[s] = 1.0 - prev
    return q, np.clip(end, 0.0, 1.0)


def session_outcomes(m: Model) -> np.ndarray:
    """M[g, k]: probability that a session started in (auth, level) group g (``m.groups``)
    ends in group k (k < K) or churns (k = K), by absorbing-chain algebra."""
    q, end = _edges(m)
    n, k_groups = len(m.states), len(m.groups)
    r = np.zeros((n, k_groups + 1))
    for s in range(n):
        if end[s] <= 0:
            continue
        if m.churn[s]:
            r[s, k_groups] = end[s]
        elif m.group[s] >= 0:
            r[s, m.group[s]] = end[s]
        else:  # pragma: no cover - compile_model rejects such chains
            raise ValueError(f"a session can end in {m.states[s]} but no session can start there")
    b = np.linalg.solve(np.eye(n) - q, r)
    start = np.zeros((k_groups, n))
    for g in range(k_groups):
        prev = 0.0
        for c, d in zip(m.start_cum[g], m.start_dest[g]):
            start[g, d] += c - prev
            prev = c
    out = start @ b
    return out / out.sum(axis=1, keepdims=True)


def _song_table():
    from sparkify.simulator.songs import build_catalogue

    cat = build_catalogue()
    return cat.cum, np.asarray(cat.length_s, dtype=np.float64)


def mean_session_durations(m: Model, alphas: np.ndarray = ALPHA_GRID, n_sessions: int = POOL_SESSIONS,
                           seed: int = POOL_SEED) -> np.ndarray:
    """D[g, a]: mean seconds from the first to the last event of a session started in group
    g that does not churn, for a user with alpha ``alphas[a]``: ``n_sessions`` page walks per
    group with the engine's timing rules, the same random draws for every alpha."""
    song_cum, song_len = _song_table()
    rng = np.random.Generator(np.random.PCG64(seed))
    n_states, k_groups = len(m.states), len(m.groups)
    width = max(1, max(len(c) for c in m.cum))
    # state s's cumulative edge probabilities shifted by s (padded with s + 1: never <= s + u),
    # so one searchsorted gives bisect_right for every session at once
    flat = np.ones((n_states, width)) + np.arange(n_states)[:, None]
    dpad = np.full((n_states, width + 1), -1, dtype=np.int64)
    for s in range(n_states):
        flat[s, : len(m.cum[s])] = np.asarray(m.cum[s]) + s
        dpad[s, : len(m.dest[s])] = m.dest[s]
    flat = flat.ravel()
    kind = np.asarray(m.kind, dtype=np.int8)
    churn = np.asarray(m.churn, dtype=bool)
    alphas = np.asarray(alphas, dtype=np.float64)

    group = np.repeat(np.arange(k_groups), n_sessions)
    state = np.empty(len(group), dtype=np.int64)
    for g in range(k_groups):
        idx = np.searchsorted(np.asarray(m.start_cum[g]), rng.random(n_sessions), side="right")
        state[group == g] = np.asarray(m.start_dest[g])[np.minimum(idx, len(m.start_dest[g]) - 1)]
    t = np.zeros((len(group), len(alphas)))
    song_end = np.full_like(t, -1.0)
    first_song = kind[state] == 2
    if first_song.any():
        song_end[first_song] = song_len[np.searchsorted(song_cum, rng.random(int(first_song.sum())),
                                                        side="right")][:, None]
    dur = np.zeros_like(t)
    churned = np.zeros(len(group), dtype=bool)
    ids = np.arange(len(group))  # the sessions still running; t, song_end, state: theirs only
    while ids.size:
        j = np.searchsorted(flat, state + rng.random(ids.size), side="right") - state * width
        s2 = dpad[state, j]
        ended = s2 < 0
        if ended.any():
            dur[ids[ended]] = t[ended]
            churned[ids[ended]] = churn[state[ended]]
            keep = ~ended
            ids, s2, t, song_end = ids[keep], s2[keep], t[keep], song_end[keep]
            if not ids.size:
                break
        kd = kind[s2]
        inc = np.floor(rng.standard_exponential(ids.size)[:, None] * alphas[None, :])
        inc[kd == 1] = 1.0
        k2 = np.flatnonzero(kd == 2)
        if k2.size:
            tt, se = t[k2], song_end[k2]
            snapped = np.where(tt < se, se, tt + inc[k2])
            t += inc
            t[k2] = snapped
            song_end[k2] = snapped + song_len[np.searchsorted(song_cum, rng.random(k2.size), side="right")][:, None]
        else:
            t += inc
        state = s2
    out = np.zeros((k_groups, len(alphas)))
    for g in range(k_groups):
        ok = (group == g) & ~churned
        if ok.any():
            out[g] = dur[ok].mean(axis=0)
    return out


@dataclass(frozen=True)
class _CohortTables:
    outcome: np.ndarray  # (K, K + 1): session outcome probabilities
    next_cum: np.ndarray  # (K, K): cumulative next-group probabilities given no churn
    durations: np.ndarray  # (K, len(ALPHA_GRID)) mean session seconds
    logged_out_share: dict  # level -> {auth: share} at a session end (stationary)


def _stationary(p: np.ndarray) -> np.ndarray:
    k = len(p)
    a = np.vstack([p.T - np.eye(k), np.ones(k)])
    b = np.zeros(k + 1)
    b[-1] = 1.0
    pi = np.linalg.lstsq(a, b, rcond=None)[0]
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum()


_TABLES: dict[tuple, _CohortTables] = {}  # by the content of a compiled cohort model


def _tables(run: RunModel, ci: int) -> _CohortTables:
    if ci not in run.cache:
        m = run.models[ci]
        key = (repr((m.states, m.cum, m.dest, m.start_cum, m.start_dest)), run.config.new_user_auth,
               run.config.churned_state)
        if key not in _TABLES:
            if len(_TABLES) >= 32:
                _TABLES.clear()
            _TABLES[key] = _cohort_tables(run, ci)
        run.cache[ci] = _TABLES[key]
    return run.cache[ci]


def _cohort_tables(run: RunModel, ci: int) -> _CohortTables:
    m = run.models[ci]
    out = session_outcomes(m)
    k = len(m.groups)
    stay = 1.0 - out[:, k]
    cond = np.divide(out[:, :k], stay[:, None], out=np.zeros((k, k)), where=stay[:, None] > 0)
    cum = np.cumsum(cond, axis=1)
    cum[:, -1] = 1.0
    pi = _stationary(cond)
    shares: dict[str, dict[str, float]] = {}
    for level in {lv for _, lv in m.groups}:
        idx = [g for g, (auth, lv) in enumerate(m.groups)
               if lv == level and auth != run.config.new_user_auth and auth != run.config.churned_state]
        tot = sum(pi[g] for g in idx)
        if idx:
            shares[level] = {m.groups[g][0]: (pi[g] / tot if tot > 0 else 1.0 / len(idx)) for g in idx}
    return _CohortTables(out, cum, mean_session_durations(m), shares)


# --------------------------------------------------------------------------- session start times
class _Calendar:
    """Vectorised eventsim session-start rule (:func:`engine.next_session_start`) for
    times in [t_min, t_max]: the daily warp from a table of its shift for each second of
    the day, the weekend/holiday damping from a table per minute (linear in between,
    which is exact: its ramps are linear and start and end on whole minutes)."""

    STEP = 60

    def __init__(self, timing: Timing, t_min: int, t_max: int):
        self.timing = timing
        self.gap = int(timing.session_gap)
        if timing.damping:
            sec = np.arange(DAY, dtype=np.float64)
            self.shift = np.trunc(timing.damping * DAY * np.sin(2 * np.pi * (sec - 3 * 3600) / DAY)).astype(np.int64)
        else:
            self.shift = np.zeros(DAY, dtype=np.int64)
        self.base = int(t_min) // self.STEP * self.STEP - self.STEP
        grid = np.arange(self.base, int(t_max) + 3 * self.STEP, self.STEP, dtype=np.int64)
        self.damp = self._weekend_exact(grid)
        self.any_damping = bool(self.damp.any())

    def _weekend_exact(self, t: np.ndarray) -> np.ndarray:
        """:meth:`engine.Timing.weekend`, vectorised."""
        tm = self.timing
        if not tm.weekend_damping:
            return np.zeros(len(t))
        x = t - tm.weekend_offset
        d = np.floor_divide(x, DAY).astype(np.int64)
        s = x - d * DAY
        days = np.arange(int(d.min()) - 1, int(d.max()) + 2)
        table = np.array([day_off(int(v)) for v in days.tolist()], dtype=np.float64)
        i = d - days[0]
        off = table[i]
        half = tm.weekend_scale / 2
        if half > 0:
            prev, nxt = table[i - 1], table[i + 1]
            f = np.where(s < half, prev + (off - prev) * (s + half) / tm.weekend_scale,
                         np.where(s > DAY - half, off + (nxt - off) * (s - (DAY - half)) / tm.weekend_scale, off))
        else:
            f = off
        return tm.weekend_damping * f

    def warp(self, t: np.ndarray) -> np.ndarray:
        return t + self.shift[t % DAY]

    def weekend(self, t: np.ndarray) -> np.ndarray:
        x = t - self.base
        i = x // self.STEP
        lo = self.damp[i]
        return lo + (self.damp[i + 1] - lo) * ((x - i * self.STEP) * (1.0 / self.STEP))

    def next_start(self, last: np.ndarray, beta: np.ndarray, stop: np.ndarray, rng) -> np.ndarray:
        """Next session start after ``last`` (int64 s). A candidate after ``stop`` is
        returned at once (the retries never come back below it)."""
        cur, idx = last, None
        out = None
        while True:
            b = beta if idx is None else beta[idx]
            cand = self.warp(cur + np.floor(b * rng.standard_exponential(len(cur))).astype(np.int64) + self.gap)
            back = cand < cur  # moved backwards: retry from cur + gap
            redo = back.copy()
            if self.any_damping:
                inside = np.flatnonzero(~back & (cand <= (stop if idx is None else stop[idx])))
                if inside.size:  # dropped with the weekend damping: retry from the candidate
                    redo[inside[rng.random(inside.size) < self.weekend(cand[inside])]] = True
            if out is None:
                out = cand
            else:
                out[idx[~redo]] = cand[~redo]
            if not redo.any():
                return out
            j = np.flatnonzero(redo)
            cur = np.where(back[j], cur[j] + self.gap, cand[j])
            idx = j if idx is None else idx[j]


# --------------------------------------------------------------------------- the hazard
def true_churn_probability(truth: pd.DataFrame, rows: pd.DataFrame, horizon_days: float, *, n_paths: int = 400,
                           seed: int = 0, **options) -> np.ndarray:
    """P(Cancellation Confirmation in (t, t + horizon_days]) for each row, under the
    simulator's own model with the user's true parameters.

    In:
      truth: the ground-truth table of the run (``<stem>_truth.parquet`` read with
        pyarrow -> pandas, or :func:`read_truth`): userId, cohort, alpha, beta per user;
        its ``attrs["sparkify.simulator"]`` (the run spec) fixes the config and cohort
        overrides (absent: the Accordion template and the default cohorts).
      rows: one row per question: ``userId`` (str), ``as_of_ms`` (int epoch ms: t),
        ``level`` ('free'/'paid': the level at t); optional ``auth`` ('Logged In' /
        'Logged Out', the auth at t, e.g. Logged Out when the user's last visible event
        before t is Logout; null/empty: unknown). The user must be subscribed (not
        cancelled) at t.
      horizon_days: the horizon h (> 0).
      n_paths: Monte Carlo paths of session times per row; seed: the paths' seed (the
        result is a deterministic function of the inputs, the seed and the row order).
      options: ``spec`` (the run spec: a truth parquet path, JSON text or dict; overrides
        ``truth.attrs``), ``chunk_paths`` (paths simulated at once, default 2**18).
    Out: float64 array, one probability per row, in the order of ``rows``.

    Exact within a session (absorbing-chain algebra), Monte Carlo for session start times
    and the free/paid (and logged-in/out) state carried across sessions; see the module
    docstring for what is approximated (sessions in progress at t, session lengths).
    Raises ValueError for unknown users, levels or auths, missing columns or h <= 0.
    """
    spec = options.pop("spec", None)
    chunk_paths = int(options.pop("chunk_paths", CHUNK_PATHS))
    if options:
        raise TypeError(f"unknown option(s): {', '.join(sorted(options))}")
    if not horizon_days > 0:
        raise ValueError(f"horizon_days must be > 0, got {horizon_days!r}")
    n_paths = int(n_paths)
    if n_paths < 1:
        raise ValueError("n_paths must be >= 1")
    missing = [c for c in ("userId", "as_of_ms", "level") if c not in rows.columns]
    if missing:
        raise ValueError(f"rows lacks column(s): {', '.join(missing)}")
    n_rows = len(rows)
    if n_rows == 0:
        return np.zeros(0)
    run = run_model(truth, spec)

    users = truth.assign(_uid=truth["userId"].astype(str)).drop_duplicates("_uid").set_index("_uid")
    uid = rows["userId"].astype(str)
    unknown = ~uid.isin(users.index)
    if unknown.any():
        raise ValueError(f"{int(unknown.sum())} userId(s) not in the truth table, e.g. {uid[unknown].iloc[0]!r}")
    u = users.loc[uid.to_numpy()]
    coh = np.array([run.cohort_index(c) for c in u["cohort"].astype(str)], dtype=np.int64)
    alpha = u["alpha"].to_numpy(np.float64)
    beta = u["beta"].to_numpy(np.float64)
    t0 = (rows["as_of_ms"].to_numpy(np.int64) // 1000).astype(np.int64)
    t1 = t0 + int(round(horizon_days * DAY))
    levels = rows["level"].astype(str).to_numpy()
    if "auth" in rows.columns:
        has_auth = (rows["auth"].notna() & (rows["auth"].astype(str) != "")).to_numpy()
        auths = rows["auth"].astype(str).to_numpy()
    else:
        has_auth = np.zeros(n_rows, dtype=bool)
        auths = np.full(n_rows, "", dtype=object)

    tables = [_tables(run, c) for c in range(len(run.models))]
    k_max = max(len(m.groups) for m in run.models)
    n_c = len(run.models)
    surv = np.zeros((n_c, k_max))
    next_cum = np.ones((n_c, k_max, k_max))
    for c, tb in enumerate(tables):
        k = len(run.models[c].groups)
        surv[c, :k] = 1.0 - tb.outcome[:, k]
        next_cum[c, :k, :k] = tb.next_cum

    # per row: mean session length by start group (linear in alpha between grid points;
    # a session's length is piecewise linear in alpha for fixed random draws)
    a = np.clip(alpha, ALPHA_GRID[0], ALPHA_GRID[-1])
    pos = np.clip(np.searchsorted(ALPHA_GRID, a, side="right") - 1, 0, len(ALPHA_GRID) - 2)
    frac = (a - ALPHA_GRID[pos]) / (ALPHA_GRID[pos + 1] - ALPHA_GRID[pos])
    dur = np.zeros((n_rows, k_max))
    for c, tb in enumerate(tables):
        sel = coh == c
        k = len(run.models[c].groups)
        lo, hi = tb.durations[:, pos[sel]].T, tb.durations[:, pos[sel] + 1].T
        dur[sel, :k] = lo + (hi - lo) * frac[sel, None]
    dur = np.rint(dur).astype(np.int64)

    # per row: the distribution of the start group at t (the given auth, else the
    # stationary Logged In / Logged Out shares at that level)
    start_cum = np.zeros((n_rows, k_max))
    for c, tb in enumerate(tables):
        m = run.models[c]
        for level in np.unique(levels[coh == c]):
            sel_l = (coh == c) & (levels == level)
            mix = sel_l & ~has_auth
            if mix.any():
                if level not in tb.logged_out_share:
                    raise ValueError(f"unknown level {level!r} (known: {', '.join(sorted(tb.logged_out_share))})")
                p = np.zeros(k_max)
                for auth, share in tb.logged_out_share[level].items():
                    p[m.groups.index((auth, level))] = share
                start_cum[mix] = np.cumsum(p)
            for auth in np.unique(auths[sel_l & has_auth]):
                if (auth, level) not in m.groups:
                    raise ValueError(f"no sessions start with auth {auth!r}, level {level!r}")
                p = np.zeros(k_max)
                p[m.groups.index((auth, level))] = 1.0
                start_cum[sel_l & has_auth & (auths == auth)] = np.cumsum(p)
    start_cum[:, -1] = 1.0

    cal = _Calendar(run.timing, int(t0.min()), int(t1.max()))
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed))))
    result = np.empty(n_rows)
    rows_per_chunk = max(1, chunk_paths // n_paths)
    for r0 in range(0, n_rows, rows_per_chunk):
        r1 = min(n_rows, r0 + rows_per_chunk)
        result[r0:r1] = _simulate_chunk(slice(r0, r1), n_paths, t0, t1, beta, coh, dur, start_cum, surv, next_cum,
                                        cal, rng)
    return result


def _simulate_chunk(sl: slice, n_paths: int, t0, t1, beta, coh, dur, start_cum, surv, next_cum, cal: _Calendar,
                    rng) -> np.ndarray:
    """Survival weights of ``n_paths`` paths for each row of ``sl``; returns 1 - their mean.
    The working arrays hold only the paths still inside the horizon."""
    n = sl.stop - sl.start
    k = surv.shape[1]
    row = np.repeat(np.arange(sl.start, sl.stop), n_paths)
    pid = np.arange(len(row))
    last = t0[row]
    stop = t1[row]
    b = beta[row]
    c = coh[row]
    grp = _draw(start_cum, rng, row)
    w = np.ones(len(row))
    out = np.ones(len(row))
    surv_flat = surv.ravel()
    dur_flat = dur.ravel()
    while pid.size:
        cand = cal.next_start(last, b, stop, rng)
        inside = cand <= stop
        if not inside.all():
            out[pid[~inside]] = w[~inside]
            pid, cand, stop, b, c, grp, w, row = (x[inside] for x in (pid, cand, stop, b, c, grp, w, row))
            if not pid.size:
                break
        cg = c * k + grp
        w = w * surv_flat[cg]
        last = cand + dur_flat[row * k + grp]
        grp = _draw(next_cum, rng, cg)
    return 1.0 - out.reshape(n, n_paths).mean(axis=1)


def _draw(cum: np.ndarray, rng, which: np.ndarray | None = None) -> np.ndarray:
    """One categorical draw per path (bisect_right, as the engine does) from the rows of
    cumulative probabilities ``cum`` (..., K; each row ends at 1) given by ``which``
    (flat row numbers; default: every row once)."""
    k = cum.shape[-1]
    flat = (cum.reshape(-1, k) + np.arange(cum.size // k)[:, None]).ravel()
    r = np.arange(len(cum)) if which is None else which
    return np.searchsorted(flat, r + rng.random(len(r)), side="right") - r * k


def visible_rows_before(path: str | Path, t_ms: int) -> pd.DataFrame:
    """ts, userId, page, auth, level of the visible (non-empty userId) rows of a
    time-ordered simulated log before ``t_ms``: what a check of the probabilities needs to
    know each user's state at t. Reads only the file up to the first 8 MB block past t."""
    import pyarrow as pa
    import pyarrow.json as pj

    buf = bytearray()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 23):
            buf += chunk
            end = buf.rfind(b"\n")
            last = bytes(buf[buf.rfind(b"\n", 0, max(end, 0)) + 1: end]) if end > 0 else b""
            if last and json.loads(last)["ts"] >= t_ms:
                break
    buf = buf[: buf.rfind(b"\n") + 1]
    schema = pa.schema([("ts", pa.int64()), ("userId", pa.string()), ("page", pa.string()),
                        ("auth", pa.string()), ("level", pa.string())])
    df = pj.read_json(pa.BufferReader(bytes(buf)), parse_options=pj.ParseOptions(
        explicit_schema=schema, unexpected_field_behavior="ignore")).to_pandas()
    return df[(df["userId"] != "") & (df["ts"] < t_ms)]
