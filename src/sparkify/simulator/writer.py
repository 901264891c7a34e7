"""Orchestration: roster -> parallel simulation -> sessionIds -> time order -> JSON Lines.

1. The roster (every user's cohort, id, rates, start state, attributes, registration,
   arrival) is drawn in the parent process from the run seed.
2. Users are simulated in fixed blocks of ``BLOCK_USERS`` (each user from its own seeded
   stream) on a process pool; results come back in block order.
3. sessionIds are numbered per cohort in eventsim's order: first sessions of all users at
   start-up (by user), then every later session by the time it was created (the end of
   the previous one).
4. All events are sorted by (ts, user, sequence) — globally time-ordered like eventsim's
   output — and cut into fixed chunks of ``CHUNK_EVENTS`` rows that the pool encodes
   to JSON Lines from pre-encoded pieces (userId/user-field prefixes per user, state
   fields per state, artist/song/length per song). A single ``.json`` file is the chunks
   concatenated; a directory gets one part file per chunk (``part-00000.json`` ...),
   so concatenating the parts in name order gives the same, globally time-ordered log.
   With gzip each chunk is one gzip member (a concatenation is valid gzip).

Blocks and chunks do not depend on the number of workers, so the output bytes do not
either.
"""

from __future__ import annotations

import functools
import gzip as gzip_mod
import math
import multiprocessing as mp
import os
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from sparkify.simulator.engine import (
    ITEM_SHIFT,
    SONG_SHIFT,
    BlockResult,
    Timing,
    UserBlock,
    simulate_block,
)
from sparkify.simulator.eventsim_config import Model

BLOCK_USERS = 32
CHUNK_EVENTS = 1_000_000
LINE = b'{"ts":%d000,"userId":"%b","sessionId":%d%b%d%b%b}\n'

# Set in the parent before the pool forks (inherited by the workers); one run at a time
# per process holds it (simulate() called from two threads waits its turn).
_CTX: dict = {}
_CTX_LOCK = threading.Lock()


@dataclass
class Roster:
    """Every simulated user (one entry per user, global index order)."""

    cohort: np.ndarray  # int16 index into the cohort list
    user_id: np.ndarray  # int64
    alpha: np.ndarray
    beta: np.ndarray
    t0: np.ndarray  # int64 epoch s: window start, or arrival for growth users
    arrival: np.ndarray  # int64 epoch s, -1 for start-up users
    group: np.ndarray  # int16 start (auth, level) group
    initial_auth: list[str]
    initial_level: list[str]
    registration: np.ndarray  # int64 epoch s
    first_name: np.ndarray
    last_name: np.ndarray
    location: np.ndarray
    user_agent: np.ndarray

    def __len__(self) -> int:
        return len(self.user_id)


def _run_block(block: UserBlock) -> BlockResult:
    c = _CTX
    return simulate_block(block, c["models"], c["start"], c["end"], c["timing"], c["song_cum"], c["song_len"],
                          c["sat"])


def _encode_chunk(args) -> bytes | int:
    """Encode one chunk of time-ordered events. With a target path, write it there and
    return the byte count (no copy back to the parent); else return the bytes."""
    ts, code, user, sid, target = args
    data = _encode(ts, code, user, sid)
    if target is None:
        return data
    with open(target, "wb") as fh:
        fh.write(data)
    return len(data)


def _encode(ts, code, user, sid) -> bytes:
    c = _CTX
    state = code & 0xFF
    item = (code >> ITEM_SHIFT) & 0xFFFFFF
    song = code >> SONG_SHIFT  # song + 1, 0 for no song
    show = c["show_arr"][state]
    uslot = np.where(show, user, c["hidden_slot"])
    uids = c["uid_arr"][uslot].tolist()
    sufs = c["suffix_arr"][uslot].tolist()
    mids = c["mid_arr"][state].tolist()
    tails = c["tail_arr"][song].tolist()
    data = b"".join([LINE % row for row in zip(ts.tolist(), uids, sid.tolist(), mids, item.tolist(), sufs, tails)])
    if c["gzip"]:
        return gzip_mod.compress(data, compresslevel=c["gzip_level"], mtime=0)
    return data


def _pool(workers: int):
    try:
        ctx = mp.get_context("fork")
    except ValueError:  # pragma: no cover - platforms without fork
        ctx = mp.get_context()
    return ctx.Pool(workers)


