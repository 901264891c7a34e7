"""Compare a (simulated) event log with the facts of the real Sparkify log.

The real facts are those of ``shared/reference/sparkify-event-log.md`` section 2 (the
mini file's counts): page counts per NextSong, the status/method of every page, the
auth shares, the churn rate, users and events per preset, the key order and types; and
how individual users behave (:data:`REAL_PER_USER`: churners' events and sessions against
those of the users who stay, events per user-session). Further figures of the real full log
(:data:`REAL_FURTHER`, from issue 18: churn by the user's last level and by registration
month, the shares of users who start free and end paid) are reported beside the simulated
ones and not checked, but for the share of users who start free (:data:`FURTHER_CHECKED`):
the simulator does not meet the others on every seed (see ``docs/simulator.md``).

In:  a JSON Lines log (file, ``.json.gz`` or directory of part files).
Out: :class:`LogStats` (one pass over the log) and a list of :class:`Check` rows with
     a pass/fail flag; :func:`format_table` renders them.
"""

from __future__ import annotations

import datetime as dt
import gzip
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson

KEY_ORDER = ("ts", "userId", "sessionId", "page", "auth", "method", "status", "level", "itemInSession",
             "location", "userAgent", "lastName", "firstName", "registration", "gender", "artist", "song",
             "length")
KEY_TYPES = {"ts": int, "userId": str, "sessionId": int, "page": str, "auth": str, "method": str, "status": int,
             "level": str, "itemInSession": int, "location": str, "userAgent": str, "lastName": str,
             "firstName": str, "registration": int, "gender": str, "artist": str, "song": str, "length": float}

# mini, all 286,500 rows: page -> (method, status, logged-in count, hidden count)
REAL_PAGES: dict[str, tuple[str, int, int, int]] = {
    "NextSong": ("PUT", 200, 228_108, 0),
    "Home": ("GET", 200, 10_082, 4_375),
    "Thumbs Up": ("PUT", 307, 12_551, 0),
    "Add to Playlist": ("PUT", 200, 6_526, 0),
    "Add Friend": ("PUT", 307, 4_277, 0),
    "Roll Advert": ("GET", 200, 3_933, 0),
    "Login": ("PUT", 307, 0, 3_241),
    "Logout": ("PUT", 307, 3_226, 0),
    "Thumbs Down": ("PUT", 307, 2_546, 0),
    "Downgrade": ("GET", 200, 2_055, 0),
    "Help": ("GET", 200, 1_454, 272),
    "Settings": ("GET", 200, 1_514, 0),
    "About": ("GET", 200, 495, 429),
    "Upgrade": ("GET", 200, 499, 0),
    "Save Settings": ("PUT", 307, 310, 0),
    "Error": ("GET", 404, 252, 6),
    "Submit Upgrade": ("PUT", 307, 159, 0),
    "Submit Downgrade": ("PUT", 307, 63, 0),
    "Cancel": ("PUT", 307, 52, 0),
    "Cancellation Confirmation": ("GET", 200, 52, 0),
    "Register": ("GET", 200, 0, 18),
    "Submit Registration": ("PUT", 307, 0, 5),
}
REAL_AUTH = {"Logged In": 278_102, "Logged Out": 8_249, "Guest": 97, "Cancelled": 52}
REAL_PAID_SHARE = 222_433 / 278_154  # of logged-in events
RATIO_TOLERANCE = 0.15
MIN_RATIO = 0.001
CHURN_RANGE = (0.18, 0.27)
AUTH_TOLERANCE = 0.015  # absolute, on the share of rows
SIZE_TOLERANCE = 0.10

# mini, per user (rows with a userId shown): 52 churned users have 44,864 events (863 each),
# the 173 who stay 233,290 (1,348 each); sessions 10 against 15 each; 278,154 events in
# 3,175 distinct (userId, sessionId), 87.6 each (the full log: ~58).
REAL_PER_USER: dict[str, float] = {
    "events per user, churned / staying": 863 / 1_348,
    "sessions per user, churned / staying": 10 / 15,
    "events per user-session": 87.6,
}
PER_USER_TOLERANCE = 0.25

