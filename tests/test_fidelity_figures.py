"""The fidelity report's further figures of the real full log (issue 18): churn by the user's
last level and by registration month, the shares of users who start free and end paid
(reported, not checked, but for the share who start free), counted on a hand-built log with
``read_stats`` (no Spark, no simulation)."""

from __future__ import annotations

import datetime as dt
import math

import orjson

from sparkify.simulator.fidelity import (
    FURTHER_CHECKED,
    REAL_FURTHER,
    REPORTED_NOTE,
    compare,
    format_table,
    read_stats,
)


def ms(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp() * 1000)


T0 = ms("2018-10-01T00:00:01")  # the log's earliest row: its months are 2018-10 and 2018-11


def row(minute: int, uid: str, level: str, registered: str | None, page: str = "NextSong",
        auth: str = "Logged In") -> dict:
    r = {"ts": T0 + minute * 60_000, "userId": uid, "sessionId": 1, "page": page, "auth": auth, "method": "PUT",
         "status": 200, "level": level, "itemInSession": 0}
    if uid:
        r.update(location="X", userAgent="Y", lastName="B", firstName="A", registration=ms(registered), gender="F")
    return r


def cancel(minute: int, uid: str, level: str, registered: str) -> list[dict]:
    return [row(minute, uid, level, registered, "Cancel"),
            row(minute + 1, uid, level, registered, "Cancellation Confirmation", "Cancelled")]


# u1 registered in the log's 1st month, starts free, upgrades, cancels while paid;
# u2 registered before the log, paid throughout, stays;
# u3 registered in the log's 2nd month, free throughout, stays;
# u4 registered before the log, starts paid, downgrades, stays;
# u5 registered in the log's 1st month, free throughout, stays;
# u6 registered before the log, free throughout, cancels.
# (Grouped by the first level instead of the last, churn would be 2/4 free, 0/2 paid.)
# A hidden (logged-out, no user fields) row at level paid comes first: it counts for no user.
ROWS = sorted(
    [row(0, "", "paid", None, "Home", "Logged Out"),
     row(1, "1", "free", "2018-10-05"), row(50, "1", "paid", "2018-10-05"), *cancel(60, "1", "paid", "2018-10-05"),
     row(2, "2", "paid", "2018-08-20"), row(70, "2", "paid", "2018-08-20"),
     row(80, "3", "free", "2018-11-10"),
     row(3, "4", "paid", "2018-09-01"), row(40, "4", "free", "2018-09-01"), row(90, "4", "free", "2018-09-01"),
     row(4, "5", "free", "2018-10-20"), row(99, "5", "free", "2018-10-20"),
     row(5, "6", "free", "2018-05-15"), *cancel(30, "6", "free", "2018-05-15")],
    key=lambda r: r["ts"])


def write(tmp_path, rows) -> object:
    log = tmp_path / "log.json"
    log.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return log


def test_further_figures_count_each_user_in_the_right_cells(tmp_path):
    got = read_stats(write(tmp_path, ROWS)).further()
    assert got == {
        "churn share, last level free": (1 / 4, 4),                       # u3, u4, u5, u6 (churned)
        "churn share, last level paid": (1 / 2, 2),                       # u1 (churned), u2
        "churn share, registered in the log's 1st month": (1 / 2, 2),     # u1 (churned), u5
        "churn share, registered in the log's 2nd month": (0.0, 1),       # u3
        "churn share, registered before the log": (1 / 3, 3),             # u2, u4, u6 (churned)
        "share of users whose first event is free": (4 / 6, 6),           # u1, u3, u5, u6
        "share of users whose last event is paid": (2 / 6, 6),            # u1, u2
    }
    assert set(got) == set(REAL_FURTHER)


def test_first_and_last_level_follow_ts_not_file_order(tmp_path):
    # u1's rows written latest first: the earliest (free) is still its first level, the
    # latest (paid) its last
    rows = [row(50, "1", "paid", "2018-10-05"), row(1, "1", "free", "2018-10-05")]
    st = read_stats(write(tmp_path, rows))
    got = st.further()
    assert got["share of users whose first event is free"] == (1.0, 1)
    assert got["share of users whose last event is paid"] == (1.0, 1)
    assert st.unordered == 1


def test_reported_rows_are_shown_apart_and_never_fail_the_start_free_share_is_checked(tmp_path):
    checks = compare(read_stats(write(tmp_path, ROWS)))
    info = {c.name: c for c in checks if not c.checked}
    assert set(info) == set(REAL_FURTHER) - set(FURTHER_CHECKED)
    assert all(c.ok for c in info.values())                # far from the real figures, still no failure
    paid = info["churn share, last level paid"]
    assert (paid.real, paid.sim, paid.n) == (0.246, 0.5, 2)
    assert math.isclose(paid.diff, 0.5 / 0.246 - 1)
    before = info["churn share, registered before the log"]
    assert before.real.startswith("0.21-0.33") and before.sim == 1 / 3 and before.diff == "above"
    assert info["churn share, registered in the log's 2nd month"].diff == -1.0
    text = format_table(checks)
    head, _, tail = text.partition(REPORTED_NOTE)
    assert tail and "churn share, last level paid" in tail and "churn share, last level paid" not in head
    assert "churn rate (users)" in head
    # the share of users who start free is a check: 4/6 is within 25 % of 0.76, 1/6 is not
    start = {c.name: c for c in checks}["share of users whose first event is free"]
    assert start.checked and start.ok and start.sim == 4 / 6 and "share of users whose first" in head
    paid_start = [dict(r, level="paid") if r["userId"] in {"1", "2", "3", "4", "5"} else r for r in ROWS]
    start = {c.name: c for c in compare(read_stats(write(tmp_path, paid_start)))}[start.name]
    assert start.sim == 1 / 6 and not start.ok


def test_an_empty_group_is_nan(tmp_path):
    got = read_stats(write(tmp_path, [row(1, "2", "paid", "2018-08-20")])).further()
    share, n = got["churn share, last level free"]
    assert math.isnan(share) and n == 0
    assert got["churn share, registered before the log"] == (0.0, 1)