def _imap(func, items, workers: int, pool):
    """Ordered results of ``func`` over ``items``, at most 2 x workers tasks in flight
    (so neither the inputs nor the encoded chunks pile up in memory)."""
    if pool is None:
        yield from map(func, items)
        return
    pending: deque = deque()
    for item in items:
        pending.append(pool.apply_async(func, (item,)))
        if len(pending) >= 2 * workers:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def assign_session_ids(results: list[BlockResult], n_cohorts: int) -> list[np.ndarray]:
    """Number sessions 1.. per cohort in eventsim's creation order; return, per block,
    the sessionId of each of its session rows."""
    keys = np.concatenate([r.sess_key for r in results]) if results else np.zeros(0, np.int64)
    users = np.concatenate([r.sess_user for r in results]) if results else np.zeros(0, np.int32)
    cohorts = np.concatenate([r.sess_cohort for r in results]) if results else np.zeros(0, np.int16)
    order = np.lexsort((users, keys, cohorts))  # stable: equal (cohort,key,user) keep session order
    ids = np.empty(len(keys), dtype=np.int64)
    sorted_cohorts = cohorts[order]
    starts = np.searchsorted(sorted_cohorts, np.arange(n_cohorts), side="left")
    rank = np.arange(len(keys), dtype=np.int64) - starts[sorted_cohorts] + 1
    ids[order] = rank
    out, pos = [], 0
    for r in results:
        n = len(r.sess_key)
        out.append(ids[pos:pos + n])
        pos += n
    return out


def _one_run_at_a_time(func):
    """``func`` holding :data:`_CTX_LOCK` (two threads of a process never share _CTX)."""
    @functools.wraps(func)
    def locked(*args, **kwargs):
        with _CTX_LOCK:
            return func(*args, **kwargs)
    return locked


@_one_run_at_a_time
def run(*, roster: Roster, models: list[Model], start: int, end: int, timing: Timing, catalogue,
        seed: int, workers: int, out_files: list[Path] | None, single_file: Path | None, gzip: bool,
        hidden_user_id: str, user_suffix: list[bytes], progress: bool, directory: Path | None = None,
        sat=None):
    """Simulate and write. Returns (events, bytes_written, written paths, per-user arrays).
    ``sat``: the satisfaction churn model's :class:`~.satisfaction.SatisfactionRun` (None:
    eventsim's churn).

    Steps: the users in blocks on a pool (:func:`_simulate_users`), their events joined
    and put in time order (:func:`_join_blocks`), the song tails of the songs played
    (:func:`_song_tails`), then the chunks encoded and written on a fresh pool (the
    workers inherit the tails when it forks) (:func:`_write_chunks`)."""
    _set_context(roster, models, start, end, timing, catalogue, hidden_user_id, user_suffix, gzip)
    _CTX["sat"] = sat
    pool = _pool(workers) if workers > 1 else None
    try:
        results = _simulate_users(roster, seed, workers, pool, progress)
        ts, code, user, sid, outcome = _join_blocks(results, len(models))
        del results
        order = np.argsort(ts, kind="stable")
        ts, code, user, sid = ts[order], code[order], user[order], sid[order]
        del order
        if pool is not None:  # the encoders need the song tails: fork a fresh pool after building them
            pool.close()
            pool.join()
        _CTX["tail_arr"] = _song_tails(code, catalogue)
        pool = _pool(workers) if workers > 1 else None
        nbytes, written = _write_chunks(ts, code, user, sid, single_file, directory, gzip, workers, pool, progress)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        _CTX.clear()
    return len(ts), nbytes, written, outcome


def _set_context(roster: Roster, models: list[Model], start: int, end: int, timing: Timing, catalogue,
                 hidden_user_id: str, user_suffix: list[bytes], gzip: bool) -> None:
    """Fill :data:`_CTX` with what the workers need: the models, window, timing and song
    table (to simulate), and the pre-encoded pieces of a line (to encode): userId and
    user fields per user (slot ``len(roster)``: the hidden user), page fields per state."""
    n = len(roster)
    m0 = models[0]
    state_mid = []
    for (page, auth, level, method, status) in m0.states:
        state_mid.append(b',"page":' + orjson.dumps(page) + b',"auth":' + orjson.dumps(auth) + b',"method":'
                         + orjson.dumps(method) + b',"status":' + str(status).encode() + b',"level":'
                         + orjson.dumps(level) + b',"itemInSession":')
    uid_arr = np.empty(n + 1, dtype=object)
    uid_arr[:n] = [str(u).encode() for u in roster.user_id.tolist()]
    uid_arr[n] = hidden_user_id.encode()
    suffix_arr = np.empty(n + 1, dtype=object)
    suffix_arr[:n] = user_suffix
    suffix_arr[n] = b""
    mid_arr = np.empty(len(state_mid), dtype=object)
    mid_arr[:] = state_mid
    _CTX.clear()
    _CTX.update(models=models, start=start, end=end, timing=timing, song_cum=catalogue.cum,
                song_len=catalogue.length_s, show_arr=np.asarray(m0.show, dtype=bool), hidden_slot=n,
                uid_arr=uid_arr, suffix_arr=suffix_arr, mid_arr=mid_arr, gzip=gzip,
                gzip_level=3)