# Further figures of the real full log (issue 18; the level shares from a 10 % user sample),
# reported beside the simulated ones and not checked, but for those of FURTHER_CHECKED (held
# to PER_USER_TOLERANCE: mini seeds 11, 42, 43, 44 and medium 42, 43 gave 0.76-0.82 for the
# share of users who start free; the other figures left 25 % on some seed, or came too
# close). Per user, on the rows with a userId shown: churned = the user has a Cancellation
# Confirmation; the first / last level is the level of the user's earliest / latest such
# row; the registration month is the UTC month of the user's ``registration``, counted from
# the month of the log's earliest row (the real log's "October" and "November" are its first
# and second months; "months 3-9", March to September, had 21-33 % each: a range, shown as
# such, against the pooled churn of all simulated users registered before the log). Users
# registered after the log's second month fall in no registration row.
REAL_FURTHER: dict[str, float | tuple[float, float]] = {
    "churn share, last level free": 0.182,
    "churn share, last level paid": 0.246,
    "churn share, registered in the log's 1st month": 0.115,
    "churn share, registered in the log's 2nd month": 0.048,
    "churn share, registered before the log": (0.21, 0.33),
    "share of users whose first event is free": 0.76,
    "share of users whose last event is paid": 0.61,
}
FURTHER_CHECKED = ("share of users whose first event is free",)
REPORTED_NOTE = "reported, not checked (real: the full Sparkify log, issue 18)"


@dataclass
class LogStats:
    """Counts from one pass over a log."""

    rows: int = 0
    pages_shown: Counter = field(default_factory=Counter)  # rows with a userId shown
    pages_hidden: Counter = field(default_factory=Counter)
    page_method_status: dict[str, set] = field(default_factory=dict)
    auth: Counter = field(default_factory=Counter)
    level_shown: Counter = field(default_factory=Counter)
    users: set = field(default_factory=set)
    churned: set = field(default_factory=set)
    key_errors: list[str] = field(default_factory=list)
    type_errors: list[str] = field(default_factory=list)
    unordered: int = 0  # rows whose ts is earlier than the previous row's (per file)
    user_events: Counter = field(default_factory=Counter)  # userId -> rows with the userId shown
    user_sessions: dict[str, set] = field(default_factory=dict)  # userId -> its sessionIds
    user_first: dict[str, tuple] = field(default_factory=dict)  # userId -> (ts, level) of its earliest shown row
    user_last: dict[str, tuple] = field(default_factory=dict)  # userId -> (ts, level) of its latest shown row
    user_registration: dict[str, int] = field(default_factory=dict)  # userId -> registration (ms)
    ts_min: int | None = None  # the log's earliest ts (ms)

    @property
    def songs(self) -> int:
        return self.pages_shown["NextSong"]

    def per_user(self) -> dict[str, float]:
        """The figures of :data:`REAL_PER_USER` for this log (NaN where a group is empty)."""
        def mean(values: list[int]) -> float:
            return sum(values) / len(values) if values else math.nan

        def ratio(a: float, b: float) -> float:
            return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan

        stay = [u for u in self.user_events if u not in self.churned]
        gone = [u for u in self.user_events if u in self.churned]
        n_sessions = sum(len(s) for s in self.user_sessions.values())
        return {
            "events per user, churned / staying": ratio(mean([self.user_events[u] for u in gone]),
                                                        mean([self.user_events[u] for u in stay])),
            "sessions per user, churned / staying": ratio(mean([len(self.user_sessions[u]) for u in gone]),
                                                          mean([len(self.user_sessions[u]) for u in stay])),
            "events per user-session": ratio(sum(self.user_events.values()), n_sessions),
        }

    def further(self) -> dict[str, tuple[float, int]]:
        """The figures of :data:`REAL_FURTHER` for this log: name -> (share, users it is
        a share of); NaN where no user is in the group."""
        def share(hits: int, n: int) -> tuple[float, int]:
            return (hits / n if n else math.nan, n)

        users = list(self.user_first)
        gone = self.churned
        by_last: dict[str, list[str]] = {"free": [], "paid": []}
        for u in users:
            by_last.setdefault(self.user_last[u][1], []).append(u)
        by_month: dict[str, list[str]] = {"1st": [], "2nd": [], "before": []}
        if self.ts_min is not None:
            t0 = dt.datetime.fromtimestamp(self.ts_min / 1000, tz=dt.timezone.utc)
            m0 = t0.year * 12 + t0.month - 1
            for u, reg in self.user_registration.items():
                r = dt.datetime.fromtimestamp(reg / 1000, tz=dt.timezone.utc)
                k = r.year * 12 + r.month - 1 - m0
                if k < 0:
                    by_month["before"].append(u)
                elif k <= 1:
                    by_month["1st" if k == 0 else "2nd"].append(u)
        out = {}
        for lv in ("free", "paid"):
            g = by_last[lv]
            out[f"churn share, last level {lv}"] = share(sum(u in gone for u in g), len(g))
        for key, name in (("1st", "registered in the log's 1st month"), ("2nd", "registered in the log's 2nd month"),
                          ("before", "registered before the log")):
            g = by_month[key]
            out[f"churn share, {name}"] = share(sum(u in gone for u in g), len(g))
        out["share of users whose first event is free"] = share(
            sum(self.user_first[u][1] == "free" for u in users), len(users))
        out["share of users whose last event is paid"] = share(
            sum(self.user_last[u][1] == "paid" for u in users), len(users))
        return out


