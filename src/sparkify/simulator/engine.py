"""The per-user state machine: eventsim's Session/User logic, one user at a time.

Why :func:`simulate_block` is one long function: its inner loops are the simulator's hot
loop, run once per event, where CPython pays for every call; with the per-event step
moved into a helper function the function took about 15 % more CPU time (mini preset, one
process: 0.28 s against 0.24 s). The per-user setup and the result arrays are helpers.

In eventsim one priority queue interleaves all users; but users never interact (the
only shared thing is the sessionId counter, which :mod:`sparkify.simulator.writer`
assigns afterwards in eventsim's order), so each user is simulated alone here, from
their own random stream, which makes the result independent of the number of worker
processes.

In:  compiled :class:`~sparkify.simulator.eventsim_config.Model` s (one per cohort), the
     window, a :class:`Timing` and a block of users (:class:`UserBlock`).
Out: :class:`BlockResult`: the visible events as compact NumPy columns (time, state,
     itemInSession, song, session row), one row per session (creation time, user) and
     per-user outcomes (churn time, event counts).

Rules (section 4.4 of the reference):

- within a session: draw u ~ U(0,1), take the first outgoing edge whose cumulative
  probability exceeds u, or end the session when u is beyond their sum;
- timing: a 3xx page comes 1 s after the previous event; NextSong while the current
  song still plays snaps to that song's end, otherwise (and for every other page) the
  clock moves by int(Exp(alpha_u)); a song lasts int(length) seconds;
- between sessions: ``warp(last + int(Exp(beta_u)) + session_gap)`` with the daily
  warp, retried from ``last + session_gap`` when it moves backwards, and kept with
  probability 1 - weekend damping (else retried from the candidate);
- first session: from ``T0 - 2 beta_u`` step the gap rule until >= ``T0 - beta_u``
  (T0 = window start, or the arrival time of a growth user);
- a session ending in the churned auth (``Cancelled``) removes the user; otherwise the
  next session starts from the last state's (auth, level);
- events before the window start (warm-up) or at/after its end are not emitted.
"""

from __future__ import annotations

import datetime as dt
import math
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain

import numpy as np

from sparkify.simulator.eventsim_config import EventsimConfig, Model

DAY = 86_400
SONG_SHIFT = 32
ITEM_SHIFT = 8
FIRST_SESSION_KEY = -1  # creation time of every user's first session (created at start-up)


# --------------------------------------------------------------------------- calendar
def _nth_weekday(year: int, month: int, weekday: int, n: int) -> dt.date:
    d = dt.date(year, month, 1)
    d += dt.timedelta(days=(weekday - d.weekday()) % 7)
    return d + dt.timedelta(weeks=n - 1)


def _last_weekday(year: int, month: int, weekday: int) -> dt.date:
    d = dt.date(year + (month == 12), month % 12 + 1, 1) - dt.timedelta(days=1)
    return d - dt.timedelta(days=(d.weekday() - weekday) % 7)


@lru_cache(maxsize=64)
def us_holidays(year: int) -> frozenset[int]:
    """US federal holidays of ``year`` (as jollyday lists them) as epoch day numbers."""
    days = [
        dt.date(year, 1, 1), _nth_weekday(year, 1, 0, 3), _nth_weekday(year, 2, 0, 3),
        _last_weekday(year, 5, 0), dt.date(year, 7, 4), _nth_weekday(year, 9, 0, 1),
        _nth_weekday(year, 10, 0, 2), dt.date(year, 11, 11), _nth_weekday(year, 11, 3, 4),
        dt.date(year, 12, 25),
    ]
    epoch = dt.date(1970, 1, 1)
    return frozenset((d - epoch).days for d in days)


@lru_cache(maxsize=8192)
def day_off(day: int) -> float:
    """1.0 for a weekend day or US holiday (epoch day number), else 0.0."""
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday (weekday 3)
    if weekday >= 5:
        return 1.0
    year = (dt.date(1970, 1, 1) + dt.timedelta(days=day)).year
    return 1.0 if day in us_holidays(year) else 0.0


