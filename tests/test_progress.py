"""The one progress display: start and end lines, the live line's bar and time left, and
the Spark tasks it reads while a job runs."""

from __future__ import annotations

import io
import re
import threading
import time

import pytest

from sparkify.progress import Progress, SparkTasks, bar, eta_seconds, format_seconds


def test_bar_and_time_left():
    assert bar(0.0, 10) == "▕" + " " * 10 + "▏"
    assert bar(0.5, 10) == "▕" + "█" * 5 + " " * 5 + "▏"
    assert bar(2.0, 4) == "▕████▏"            # clipped
    assert eta_seconds(0, 10, 5.0) is None      # nothing done yet: no estimate
    assert eta_seconds(2, 10, 4.0) == pytest.approx(16.0)
    assert eta_seconds(10, 10, 4.0) == 0.0
    assert format_seconds(42.4) == "42 s" and format_seconds(185) == "3 min 05 s"


def test_stages_print_start_and_end_lines_with_notes_and_timings():
    out = io.StringIO()
    progress = Progress(out=out, live=False)
    with progress.stage("load") as st:
        st.note = "10 user events"
    with progress.stage("load"):
        pass
    with pytest.raises(RuntimeError):
        with progress.stage("compare"):
            raise RuntimeError("boom")
    lines = out.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        "load ...", "load done in 0.0 s: 10 user events", "load ...", "load done in 0.0 s", "compare ..."]
    assert all(re.match(r"\[ *\d+\.\ds\] ", line) for line in lines)
    assert set(progress.timings) == {"load", "compare"}   # a failed step is timed, not announced as done
    assert "\r" not in out.getvalue()                     # no live line off a terminal


def test_quiet_progress_prints_nothing():
    out = io.StringIO()
    progress = Progress(verbose=False, out=out)
    with progress.stage("load"):
        progress.say("hello")
    assert out.getvalue() == "" and "load" in progress.timings


def test_live_line_shows_the_steps_units_and_spark_tasks():
    progress = Progress(out=io.StringIO(), live=False)
    assert progress.status_line() == ""
    with progress.stage("compare", total=4, unit="families") as st:
        st.started -= 10.0                          # 10 s in
        st.advance()
        line = progress.status_line(SparkTasks(stages=1, done=1, total=4), 2.0)
    assert "compare 1/4 families" in line and bar(0.25) in line
    assert "~30 s left" in line and "Spark: 1/4 tasks" in line
    with progress.stage("load"):                    # no units of its own: the Spark bar and its estimate
        line = progress.status_line(SparkTasks(stages=2, done=3, total=4), 6.0)
    assert "load " + bar(0.75) + " 3/4 tasks ~2 s left" in line


def test_live_line_is_drawn_and_cleared_on_a_terminal(monkeypatch):
    monkeypatch.setattr("sparkify.progress.REFRESH_S", 0.02)
    out = io.StringIO()
    progress = Progress(out=out, live=True)
    with progress.stage("fit", total=2, unit="folds") as st:
        st.advance()
        time.sleep(0.2)
    progress.close()
    text = out.getvalue()
    assert "] fit 1/2 folds " + bar(0.5) in text             # the live line, with its prefix
    assert "\r\x1b[K[" in text                               # cleared before the end line
    assert re.search(r"\] fit done in \d+\.\d s\n$", text)


def test_spark_tasks_are_read_while_a_job_runs(spark):
    """A job of 8 slow tasks on 2 cores: the tracker sees its stage with 8 tasks."""
    seen: list[SparkTasks] = []
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            seen.append(SparkTasks.read(spark))
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        spark.sparkContext.parallelize(range(8), 8).map(lambda x: time.sleep(0.3) or x).count()
    finally:
        stop.set()
        poller.join()
    running = [s for s in seen if s.total]
    assert running and all(s.total == 8 and 0 <= s.done <= 8 for s in running)
    assert SparkTasks.read(spark).total == 0          # nothing runs now
