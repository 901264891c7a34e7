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

Steps 1 and 3 (the per-cohort tables, and the run spec they are built from) are in
:mod:`.session_tables`; this module runs step 2.

The run's config and cohort overrides come from the truth table's metadata
(``DataFrame.attrs["sparkify.simulator"]`` after ``pq.read_table(p).to_pandas()``, or
:func:`read_truth`); truth tables written before that metadata existed fall back to the
Accordion template and :data:`~sparkify.simulator.presets.DEFAULT_COHORTS` by name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sparkify.simulator.engine import DAY, Timing, day_off
from sparkify.simulator.satisfaction import satisfaction_spec
from sparkify.simulator.satisfaction import true_probability as satisfaction_probability
from sparkify.simulator.session_tables import (
    ALPHA_GRID,
    META_KEY,
    CohortTables,
    RunModel,
    cohort_tables,
    mean_session_durations,
    read_truth,
    run_model,
    session_outcomes,
    spec_text,
)

# the run spec and session tables live in .session_tables; they stay importable from here
__all__ = ["true_churn_probability", "visible_rows_before", "read_truth", "run_model", "session_outcomes",
           "mean_session_durations", "RunModel", "CohortTables", "cohort_tables", "META_KEY", "ALPHA_GRID"]

CHUNK_PATHS = 1 << 18  # paths simulated at once (memory: ~100 bytes each)


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

    For a run of the satisfaction churn model (its spec says so) the answer comes from the
    daily hazards the truth keeps (:func:`.satisfaction.true_probability`) instead.

    Exact within a session (absorbing-chain algebra), Monte Carlo for session start times
    and the free/paid (and logged-in/out) state carried across sessions; see the module
    docstring for what is approximated (sessions in progress at t, session lengths).
    Raises ValueError for unknown users, levels or auths, missing columns or h <= 0.
    """
    spec, chunk_paths, n_paths = _check_inputs(rows, horizon_days, n_paths, options)
    n_rows = len(rows)
    if n_rows == 0:
        return np.zeros(0)
    sat_spec = satisfaction_spec(spec_text(truth, spec))
    if sat_spec is not None:
        return satisfaction_probability(truth, rows, horizon_days, sat_spec, seed=seed)
    run = run_model(truth, spec)
    q = _questions(truth, rows, run, horizon_days)
    tables = [cohort_tables(run, c) for c in range(len(run.models))]
    surv, next_cum = _group_tables(run, tables)
    dur = _session_lengths(run, tables, q)
    start_cum = _start_groups(run, tables, q)

    cal = _Calendar(run.timing, int(q.t0.min()), int(q.t1.max()))
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed))))
    result = np.empty(n_rows)
    rows_per_chunk = max(1, chunk_paths // n_paths)
    for r0 in range(0, n_rows, rows_per_chunk):
        r1 = min(n_rows, r0 + rows_per_chunk)
        result[r0:r1] = _simulate_chunk(slice(r0, r1), n_paths, q.t0, q.t1, q.beta, q.coh, dur, start_cum, surv,
                                        next_cum, cal, rng)
    return result


def _check_inputs(rows: pd.DataFrame, horizon_days: float, n_paths, options: dict) -> tuple[object, int, int]:
    """Validate the arguments of :func:`true_churn_probability`. In: its ``rows``,
    ``horizon_days``, ``n_paths`` and keyword ``options``. Out: (spec, chunk_paths,
    n_paths as int). Raises TypeError for unknown options, ValueError for the rest."""
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
    return spec, chunk_paths, n_paths


@dataclass(frozen=True)
class _Questions:
    """One entry per row of ``rows``: the user's cohort index, alpha and beta, the
    horizon (t0, t1] in epoch s, the level at t0, and the auth at t0 where given."""

    coh: np.ndarray  # int64 index into run.cohorts
    alpha: np.ndarray
    beta: np.ndarray
    t0: np.ndarray  # int64 epoch s
    t1: np.ndarray  # int64 epoch s
    levels: np.ndarray  # str
    has_auth: np.ndarray  # bool
    auths: np.ndarray  # str ("" or "nan" where not given)


def _questions(truth: pd.DataFrame, rows: pd.DataFrame, run: RunModel, horizon_days: float) -> _Questions:
    """Each row's user parameters (looked up in ``truth``) and state at t. Raises
    ValueError for users missing from ``truth`` or cohorts missing from ``run``."""
    users = truth.assign(_uid=truth["userId"].astype(str)).drop_duplicates("_uid").set_index("_uid")
    uid = rows["userId"].astype(str)
    unknown = ~uid.isin(users.index)
    if unknown.any():
        raise ValueError(f"{int(unknown.sum())} userId(s) not in the truth table, e.g. {uid[unknown].iloc[0]!r}")
    u = users.loc[uid.to_numpy()]
    t0 = (rows["as_of_ms"].to_numpy(np.int64) // 1000).astype(np.int64)
    if "auth" in rows.columns:
        has_auth = (rows["auth"].notna() & (rows["auth"].astype(str) != "")).to_numpy()
        auths = rows["auth"].astype(str).to_numpy()
    else:
        has_auth = np.zeros(len(rows), dtype=bool)
        auths = np.full(len(rows), "", dtype=object)
    return _Questions(
        coh=np.array([run.cohort_index(c) for c in u["cohort"].astype(str)], dtype=np.int64),
        alpha=u["alpha"].to_numpy(np.float64),
        beta=u["beta"].to_numpy(np.float64),
        t0=t0,
        t1=t0 + int(round(horizon_days * DAY)),
        levels=rows["level"].astype(str).to_numpy(),
        has_auth=has_auth,
        auths=auths,
    )


def _group_tables(run: RunModel, tables: list[CohortTables]) -> tuple[np.ndarray, np.ndarray]:
    """The cohorts' tables padded to the largest group count K. Out: surv (C, K), the
    probability that a session started in each group does not churn, and next_cum
    (C, K, K), the cumulative next-group probabilities given no churn (padding: 0 / 1)."""
    k_max = max(len(m.groups) for m in run.models)
    n_c = len(run.models)
    surv = np.zeros((n_c, k_max))
    next_cum = np.ones((n_c, k_max, k_max))
    for c, tb in enumerate(tables):
        k = len(run.models[c].groups)
        surv[c, :k] = 1.0 - tb.outcome[:, k]
        next_cum[c, :k, :k] = tb.next_cum
    return surv, next_cum


def _session_lengths(run: RunModel, tables: list[CohortTables], q: _Questions) -> np.ndarray:
    """(rows, K) int64: each row's mean session length (s) by start group, linear in
    alpha between the grid points (a session's length is piecewise linear in alpha for
    fixed random draws)."""
    k_max = max(len(m.groups) for m in run.models)
    a = np.clip(q.alpha, ALPHA_GRID[0], ALPHA_GRID[-1])
    pos = np.clip(np.searchsorted(ALPHA_GRID, a, side="right") - 1, 0, len(ALPHA_GRID) - 2)
    frac = (a - ALPHA_GRID[pos]) / (ALPHA_GRID[pos + 1] - ALPHA_GRID[pos])
    dur = np.zeros((len(q.coh), k_max))
    for c, tb in enumerate(tables):
        sel = q.coh == c
        k = len(run.models[c].groups)
        lo, hi = tb.durations[:, pos[sel]].T, tb.durations[:, pos[sel] + 1].T
        dur[sel, :k] = lo + (hi - lo) * frac[sel, None]
    return np.rint(dur).astype(np.int64)


def _start_groups(run: RunModel, tables: list[CohortTables], q: _Questions) -> np.ndarray:
    """(rows, K): the cumulative distribution of each row's next start group: the given
    auth at the row's level, else the stationary Logged In / Logged Out shares at that
    level. Raises ValueError for an unknown level, or an auth no session starts with."""
    k_max = max(len(m.groups) for m in run.models)
    levels, auths, has_auth = q.levels, q.auths, q.has_auth
    start_cum = np.zeros((len(q.coh), k_max))
    for c, tb in enumerate(tables):
        m = run.models[c]
        for level in np.unique(levels[q.coh == c]):
            sel_l = (q.coh == c) & (levels == level)
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
    return start_cum


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
