"""The daily refresh through the store measured (``python benchmarks/store.py refresh``).

On one time-ordered log (default: the cached full preset), each step a fresh process as a
daily job runs it:

1. the log is cut at the last UTC midnight into ``history.json`` (every earlier event) and
   ``last-day.json`` (cached beside the log);
2. **first ingest**: ``sparkify ingest history.json --store S`` into an empty store, in turns
   with the yardstick, today's training load (``load_log`` of the whole raw log in a fresh
   process: what ``sparkify train`` and ``score`` spend before their features), ``--rounds``
   rounds, medians compared;
3. **append a day**: ``sparkify ingest last-day.json --store S``, ``--repeat`` runs (the
   store is put back to its first batch between runs);
4. a model (``sparkify train --store S``, default settings; or ``--model DIR``);
5. **score**: ``sparkify score --store S --model M`` (the midnight after the last event),
   ``--repeat`` runs;
6. **the same list**: ``sparkify score LOG --model M`` on the raw log, once, compared with
   the store's list byte for byte (and the scored feature rows value for value); skipped
   with ``--no-raw``.

Prints each step's wall time (process start to exit) and writes ``benchmarks/out/store.json``.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .common import ROOT, machine_line, resolve_log

SPARKIFY = ROOT / ".venv" / "bin" / "sparkify"
PYTHON = ROOT / ".venv" / "bin" / "python"
DAY_MS = 86_400_000
#: today's training load, in a fresh process: Spark started, the raw log in one pass
LOAD_SNIPPET = """
import sys
from sparkify.spark import get_spark
from sparkify.dataset import load_log
spark = get_spark()
with load_log(spark, sys.argv[1]) as log:
    print(log.quality.user_rows, log.days.df.count())
