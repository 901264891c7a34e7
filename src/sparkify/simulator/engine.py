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
from sparkify.simulator.satisfaction import (
    COUNTERS,
    STATE_FIELDS,
    Resume,
    SatisfactionRun,
    UserMood,
    engagement_bucket,
)

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
    daily_hazard: np.ndarray | None = None  # float32 (user, day): the satisfaction model's hazards, NaN unchecked
    daily_state: np.ndarray | None = None  # float64 (user, day, STATE_FIELDS): each user's state at each midnight
    baseline: np.ndarray | None = None  # float64 per user: the satisfaction model's baseline
    temperament: np.ndarray | None = None  # float64 per user: the satisfaction model's temperament multiplier
    survival: np.ndarray | None = None  # float64 per user: P(no cancel decision) over a resumed horizon


def _stream(draw, n: int):
    while True:
        yield draw(n).tolist()


def user_rng(seed: int, cohort: int, index: int) -> np.random.Generator:
    """The random stream of one user: fixed by (run seed, cohort, user index)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(int(cohort), int(index)))))


def simulate_block(block: UserBlock, models: list[Model], start: int, end: int, timing: Timing,
                   song_cum: np.ndarray, song_len: list[int], sat: SatisfactionRun | None = None,
                   resume: Resume | None = None) -> BlockResult:
    """Simulate every user of ``block`` (see the module docstring for the rules).

    In: the block, the cohorts' models, the window [start, end) (epoch s), the timing,
    the catalogue's cumulative song weights and song lengths (s), and for the
    satisfaction churn model its :class:`~.satisfaction.SatisfactionRun` (None: eventsim's
    churn). ``resume``: continue the block's one user from a recorded midnight state on a
    fresh random stream (:class:`~.satisfaction.Resume`; its survival is in the result).
    Out: the block's :class:`BlockResult`. The event loop is inline on purpose (see the
    module docstring)."""
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
    n_users = len(block.index)
    daily = None if sat is None else np.full((n_users, sat.n_days), np.nan, dtype=np.float32)
    states = None if sat is None else np.full((n_users, sat.n_days, len(STATE_FIELDS)), np.nan)
    baselines = np.zeros(n_users)
    tempers = np.ones(n_users)
    survival = np.ones(n_users)

    for k in range(len(block.index)):
        uidx = int(block.index[k])
        cohort = int(block.cohort[k])
        m = models[cohort]
        CUM, KIND, CHURN, GROUP = m.cum, m.kind, m.churn, m.group
        DEST = m.dest_end  # each list ends with -1: "the session ends"
        START_CUM, START_DEST = m.start_cum, m.start_dest
        rng = user_rng(block.seed, cohort, uidx) if resume is None else resume.rng
        unext, enext, snext, srnd, sexp = _user_draws(rng, song_cum)
        alpha = float(block.alpha[k])
        beta = float(block.beta[k])
        group = int(block.group[k])
        n_before = len(ts_out)
        warm: list[int] = []  # states walked before the window (the satisfaction model counts them)
        warm_append = warm.append
        t0 = int(block.t0[k])
        if sat is not None and t0 <= start:  # start-up users: a history to fill their counters
            t0 -= sat.warmup
        key = FIRST_SESSION_KEY
        if resume is not None:
            mood = _Mood(sat, cohort, rng.spawn(1)[0], daily[k], states[k], resume)
            group, key = resume.group, resume.t_last
            t = mood.check_days(_redraw_after(resume.t_branch, key, beta / mood.engagement(key), timing, srnd,
                                              sexp), key, group)
        else:
            t = first_session_start(t0, beta, timing, srnd, sexp)
            if sat is not None:
                mood = _Mood(sat, cohort, rng.spawn(1)[0], daily[k], states[k])
                baselines[k] = mood.mood.baseline
                tempers[k] = sat.model.temperaments[mood.temper]
                t = mood.check_days(t, start, group)
        while t < end:
            # ---- a new session
            sess_key.append(key)
            sess_user.append(uidx)
            sess_cohort.append(cohort)
            n_sess_before = len(ts_out)
            if sat is not None:
                if mood.cancelling:
                    t = mood.cancel_visit(t, start, end, group, alpha, enext, ts_out, code_out)
                    ev_counts.append(len(ts_out) - n_sess_before)
                    if t < end:
                        churn_ts[k] = t
                    break
                CUM, DEST = mood.chain(t)
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
                else:
                    warm_append(s)
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
            if sat is None or t >= start:  # the satisfaction model's history keeps the initial level mix
                group = GROUP[s]
            key = t
            if sat is None:
                t = next_session_start(t, beta, timing, srnd, sexp)
            else:
                mood.session_ended(t, warm, ts_out, code_out, n_sess_before)
                t = next_session_start(t, beta / mood.engagement(t), timing, srnd, sexp)
                t = mood.check_days(t, key, group)
        user_events.append(len(ts_out) - n_before)
        if sat is not None:
            survival[k] = mood.survival

    result = _block_result(block, models[0], ts_out, code_out, ev_counts, user_events,
                           (sess_key, sess_user, sess_cohort), churn_ts)
    if sat is not None:
        result.daily_hazard, result.daily_state, result.survival = daily, states, survival
        result.baseline, result.temperament = baselines, tempers
    return result


def _redraw_after(t_branch: int, last: int, beta: float, timing: Timing, rnd, expo, tries: int = 200) -> int:
    """The next session start after ``last`` given that none came by ``t_branch``: the gap
    rule drawn again until it lands after ``t_branch`` (from ``t_branch`` itself after
    ``tries`` misses: a user away far longer than usual)."""
    for _ in range(tries):
        t = next_session_start(last, beta, timing, rnd, expo)
        if t > t_branch:
            return t
    return next_session_start(t_branch, beta, timing, rnd, expo)


class _Mood:
    """One user's satisfaction-model state inside :func:`simulate_block`: the decaying
    counters (:class:`~.satisfaction.UserMood`), the next midnight to decide on, the
    user's row of daily hazards, and whether the user is on the way to cancel."""

    def __init__(self, sat: SatisfactionRun, cohort: int, rng: np.random.Generator, hazard_row: np.ndarray,
                 state_rows: np.ndarray, resume: Resume | None = None):
        self.sat = sat
        self.rnd = chain.from_iterable(_stream(rng.random, 64)).__next__
        self.row = hazard_row
        self.states = state_rows
        self.cohort = cohort
        self.cancelling = False
        self.survival = 1.0
        self.t_stop = None
        if resume is None:
            self.mood = UserMood(sat.model, sat.model.baseline_sd * float(rng.standard_normal()))
            self.temper = int(rng.integers(len(sat.model.temperaments)))
            self.day = 0
        else:  # the state at the midnight t_branch; its own hazard counts, then the future is new
            self.mood = resume.mood(sat.model)
            self.temper = resume.temperament
            self.day = (resume.t_branch - sat.first_midnight) // DAY + 1
            self.t_stop = resume.t_stop
            self.survival = 1.0 - sat.model.daily_hazard(self.mood.dissatisfaction(resume.t_branch),
                                                         sat.paid[resume.group])

    def engagement(self, t: int) -> float:
        return self.sat.model.engagement(self.mood.dissatisfaction(t))

    def chain(self, t: int):
        """(cum, dest_end) of the chain at the user's engagement at time t."""
        m = self.sat.variants[self.cohort][self.temper][engagement_bucket(self.engagement(t))]
        return m.cum, m.dest_end

    def session_ended(self, t: int, warm: list[int], ts_out: list[int], code_out: list[int], first: int) -> None:
        """At the session's end t, add the counts of its events: the states walked before
        the window (``warm``, emptied here) and the emitted ones (``code_out[first:]``)."""
        counters = self.sat.counters
        counts = [0] * len(COUNTERS)
        for c in chain(warm, code_out[first:]):
            i = counters[c & 0xFF]
            if i >= 0:
                counts[i] += 1
        if warm or first < len(code_out):
            self.mood.update(t, counts)
        warm.clear()

    def check_days(self, t_next: int, t_last: int, group: int) -> int:
        """Decide each midnight up to the next session at ``t_next`` (the last event was at
        ``t_last``); on a decision to cancel, return the time of the cancelling visit
        (that day, or ``t_next`` if earlier), else ``t_next``."""
        sat = self.sat
        while self.day < sat.n_days:
            midnight = sat.first_midnight + self.day * DAY
            if midnight > t_next:
                break
            if sat.registered[group]:
                h = sat.model.daily_hazard(self.mood.dissatisfaction(midnight), sat.paid[group])
                self.row[self.day] = h
                self.states[self.day] = self.mood.state() + (group, t_last)
                self.day += 1
                if self.t_stop is not None:  # a resumed future: the chance of no decision, no draw
                    self.survival *= 1.0 - h
                    continue
                if self.rnd() < h:
                    self.cancelling = True
                    return min(t_next, max(midnight + int(DAY * self.rnd()), t_last + 1))
            else:
                self.day += 1
        return t_next

    def cancel_visit(self, t: int, start: int, end: int, group: int, alpha: float, enext, ts_out: list[int],
                     code_out: list[int]) -> int:
        """Emit the cancelling visit from time t (its states in :attr:`SatisfactionRun.cancel_path`,
        timed like any session); return the time of its Cancellation Confirmation."""
        kind = self.sat.variants[0][0][0].kind
        for item, s in enumerate(self.sat.cancel_path[group]):
            if item:
                t += 1 if kind[s] == 1 else int(alpha * enext())
            if start <= t < end:
                ts_out.append(t)
                code_out.append(s | item << ITEM_SHIFT)
        return t


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