@dataclass(frozen=True)
class Timing:
    """Session-level timing parameters (seconds)."""

    session_gap: int
    damping: float
    weekend_damping: float
    weekend_offset: float  # seconds
    weekend_scale: float  # seconds

    @classmethod
    def from_config(cls, cfg: EventsimConfig) -> Timing:
        """The timing of an eventsim config (its minutes converted to seconds)."""
        return cls(session_gap=int(cfg.session_gap), damping=cfg.damping, weekend_damping=cfg.weekend_damping,
                   weekend_offset=cfg.weekend_damping_offset * 60, weekend_scale=cfg.weekend_damping_scale * 60)

    def warp(self, t: int) -> int:
        """eventsim's daily warp: pull times toward ~15:00 and away from ~03:00."""
        if not self.damping:
            return t
        return t + int(self.damping * DAY * math.sin(2 * math.pi * ((t % DAY) - 3 * 3600) / DAY))

    def weekend(self, t: int) -> float:
        """Weekend/holiday damping at time t, ramped over ``weekend_scale`` around the
        (offset) midnights that start and end an off day."""
        wd = self.weekend_damping
        if not wd:
            return 0.0
        x = t - self.weekend_offset
        d = int(x // DAY)
        s = x - d * DAY
        half = self.weekend_scale / 2
        off = day_off(d)
        if half > 0 and s < half:
            prev = day_off(d - 1)
            f = prev + (off - prev) * (s + half) / self.weekend_scale
        elif half > 0 and s > DAY - half:
            nxt = day_off(d + 1)
            f = off + (nxt - off) * (s - (DAY - half)) / self.weekend_scale
        else:
            f = off
        return wd * f


def next_session_start(last: int, beta: float, timing: Timing, rnd, expo) -> int:
    """eventsim's pickNextSessionStartTime. ``rnd``/``expo`` return U(0,1)/Exp(1) draws."""
    gap0 = timing.session_gap
    while True:
        cand = timing.warp(last + int(beta * expo()) + gap0)
        if cand < last:
            last = last + gap0
            continue
        if rnd() >= timing.weekend(cand):
            return cand
        last = cand


def first_session_start(t0: int, beta: float, timing: Timing, rnd, expo) -> int:
    """eventsim's pickFirstTimeStamp: iterate the gap rule from t0 - 2 beta to >= t0 - beta."""
    b = int(beta)
    cand = next_session_start(t0 - 2 * b, beta, timing, rnd, expo)
    while cand < t0 - b:
        cand = next_session_start(cand, beta, timing, rnd, expo)
    return cand


# --------------------------------------------------------------------------- users
@dataclass
class UserBlock:
    """A block of users simulated together (one task of the worker pool).

    All arrays have one entry per user: global user index (into the roster), cohort
    index, alpha/beta (seconds), T0 (window start or arrival, epoch s), start group
    (id of (auth, level) in the model's new-session table).
    """

    index: np.ndarray
    cohort: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    t0: np.ndarray
    group: np.ndarray
    seed: int


@dataclass
class BlockResult:
    """Events (sorted by user, then time), sessions and per-user outcomes of a block."""

    ts: np.ndarray  # int64 epoch seconds
    code: np.ndarray  # int64: state | item << 8 | (song + 1) << 32
    user: np.ndarray  # int32 global user index
    session: np.ndarray  # int64 session row (index into the block's session arrays)
    sess_key: np.ndarray  # int64 creation time of each session (-1: first session)
    sess_user: np.ndarray  # int32 global user index of each session
    sess_cohort: np.ndarray  # int16
    churn_ts: np.ndarray  # int64 per user, -1 when not churned inside the window
    n_events: np.ndarray  # int64 per user: events shown with the user's id
    n_hidden: np.ndarray  # int64 per user: Logged Out / Guest events


def _stream(draw, n: int):
    while True:
        yield draw(n).tolist()


def user_rng(seed: int, cohort: int, index: int) -> np.random.Generator:
    """The random stream of one user: fixed by (run seed, cohort, user index)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(int(cohort), int(index)))))


def simulate_block(block: UserBlock, models: list[Model], start: int, end: int, timing: Timing,
                   song_cum: np.ndarray, song_len: list[int]) -> BlockResult:
    """Simulate every user of ``block`` (see the module docstring for the rules).

    In: the block, the cohorts' models, the window [start, end) (epoch s), the timing,
    the catalogue's cumulative song weights and song lengths (s). Out: the block's
    :class:`BlockResult`. The event loop is inline on purpose (see the module docstring)."""
    ts_out: list[int] = []
    code_out: list[int] = []
    ev_counts: list[int] = []  # events per session (emitted)
    sess_key: list[int] = []
    sess_user: list[int] = []
    sess_cohort: list[int] = []
    churn_ts = np.full(len(block.index), -1, dtype=np.int64)
    user_events: list[int] = []
    ts_append = ts_out.append
    code_append = code_out.append

    for k in range(len(block.index)):
        uidx = int(block.index[k])
        cohort = int(block.cohort[k])
        m = models[cohort]
        CUM, KIND, CHURN, GROUP = m.cum, m.kind, m.churn, m.group
        DEST = m.dest_end  # each list ends with -1: "the session ends"
        START_CUM, START_DEST = m.start_cum, m.start_dest
        unext, enext, snext, srnd, sexp = _user_draws(user_rng(block.seed, cohort, uidx), song_cum)
        alpha = float(block.alpha[k])
        beta = float(block.beta[k])
        group = int(block.group[k])
        n_before = len(ts_out)
        t = first_session_start(int(block.t0[k]), beta, timing, srnd, sexp)
        key = FIRST_SESSION_KEY
        while t < end:
            # ---- a new session
            sess_key.append(key)
            sess_user.append(uidx)
            sess_cohort.append(cohort)
            n_sess_before = len(ts_out)
            s = START_DEST[group][bisect_right(START_CUM[group], unext())]
            item = 0
            if KIND[s] == 2:
                song = snext()
                song_end = t + song_len[song]
                sbits = (song + 1) << SONG_SHIFT
            else:
                song_end = -1
                sbits = 0
            while t < end:
                if t >= start:
                    ts_append(t)
                    # the song bits are kept on every row; non-song rows are cleared afterwards
                    code_append(s | item << ITEM_SHIFT | sbits)
                s2 = DEST[s][bisect_right(CUM[s], unext())]
                if s2 < 0:
                    break
                kd = KIND[s2]
                if kd == 1:
                    t += 1
                elif kd == 2:
                    if t <= song_end:  # a song still playing (one shorter than a second ends at once)
                        t = song_end
                    else:
                        t += int(alpha * enext())
                    song = snext()
                    song_end = t + song_len[song]
                    sbits = (song + 1) << SONG_SHIFT
                else:
                    t += int(alpha * enext())
                s = s2
                item += 1
            ev_counts.append(len(ts_out) - n_sess_before)
            if t >= end:
                break
            if CHURN[s]:
                if t >= start:
                    churn_ts[k] = t
                break
            group = GROUP[s]
            key = t
            t = next_session_start(t, beta, timing, srnd, sexp)
        user_events.append(len(ts_out) - n_before)

    return _block_result(block, models[0], ts_out, code_out, ev_counts, user_events,
                         (sess_key, sess_user, sess_cohort), churn_ts)


def _user_draws(rng: np.random.Generator, song_cum: np.ndarray):
    """A user's random draws, one at a time. In: the user's generator and the catalogue's
    cumulative song weights. Out: (uniform, Exp(1), song index) draw functions fed in
    batches from ``rng`` and a child stream, and (uniform, Exp(1)) draw functions of a
    second child stream for the session start times."""
    unext = chain.from_iterable(_stream(rng.random, 1024)).__next__
    enext = chain.from_iterable(_stream(rng.standard_exponential, 1024)).__next__
    srng = rng.spawn(1)[0]
    snext = chain.from_iterable(
        _stream(lambda size: np.searchsorted(song_cum, srng.random(size), side="right"), 512)
    ).__next__
    trng = rng.spawn(1)[0]
    return unext, enext, snext, trng.random, trng.standard_exponential


def _block_result(block: UserBlock, m0: Model, ts_out: list[int], code_out: list[int], ev_counts: list[int],
                  user_events: list[int], sessions: tuple[list[int], list[int], list[int]],
                  churn_ts: np.ndarray) -> BlockResult:
    """The block's :class:`BlockResult` from the loop's lists: event times and codes (song
    bits cleared on non-song rows here), events per session and per user, each session's
    (creation time, user, cohort), and the churn times. ``m0``: any cohort's model (they
    share the states)."""
    sess_key, sess_user, sess_cohort = sessions
    code = np.asarray(code_out, dtype=np.int64)
    state = code & 0xFF
    is_song = np.asarray(m0.kind, dtype=np.int8)[state] == 2
    code[~is_song] &= (1 << SONG_SHIFT) - 1
    shown = np.asarray(m0.show, dtype=bool)[state]
    bounds = np.concatenate([[0], np.cumsum(user_events)]).astype(np.int64)
    csum = np.concatenate([[0], np.cumsum(shown)]).astype(np.int64)
    n_events = np.zeros(len(block.index), dtype=np.int64)
    n_events[:] = csum[bounds[1:]] - csum[bounds[:-1]]
    n_hidden = np.zeros(len(block.index), dtype=np.int64)
    n_hidden[:] = np.diff(bounds) - n_events
    return BlockResult(
        ts=np.asarray(ts_out, dtype=np.int64),
        code=code,
        user=np.repeat(block.index.astype(np.int32), user_events),
        session=np.repeat(np.arange(len(ev_counts), dtype=np.int64), ev_counts),
        sess_key=np.asarray(sess_key, dtype=np.int64),
        sess_user=np.asarray(sess_user, dtype=np.int32),
        sess_cohort=np.asarray(sess_cohort, dtype=np.int16),
        churn_ts=churn_ts, n_events=n_events, n_hidden=n_hidden,
    )
