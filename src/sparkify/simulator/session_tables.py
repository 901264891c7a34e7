"""The per-cohort tables behind the true churn hazard (:mod:`.hazard`): what one session
of a simulated user does, computed once per run spec.

In:  a simulated run's spec (the truth table's ``sparkify.simulator`` metadata, or the
     defaults for truth tables written before it existed).
Out: a :class:`RunModel` (the config, timing, cohorts and each cohort's compiled page
     chain) and, per cohort, its tables (:func:`cohort_tables`): the probability that a
     session started in each (auth, level) group ends in each group or churns (exact,
     :func:`session_outcomes`), the next start group given no churn, the stationary
     Logged In / Logged Out shares per level, and the mean session length per start group
     over a grid of alphas (:func:`mean_session_durations`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from sparkify.simulator import TRUTH_META_KEY as META_KEY
from sparkify.simulator.engine import Timing
from sparkify.simulator.eventsim_config import EventsimConfig, Model, compile_model, load_config, parse_config
from sparkify.simulator.presets import DEFAULT_COHORTS, Cohort

__all__ = ["read_truth", "run_model", "RunModel", "session_outcomes", "mean_session_durations", "cohort_tables",
           "CohortTables", "ALPHA_GRID"]

ALPHA_GRID = np.geomspace(0.5, 2e4, 24)  # seconds: the session-length table's alphas
POOL_SESSIONS = 3000  # sessions per (cohort, start group) for the mean session lengths
POOL_SEED = 20181001


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


def spec_text(truth: pd.DataFrame | None, spec) -> str | None:
    """The run spec as JSON text: from ``spec`` (a truth parquet path, JSON text or a
    dict), else ``truth.attrs``; None when neither has one."""
    if spec is None:
        return None if truth is None else truth.attrs.get(META_KEY)
    if isinstance(spec, dict):
        return json.dumps(spec, separators=(",", ":"))
    if isinstance(spec, Path) or (isinstance(spec, str) and not spec.lstrip().startswith("{")):
        return read_truth(spec).attrs.get(META_KEY)
    return str(spec)


@lru_cache(maxsize=8)
def _run_model_cached(text: str | None, cohort_names: tuple[str, ...]) -> RunModel:
    """The :class:`RunModel` of a spec's JSON text; without one (None), of the Accordion
    template and the default cohorts named in ``cohort_names``."""
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
    timing = Timing.from_config(cfg)
    models = tuple(compile_model(cfg, c.page_scale, c.end_scale) for c in cohorts)
    return RunModel(cfg, timing, cohorts, models)


def run_model(truth: pd.DataFrame | None = None, spec=None) -> RunModel:
    """The compiled models of a run: from ``spec`` (a truth parquet path, the spec JSON
    or dict), else ``truth.attrs``, else the defaults (for the cohort names in ``truth``)."""
    text = spec_text(truth, spec)
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
    """The catalogue's cumulative song weights and song lengths (s), as the engine draws them."""
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
class CohortTables:
    """One cohort's tables (K = the number of (auth, level) start groups)."""

    outcome: np.ndarray  # (K, K + 1): session outcome probabilities
    next_cum: np.ndarray  # (K, K): cumulative next-group probabilities given no churn
    durations: np.ndarray  # (K, len(ALPHA_GRID)) mean session seconds
    logged_out_share: dict  # level -> {auth: share} at a session end (stationary)


def _stationary(p: np.ndarray) -> np.ndarray:
    """The stationary distribution (K,) of the row-stochastic transition matrix ``p`` (K, K)."""
    k = len(p)
    a = np.vstack([p.T - np.eye(k), np.ones(k)])
    b = np.zeros(k + 1)
    b[-1] = 1.0
    pi = np.linalg.lstsq(a, b, rcond=None)[0]
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum()


_TABLES: dict[tuple, CohortTables] = {}  # by the content of a compiled cohort model


def cohort_tables(run: RunModel, ci: int) -> CohortTables:
    """The tables of cohort ``ci`` of ``run``, computed once (cached on ``run`` and, by the
    content of the cohort's model, across runs)."""
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


def _cohort_tables(run: RunModel, ci: int) -> CohortTables:
    """Compute the tables of cohort ``ci`` (about a second: the mean session lengths)."""
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
    return CohortTables(out, cum, mean_session_durations(m), shares)