def _files(path: Path) -> list[Path]:
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.name.startswith("part-") and ".json" in p.name)
    return [path]


_POS = {k: i for i, k in enumerate(KEY_ORDER)}
_HEAD = KEY_ORDER[:9]


def check_row(row: dict, errors_keys: list[str], errors_types: list[str], limit: int = 5) -> None:
    """Append key-order / type problems of one decoded row (real order, null fields omitted)."""
    last = -1
    bad_keys = tuple(row)[:9] != _HEAD
    for k, v in row.items():
        p = _POS.get(k)
        if p is None or p <= last:
            bad_keys = True
            continue
        last = p
        if v is None:
            continue
        t = KEY_TYPES[k]
        if t is float:
            ok = isinstance(v, (float, int)) and not isinstance(v, bool)
        else:
            ok = type(v) is t
        if not ok and len(errors_types) < limit:
            errors_types.append(f"{k}={v!r}")
    if bad_keys and len(errors_keys) < limit:
        errors_keys.append(f"keys {list(row)}")


def read_stats(path: Path, check_every: int = 97) -> LogStats:
    """One pass over a log: page/auth/level counts, users, churners, key order and types
    (checked on every ``check_every``-th row and every first row of a page)."""
    st = LogStats()
    seen_pages: set[str] = set()
    for f in _files(path):
        opener = gzip.open if f.name.endswith(".gz") else open
        last_ts = None
        with opener(f, "rb") as fh:
            for line in fh:
                row = orjson.loads(line)
                st.rows += 1
                page = row["page"]
                uid = row["userId"]
                ts = row["ts"]
                if page not in seen_pages or st.rows % check_every == 0:
                    seen_pages.add(page)
                    check_row(row, st.key_errors, st.type_errors)
                st.page_method_status.setdefault(page, set()).add((row["method"], row["status"]))
                st.auth[row["auth"]] += 1
                if "firstName" in row:
                    st.pages_shown[page] += 1
                    st.users.add(uid)
                    level = row["level"]
                    st.level_shown[level] += 1
                    st.user_events[uid] += 1
                    st.user_sessions.setdefault(uid, set()).add(row["sessionId"])
                    first = st.user_first.get(uid)
                    if first is None:
                        st.user_first[uid] = st.user_last[uid] = (ts, level)
                        reg = row.get("registration")
                        if reg is not None:
                            st.user_registration[uid] = reg
                    else:
                        if ts < first[0]:
                            st.user_first[uid] = (ts, level)
                        if ts >= st.user_last[uid][0]:
                            st.user_last[uid] = (ts, level)
                    if page == "Cancellation Confirmation":
                        st.churned.add(uid)
                else:
                    st.pages_hidden[page] += 1
                if st.ts_min is None or ts < st.ts_min:
                    st.ts_min = ts
                if last_ts is not None and ts < last_ts:
                    st.unordered += 1
                last_ts = ts
    return st


@dataclass
class Check:
    name: str
    real: float | str
    sim: float | str
    diff: float | str
    ok: bool
    checked: bool = True  # False: a figure reported beside the real one, never a failure
    n: int | None = None  # users the figure is a share of (the further figures)