def _simulate_users(roster: Roster, seed: int, workers: int, pool, progress: bool) -> list[BlockResult]:
    """Every user of ``roster`` simulated in blocks of :data:`BLOCK_USERS` (on ``pool``
    when there is one); the results in block order."""
    from tqdm import tqdm

    n = len(roster)
    blocks = []
    for b0 in range(0, n, BLOCK_USERS):
        sl = slice(b0, min(n, b0 + BLOCK_USERS))
        blocks.append(UserBlock(
            index=np.arange(sl.start, sl.stop, dtype=np.int64), cohort=roster.cohort[sl], alpha=roster.alpha[sl],
            beta=roster.beta[sl], t0=roster.t0[sl], group=roster.group[sl], seed=seed))
    results: list[BlockResult] = []
    with tqdm(total=n, desc="simulate users", unit="user", disable=not progress, leave=False) as bar:
        for r in _imap(_run_block, blocks, workers, pool):
            results.append(r)
            bar.update(len(r.churn_ts))
    return results


def _join_blocks(results: list[BlockResult], n_cohorts: int):
    """The blocks' events joined (in block order, not yet time-ordered) with their
    sessionIds. Out: (ts, code, user, sessionId) arrays and the per-user outcome dict
    (``churn_ts``, ``n_events``, ``n_hidden``)."""
    sess_ids = assign_session_ids(results, n_cohorts)
    ts = np.concatenate([r.ts for r in results])
    code = np.concatenate([r.code for r in results])
    user = np.concatenate([r.user for r in results])
    sid = np.concatenate([ids[r.session] for r, ids in zip(results, sess_ids)])
    outcome = {"churn_ts": np.concatenate([r.churn_ts for r in results]),
               "n_events": np.concatenate([r.n_events for r in results]),
               "n_hidden": np.concatenate([r.n_hidden for r in results])}
    if results and results[0].daily_hazard is not None:
        for name in ("daily_hazard", "daily_state", "baseline", "temperament"):
            outcome[name] = np.concatenate([getattr(r, name) for r in results])
    return ts, code, user, sid, outcome


def _song_tails(code: np.ndarray, catalogue) -> np.ndarray:
    """Per song + 1 (slot 0: no song): the pre-encoded artist/song/length tail of a line,
    for the songs that occur in ``code``, ``b""`` elsewhere."""
    used = np.flatnonzero(np.bincount(code >> SONG_SHIFT, minlength=len(catalogue) + 1))
    used = used[used > 0]
    tail_arr = np.full(len(catalogue) + 1, b"", dtype=object)
    tail_arr[used] = catalogue.tails((used - 1).tolist())
    return tail_arr


def _write_chunks(ts, code, user, sid, single_file: Path | None, directory: Path | None, gzip: bool, workers: int,
                  pool, progress: bool) -> tuple[int, list[Path]]:
    """Encode the time-ordered events in chunks of :data:`CHUNK_EVENTS` (on ``pool`` when
    there is one) into ``single_file``, or one part file per chunk in ``directory``.
    Out: (bytes written, the paths written)."""
    from tqdm import tqdm

    total = len(ts)
    n_chunks = max(1, math.ceil(total / CHUNK_EVENTS))
    bounds = [(i * CHUNK_EVENTS, min(total, (i + 1) * CHUNK_EVENTS)) for i in range(n_chunks)]
    suffix = ".json.gz" if gzip else ".json"
    targets = [None] * n_chunks if single_file is not None else [
        directory / f"part-{i:05d}{suffix}" for i in range(n_chunks)]
    chunks = ((ts[a:b], code[a:b], user[a:b], sid[a:b], tg) for (a, b), tg in zip(bounds, targets))
    written: list[Path] = []
    nbytes = 0
    with tqdm(total=total, desc="write events", unit="ev", unit_scale=True, disable=not progress,
              leave=False) as bar:
        if single_file is not None:
            with open(single_file, "wb") as fh:
                for (a, b), data in zip(bounds, _imap(_encode_chunk, chunks, workers, pool)):
                    fh.write(data)
                    nbytes += len(data)
                    bar.update(b - a)
            written.append(single_file)
        else:
            for (a, b), target, size in zip(bounds, targets, _imap(_encode_chunk, chunks, workers, pool)):
                nbytes += size
                written.append(target)
                bar.update(b - a)
    return nbytes, written