"""


def _ts_at(f, offset: int) -> tuple[int, int] | None:
    """(start offset, ts) of the first whole line at or after byte ``offset``."""
    f.seek(offset)
    if offset:
        f.readline()
    start = f.tell()
    line = f.readline()
    if not line:
        return None
    return start, json.loads(line)["ts"]


def first_offset_from(path: Path, ts: int) -> int:
    """Byte offset of the first line with a time >= ``ts`` in a time-ordered JSON Lines file."""
    with open(path, "rb") as f:
        lo, hi = 0, path.stat().st_size
        while hi - lo > 1 << 16:
            mid = (lo + hi) // 2
            found = _ts_at(f, mid)
            if found is None or found[1] >= ts:
                hi = mid
            else:
                lo = mid
        f.seek(lo)
        if lo:
            f.readline()
        while True:
            start = f.tell()
            line = f.readline()
            if not line or json.loads(line)["ts"] >= ts:
                return start


def _copy_range(src: Path, dst: Path, start: int, end: int) -> None:
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        fi.seek(start)
        left = end - start
        while left:
            chunk = fi.read(min(left, 64 << 20))
            fo.write(chunk)
            left -= len(chunk)


def split_last_day(log: Path, work: Path) -> tuple[Path, Path, dict]:
    """``history.json`` and ``last-day.json`` of ``log`` under ``work`` (cached)."""
    history, day = work / "history" / "history.json", work / "landing" / "last-day.json"
    done = work / "_SPLIT.json"
    if done.exists():
        return history, day, json.loads(done.read_text())
    with open(log, "rb") as f:
        size = log.stat().st_size
        f.seek(max(0, size - (1 << 20)))
        last_ts = json.loads(f.read().splitlines()[-1])["ts"]
    midnight = last_ts // DAY_MS * DAY_MS
    cut = first_offset_from(log, midnight)
    for p in (history, day):
        p.parent.mkdir(parents=True, exist_ok=True)
    print(f"cutting {log} at {time.strftime('%Y-%m-%d', time.gmtime(midnight / 1000))} (byte {cut:,})", flush=True)
    _copy_range(log, history, 0, cut)
    _copy_range(log, day, cut, log.stat().st_size)
    info = {"midnight_ms": midnight, "history_bytes": cut, "day_bytes": log.stat().st_size - cut,
            "day_events": sum(1 for _ in open(day, "rb"))}
    done.write_text(json.dumps(info))
    return history, day, info


def timed(name: str, cmd: list, log: Path) -> float:
    """Run ``cmd`` (output appended to ``log``), return its wall time; exit on failure."""
    start = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(map(str, cmd))}\n")
        out.flush()
        code = subprocess.run([str(c) for c in cmd], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - start
    if code:
        sys.exit(f"{name} failed (exit {code}); see {log}")
    print(f"  {name}: {seconds:.1f} s", flush=True)
    return seconds


def rewind(store: Path, batches: int) -> None:
    """Put ``store`` back to its first ``batches`` batches (the benchmark's own undo)."""
    manifest = store / "_manifest"
    for version in sorted(manifest.glob("v*.json"))[batches:]:
        version.unlink()
    for kind in ("rows", "users"):
        for d in (store / kind).glob("batch=*"):
            if int(d.name.split("=b")[1][:5]) > batches:
                shutil.rmtree(d)


def run_refresh(args) -> int:
    if not SPARKIFY.exists():
        sys.exit("refresh: run `make setup` first (.venv/bin/sparkify is missing)")
    log, info, work_root = resolve_log(args)
    work = work_root / "store-bench"
    work.mkdir(parents=True, exist_ok=True)
    console = work / "console.log"
    print(f"daily refresh through the store on {log} ({machine_line()}); console output in {console}")
    history, day, split = split_last_day(log, work)
    print(f"history {split['history_bytes'] / 1e9:.2f} GB, last day {split['day_bytes'] / 1e6:.0f} MB "
          f"({split['day_events']:,} lines)")
    store = work / "store"
    figures: dict = {"log": str(log), "split": split, "first_ingest": [], "training_load": [], "append": [],
                     "score": []}
    print("first ingest of the history, in turns with today's training load of the whole log:")
    for _ in range(args.rounds):
        figures["training_load"].append(timed("training load (load_log, whole raw log)",
                                              [PYTHON, "-c", LOAD_SNIPPET, log], console))
        shutil.rmtree(store, ignore_errors=True)
        figures["first_ingest"].append(timed("sparkify ingest history --store", [SPARKIFY, "ingest", history,
                                                                                  "--store", store], console))
    print("append the last day:")
    for _ in range(args.repeat):
        rewind(store, 1)
        figures["append"].append(timed("sparkify ingest last-day --store", [SPARKIFY, "ingest", day.parent,
                                                                             "--store", store], console))
    model = args.model or work / "model"
    if not (model / "model.json").exists():
        figures["train"] = timed("sparkify train --store (default settings)",
                                 [SPARKIFY, "train", "--store", store, "--model", model], console)
    print("score from the store (the midnight after the last event):")
    by_store = work / "scores-store.csv"
    for _ in range(args.repeat):
        figures["score"].append(timed("sparkify score --store", [SPARKIFY, "score", "--store", store, "--model",
                                                                  model, "--out", by_store], console))
    if not args.no_raw:
        by_log = work / "scores-log.csv"
        figures["score_raw"] = timed("sparkify score LOG (raw log)", [SPARKIFY, "score", log, "--model", model,
                                                                      "--out", by_log], console)
        figures["same_list"] = _same_list(by_store, by_log)
        print(f"  same at-risk list: {figures['same_list']}")
    med = {k: statistics.median(v) for k, v in figures.items() if isinstance(v, list) and v}
    figures["median"] = med
    print(f"\nmedians: first ingest {med['first_ingest']:.1f} s vs training load {med['training_load']:.1f} s "
          f"({med['first_ingest'] / med['training_load']:.2f}x; rounds "
          + ", ".join(f"{a:.0f}/{b:.0f}" for a, b in zip(figures["first_ingest"], figures["training_load"]))
          + f"); append a day {med['append']:.1f} s; score --store {med['score']:.1f} s"
          + (f"; score of the raw log {figures['score_raw']:.1f} s" if "score_raw" in figures else ""))
    out = ROOT / "benchmarks" / "out" / "store.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    print(f"written to {out}")
    return 0


def _same_list(a: Path, b: Path) -> str:
    import pandas as pd

    from sparkify.modeling.predict import rows_path

    x, y = pd.read_csv(a), pd.read_csv(b)
    same = a.read_bytes() == b.read_bytes()
    rows = pd.read_parquet(rows_path(a)).equals(pd.read_parquet(rows_path(b)))
    return (f"{'identical' if same else 'DIFFERENT'} ({len(x):,} and {len(y):,} users, "
            f"{int(x['decision'].sum()):,} flagged); scored feature rows {'equal' if rows else 'DIFFERENT'}")