def compare(st: LogStats, preset: str | None = None, users: int | None = None) -> list[Check]:
    """Checks of a log against the real facts. ``preset``/``users`` add the size checks."""
    checks: list[Check] = []
    songs = max(st.songs, 1)
    real_songs = REAL_PAGES["NextSong"][2]
    for page, (_method, _status, shown, hidden) in REAL_PAGES.items():
        if page == "NextSong":
            continue
        for label, real_n, sim_n in (("", shown, st.pages_shown[page]),
                                     (" (all rows)", shown + hidden, st.pages_shown[page] + st.pages_hidden[page])):
            if label and hidden == 0:
                continue
            real_r = real_n / real_songs
            if real_r < MIN_RATIO:
                continue
            sim_r = sim_n / songs
            diff = sim_r / real_r - 1
            checks.append(Check(f"{page}{label} / NextSong", real_r, sim_r, diff, abs(diff) <= RATIO_TOLERANCE))
    bad_map = [f"{p}: {sorted(v)}" for p, v in st.page_method_status.items()
               if p not in REAL_PAGES or v != {REAL_PAGES[p][:2]}]
    checks.append(Check("method/status per page", "real mapping", "; ".join(bad_map) or "same", "", not bad_map))
    missing = sorted(p for p, v in REAL_PAGES.items() if v[2] + v[3] >= 50 and p not in st.page_method_status)
    checks.append(Check("pages present (>= 50 real rows)", 22, len(st.page_method_status),
                        ", ".join(missing) or "", not missing))
    real_rows = sum(REAL_AUTH.values())
    for auth, n in REAL_AUTH.items():
        real_s, sim_s = n / real_rows, st.auth[auth] / max(st.rows, 1)
        checks.append(Check(f"auth share {auth}", real_s, sim_s, sim_s - real_s,
                            abs(sim_s - real_s) <= AUTH_TOLERANCE))
    shown = max(sum(st.level_shown.values()), 1)
    paid = st.level_shown["paid"] / shown
    checks.append(Check("paid share of user events", REAL_PAID_SHARE, paid, paid - REAL_PAID_SHARE,
                        abs(paid - REAL_PAID_SHARE) <= 0.10))
    churn = len(st.churned) / max(len(st.users), 1)
    checks.append(Check("churn rate (users)", "0.18-0.27", churn, "", CHURN_RANGE[0] <= churn <= CHURN_RANGE[1]))
    for name, sim_v in st.per_user().items():
        real_v = REAL_PER_USER[name]
        d = sim_v / real_v - 1
        checks.append(Check(name, real_v, sim_v, d, abs(d) <= PER_USER_TOLERANCE))
    checks.append(Check("key order", "real", "; ".join(st.key_errors) or "same", "", not st.key_errors))
    checks.append(Check("value types", "real", "; ".join(st.type_errors) or "same", "", not st.type_errors))
    checks.append(Check("time-ordered rows", 0, st.unordered, "", st.unordered == 0))
    if preset is not None:
        from sparkify.simulator.presets import PRESETS

        p = PRESETS[preset]
        for name, real_n, sim_n in (("users", p.users, len(st.users)), ("events", p.events, st.rows)):
            d = sim_n / real_n - 1
            checks.append(Check(f"{name} ({preset})", real_n, sim_n, d, abs(d) <= SIZE_TOLERANCE))
    elif users is not None:
        d = len(st.users) / users - 1
        checks.append(Check("users (requested)", users, len(st.users), d, abs(d) <= SIZE_TOLERANCE))
    checks.extend(further_rows(st))
    return checks


def further_rows(st: LogStats) -> list[Check]:
    """The figures of :data:`REAL_FURTHER`: those of :data:`FURTHER_CHECKED` as checks
    (within :data:`PER_USER_TOLERANCE`), the others as rows that are never a failure
    (``checked=False``); difference = simulated / real - 1, or where the simulated share
    lies against a real range."""
    rows = []
    for name, (sim_v, n) in st.further().items():
        real_v = REAL_FURTHER[name]
        if isinstance(real_v, tuple):
            lo, hi = real_v
            real_s = f"{lo:.2f}-{hi:.2f} (each month 3-9)"
            diff = "" if math.isnan(sim_v) else "below" if sim_v < lo else "above" if sim_v > hi else "inside"
            rows.append(Check(name, real_s, sim_v, diff, True, checked=False, n=n))
        elif name in FURTHER_CHECKED:
            d = sim_v / real_v - 1
            rows.append(Check(name, real_v, sim_v, d, abs(d) <= PER_USER_TOLERANCE, n=n))
        else:
            rows.append(Check(name, real_v, sim_v, sim_v / real_v - 1, True, checked=False, n=n))
    return rows


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:+.1%}" if -1 < v < 1 and v != 0 and abs(v) < 0.5 and False else f"{v:.5g}"
    return str(v)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(len(widths))).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def format_table(checks: list[Check]) -> str:
    """A plain-text table: check, real, simulated, difference, OK; then the rows that are
    reported, not checked (``checked=False``), in a table of their own with the users each
    share is of."""
    def diff(c: Check) -> str:
        return f"{c.diff:+.1%}" if isinstance(c.diff, float) and not math.isnan(c.diff) else str(c.diff)

    rows = [("check", "real", "simulated", "difference", "ok")]
    for c in checks:
        if c.checked:
            rows.append((c.name, _fmt(c.real), _fmt(c.sim)[:60], diff(c), "ok" if c.ok else "FAIL"))
    lines = _table(rows)
    info = [("figure", "real", "simulated", "difference", "users")]
    for c in checks:
        if not c.checked:
            info.append((c.name, _fmt(c.real), _fmt(c.sim)[:60], diff(c), "" if c.n is None else str(c.n)))
    if len(info) > 1:
        lines += ["", REPORTED_NOTE + ":"] + _table(info)
    return "\n".join(lines)
