"""Issue 6's scale benchmark: the full 12 GB log on one machine, every stage in one run.

    .venv/bin/python benchmarks/scale.py --preset full            # ~12 GB, 22 k users
    .venv/bin/python benchmarks/scale.py --users 2000             # try a smaller size first
    .venv/bin/python benchmarks/scale.py --events /data/log.json  # an existing log

Steps (each timed, with the peak memory of the driver's Python process and of the JVM):

1. simulate the log into a cache outside the repository ($SPARKIFY_BENCH_DIR, default
   /tmp/sparkify-bench), or reuse it (free disk is checked first);
2. ``scan``: a bare Spark scan of the raw JSON with every column the loader reads
   (explicit schema, no work beyond parsing) -- the floor for anything that parses them.
   The loader itself parses 9 of the 12 on every line, and the 3 long text attributes
   (gender, userAgent, location) for each user's latest event only, from a second, plain
   text read (``sparkify.line_attributes.LineAttributes``); both are in its time;
3. ``features_raw``: ``sparkify.dataset.load_log`` (one pass into session-day rows) +
   ``sparkify.features.build_user_table`` from the raw JSON (target: <= 1.5 x the bare scan);
   ``scan_artists`` / ``features_raw_artists``: the same two with the opt-in artist
   features (one more column parsed, an exact artist set per row). Each scan and its
   features run in turn ``--repeats`` times (default 3) in one JVM, and each reports its
   median run and every pair's ratio: the machine's speed drifts, and the first stage in a
   fresh JVM runs cold;
4. ``ingest``: the cleaned log to Parquet; ``features_parquet``: the same features from it;
5. ``duckdb``: the same per-user aggregation in DuckDB (``benchmarks/duckdb_features.py``);
6. ``train``: the whole training pipeline (load, features, four models with 3-fold CV,
   tuning, evaluation, artifacts) with ``sparkify.modeling.train.train`` on the raw JSON
   (``--train-from parquet``: on the ingested Parquet); then
   model quality (churn-class F1, PR-AUC) beside the ground-truth ceiling from metrics.json;
7. ``baseline`` (last: the longest): the seed-style notebook approach
   (``benchmarks/baseline_seed.py``), stopped after ``--baseline-timeout`` seconds (default
   7 x our slower raw-JSON time; then reported as a lower bound; target: ours >= 5 x faster).

Writes ``--results`` (default ``/tmp/sparkify-bench/scale-results.md``: figures, ratios,
machine, date, command) after every stage, so an interrupted run keeps what it measured,
and prints the table at the end; ``benchmarks/RESULTS.md`` holds the current figures.
Every Spark action ends in ``write.format("noop")``: the full result is computed, nothing
is collected.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

STAGES = ("scan", "features_raw", "scan_artists", "features_raw_artists", "ingest", "features_parquet",
          "duckdb", "train", "baseline")
BYTES_PER_USER = 560_000          # measured on the simulator's output (~12 GB / 22 k users)
DEFAULT_BENCH_DIR = Path(os.environ.get("SPARKIFY_BENCH_DIR", "/tmp/sparkify-bench"))
GIB = 2**30
BASELINE_TIMEOUT_FACTOR = 7.0   # stop the baseline once it is clearly past the 5x target


# ------------------------------------------------------------------ memory sampling
class MemorySampler:
    """Samples RSS of this Python process and of its child JVMs every ``interval`` s.

    ``peak()`` returns (python_rss, jvm_rss) maxima since the last ``reset()``, in bytes.
    """

    def __init__(self, interval: float = 0.25):
        import psutil

        self._proc = psutil.Process()
        self._psutil = psutil
        self.interval = interval
        self._lock = threading.Lock()
        self._py = self._jvm = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def _sample(self) -> tuple[int, int]:
        py = self._proc.memory_info().rss
        jvm = 0
        for child in self._proc.children(recursive=True):
            try:
                if "java" in child.name():
                    jvm += child.memory_info().rss
            except self._psutil.Error:
                continue
        return py, jvm

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                py, jvm = self._sample()
            except self._psutil.Error:
                py, jvm = 0, 0
            with self._lock:
                self._py, self._jvm = max(self._py, py), max(self._jvm, jvm)
            self._stop.wait(self.interval)

    def start(self) -> "MemorySampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def cpu_seconds(self) -> float:
        """User + system CPU seconds used so far by this process and its child JVMs: on a
        shared machine a steadier measure of work than wall-clock time."""
        total = sum(self._proc.cpu_times()[:2])
        for child in self._proc.children(recursive=True):
            try:
                if "java" in child.name():
                    total += sum(child.cpu_times()[:2])
            except self._psutil.Error:
                continue
        return total

    def reset(self) -> None:
        with self._lock:
            self._py = self._jvm = 0

    def peak(self) -> tuple[int, int]:
        time.sleep(self.interval * 1.5)  # one more sample after the stage
        with self._lock:
            return self._py, self._jvm


@dataclass
class StageResult:
    name: str
    seconds: float | None = None
    py_peak: int = 0
    jvm_peak: int = 0
    status: str = "ok"            # ok | timeout | failed | skipped
    note: str = ""
    extra: dict = field(default_factory=dict)
    load: tuple[float, float] = (0.0, 0.0)   # 1-min load average at start and end
    cpu_seconds: float | None = None          # CPU used by this process and its JVM


class Bench:
    """Runs stages one after another, timing each and sampling memory."""

    def __init__(self, sampler: MemorySampler):
        self.sampler = sampler
        self.results: dict[str, StageResult] = {}

    def run(self, name: str, fn, *args, **kwargs) -> StageResult:
        """Run ``fn(*args, **kwargs) -> dict | None`` as stage ``name``; failures are
        recorded (with their message), never raised, so one stage cannot sink the run."""
        print(f"[{_now()}] {name}: start", flush=True)
        self.sampler.reset()
        result = StageResult(name)
        load_start = os.getloadavg()[0]
        cpu_start = self.sampler.cpu_seconds()
        start = time.perf_counter()
        try:
            extra = fn(*args, **kwargs) or {}
            result.extra.update(extra)
            result.status = extra.get("status", "ok")
        except Exception as exc:  # noqa: BLE001 - recorded in the results file, the run goes on
            result.status = "failed"
            result.note = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        result.seconds = time.perf_counter() - start
        result.py_peak, result.jvm_peak = self.sampler.peak()
        result.load = (load_start, os.getloadavg()[0])
        result.cpu_seconds = self.sampler.cpu_seconds() - cpu_start
        self.results[name] = result
        print(f"[{_now()}] {name}: {result.status} in {result.seconds:,.1f} s "
              f"(peak Python {result.py_peak / GIB:.2f} GiB, JVM {result.jvm_peak / GIB:.2f} GiB)"
              f"{' - ' + result.note if result.note else ''}", flush=True)
        return result

    def run_in_turns(self, stages: list[tuple], repeats: int) -> dict[str, list[StageResult]]:
        """Run ``stages`` ((name, fn, *args) each) in turn, ``repeats`` times (scan, ours,
        scan, ours, ...), so that every ratio compares runs made side by side on a machine
        whose speed drifts. Keeps, as each stage's result, its run with the median time
        (the lower middle one for an even count), noting every run's time.
        Out: every run of each stage, in order."""
        runs: dict[str, list[StageResult]] = {name: [] for name, *_ in stages}
        for _ in range(max(1, repeats)):
            for name, fn, *args in stages:
                runs[name].append(self.run(name, fn, *args))
        for name, results in runs.items():
            ok = sorted((r for r in results if r.status == "ok"), key=lambda r: r.seconds)
            pick = ok[(len(ok) - 1) // 2] if ok else results[-1]
            if len(results) > 1:
                pick.extra["runs"] = " / ".join(_fmt_s(r) for r in results) + " s"
            self.results[name] = pick
        return runs


def pair_ratios(runs: dict[str, list[StageResult]], num: str, den: str) -> str:
    """'1.41x, 1.52x, 1.38x': the ratio of each side-by-side run of ``num`` and ``den``."""
    return ", ".join(f"{a.seconds / b.seconds:.2f}x" for a, b in zip(runs.get(num, []), runs.get(den, []))
                     if a.status == b.status == "ok" and b.seconds)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%H:%M:%S")


# ------------------------------------------------------------------ data
def log_path(bench_dir: Path, preset: str | None, users: int | None, seed: int) -> Path:
    """In: cache dir, preset/users, seed. Out: where that simulated log lives."""
    label = f"users{users}" if users else preset
    return bench_dir / f"{label}-seed{seed}" / "sparkify_event_data.json"


def ensure_log(path: Path, preset: str | None, users: int | None, seed: int, workers: int | None) -> dict:
    """Simulate the log into ``path`` unless a finished one is there. Out: its summary dict."""
    from sparkify.simulator import PRESETS, simulate

    done = path.with_name("_SIMULATED.json")
    if path.exists() and done.exists():
        summary = json.loads(done.read_text())
        print(f"reusing {path} ({summary['bytes'] / 1e9:.2f} GB, {summary['users']:,} users)")
        return summary
    n_users = users or PRESETS[preset].users
    need = int(n_users * BYTES_PER_USER * 1.8)   # the log + Parquet + spill room
    free = shutil.disk_usage(path.parent if path.parent.exists() else path.parent.parent
                             if path.parent.parent.exists() else Path("/")).free
    if free < need:
        raise SystemExit(f"scale: not enough free disk for {n_users:,} users: need ~{need / 1e9:.1f} GB, "
                         f"{free / 1e9:.1f} GB free under {path.parent} (set SPARKIFY_BENCH_DIR or --bench-dir)")
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"simulating {n_users:,} users into {path} (~{n_users * BYTES_PER_USER / 1e9:.1f} GB)", flush=True)
    start = time.perf_counter()
    summary = simulate(out=path, users=users, preset=preset if not users else None, seed=seed,
                       workers=workers, progress=True)
    info = {"path": str(path), "events": summary.events, "users": summary.users,
            "churned": summary.churned, "bytes": summary.bytes, "seed": seed,
            "seconds": time.perf_counter() - start, "preset": preset, "requested_users": users}
    done.write_text(json.dumps(info, indent=2))
    return info


# ------------------------------------------------------------------ stages
def _noop(df) -> None:
    df.write.format("noop").mode("overwrite").save()


def stage_scan(spark, raw: str, artists: bool = False) -> dict:
    """Every column the loader reads (``pass_schema(artists)`` without the corrupt-record
    column), nothing else: the denominator of the 1.5x target."""
    from sparkify.dataset import pass_schema

    schema = pass_schema(artists, corrupt=False)
    _noop(spark.read.schema(schema).json(raw))
    return {"columns": len(schema.fields)}


def stage_features(spark, path: str, artists: bool = False) -> dict:
    from sparkify.dataset import load_log
    from sparkify.features import LabelSpec, build_user_table

    with load_log(spark, path, artists=artists) as loaded:
        table, spec = build_user_table(loaded.days, LabelSpec())
        _noop(table)
        q = loaded.quality
        return {"rows_read": q.rows_read, "user_rows": q.user_rows, "users": q.users,
                "churners": q.churners, "feature_columns": len(table.columns),
                "cutoff": spec.cutoff.isoformat() if spec.cutoff else None}


def stage_ingest(spark, raw: str, out: str) -> dict:
    from sparkify.dataset import ingest

    quality = ingest(spark, raw, out)
    size = sum(p.stat().st_size for p in Path(out).rglob("*.parquet"))
    return {"parquet_bytes": size, "user_rows": quality.user_rows}


def copy_truth(raw: str, parquet_dir: str) -> bool:
    """Put the simulator's ground truth (``<stem>_truth.parquet`` beside the raw log) into the
    Parquet log as ``_truth.parquet``, where training looks for it, so that training from
    Parquet reports the ceiling. Out: whether a truth table was found."""
    truth = Path(raw).with_name(Path(raw).name.removesuffix(".json") + "_truth.parquet")
    if not truth.exists() or not Path(parquet_dir).is_dir():
        return False
    target = Path(parquet_dir) / "_truth.parquet"
    if truth.is_dir():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(truth, target)
    else:
        shutil.copyfile(truth, target)
    return True


def stage_baseline(spark, raw: str, timeout_s: float) -> dict:
    """The seed-style table, cancelled after ``timeout_s`` (status 'timeout')."""
    from baseline_seed import seed_style_user_table

    sc = spark.sparkContext
    group = f"seed-baseline-{time.time_ns()}"
    sc.setJobGroup(group, "seed-style baseline", interruptOnCancel=True)
    timed_out = threading.Event()

    def cancel() -> None:
        timed_out.set()
        sc.cancelJobGroup(group)

    timer = threading.Timer(timeout_s, cancel)
    timer.daemon = True
    timer.start()
    try:
        table = seed_style_user_table(spark, raw)
        _noop(table)
    except Exception:
        if timed_out.is_set():
            return {"status": "timeout", "timeout_s": timeout_s}
        raise
    finally:
        timer.cancel()
        sc.setLocalProperty("spark.jobGroup.id", None)
    return {"feature_columns": len(table.columns)}


def stage_duckdb(raw: str, temp_dir: Path) -> dict:
    import duckdb

    from duckdb_features import connect, duckdb_user_table

    temp_dir.mkdir(parents=True, exist_ok=True)
    table = duckdb_user_table(raw, connect(temp_dir=str(temp_dir)))
    return {"users": len(table), "feature_columns": len(table.columns), "duckdb": duckdb.__version__}


def stage_train(spark, events: str, model_dir: Path, quick: bool) -> dict:
    from sparkify.modeling.train import TrainConfig, train

    config = TrainConfig.fast() if quick else TrainConfig()
    result = train(spark, events, model_dir, config)
    return {"config": "fast" if quick else "default", "best": result.best_family,
            "timings": dict(result.timings)}


# ------------------------------------------------------------------ quality from metrics.json
def _find(obj, *names):
    """First value in nested dicts whose key is one of ``names`` (depth-first)."""
    if isinstance(obj, dict):
        for name in names:
            if name in obj and not isinstance(obj[name], (dict, list)):
                return obj[name]
        for value in obj.values():
            found = _find(value, *names)
            if found is not None:
                return found
    return None


F1_KEYS = ("f1", "f1_churn", "churn_f1")
PRAUC_KEYS = ("pr_auc", "average_precision", "areaUnderPR")


def model_quality(model_dir: Path) -> dict:
    """In: a model directory. Out: best model's type, churn F1, PR-AUC and the ceiling's."""
    out: dict = {}
    try:
        metrics = json.loads((model_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return out
    best = metrics.get("best") or {}
    test = best.get("test", best) if isinstance(best, dict) else {}
    out["model_type"] = best.get("family") or _find(best, "model_type", "name")
    out["test_users"] = (metrics.get("data") or {}).get("test_users")
    out["f1"] = _find(test, *F1_KEYS)
    out["pr_auc"] = _find(test, *PRAUC_KEYS)
    ceiling = metrics.get("ceiling") or {}
    out["ceiling_f1"] = _find(ceiling, *F1_KEYS)
    out["ceiling_pr_auc"] = _find(ceiling, *PRAUC_KEYS)
    return out


# ------------------------------------------------------------------ report
def machine() -> dict:
    import psutil

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "memory_gib": psutil.virtual_memory().total / GIB, "cpu": cpu,
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "load_at_start": os.getloadavg()}


def _fmt_s(r: StageResult | None) -> str:
    if r is None:
        return "-"
    if r.status == "timeout":
        return f"> {r.extra.get('timeout_s', r.seconds):,.0f} (stopped)"
    if r.status != "ok":
        return r.status
    return f"{r.seconds:,.1f}"


def _ratio(num: StageResult | None, den: StageResult | None) -> str:
    if not num or not den or den.status != "ok" or num.seconds is None or not den.seconds:
        return "-"
    sign = ">= " if num.status == "timeout" else ""
    if num.status not in ("ok", "timeout"):
        return "-"
    return f"{sign}{num.seconds / den.seconds:.2f}x"


def render(results: dict[str, StageResult], data: dict, mach: dict, quality: dict,
           command: str, spark_version: str, started: str, notes: list[str]) -> str:
    r = results.get
    scan, raw, parq, base, duck = r("scan"), r("features_raw"), r("features_parquet"), r("baseline"), r("duckdb")
    scan_a, raw_a = r("scan_artists"), r("features_raw_artists")
    lines = [
        "# Scale benchmark (issue 6)",
        "",
        f"Run {started} UTC with `{command}`.",
        "",
        f"**Machine**: {mach['nproc']} cores ({mach['cpu']}), {mach['memory_gib']:.1f} GiB memory, "
        f"{mach['os']}, Python {mach['python']}, Spark {spark_version}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in mach['load_at_start'])} (the machine is shared).",
        "",
        f"**Data**: `{data.get('path')}`: {data.get('bytes', 0) / 1e9:.2f} GB, "
        f"{data.get('events', 0):,} events, {data.get('users', 0):,} users, "
        f"{data.get('churned', 0):,} churned (simulated, seed {data.get('seed')}"
        f"{', preset ' + data['preset'] if data.get('preset') and not data.get('requested_users') else ''}).",
        "",
        "| stage | seconds | CPU seconds | peak Python RSS (GiB) | peak JVM RSS (GiB) | load avg start/end | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    labels = {
        "scan": "bare Spark scan of the raw JSON (the 12 columns the loader reads, explicit schema)",
        "features_raw": "load + clean + features from raw JSON (ours)",
        "scan_artists": "bare Spark scan of the 13 columns read with the artist features",
        "features_raw_artists": "load + clean + features from raw JSON, with the opt-in artist features (ours)",
        "ingest": "ingest: clean raw JSON -> Parquet",
        "features_parquet": "load + features from Parquet (ours)",
        "baseline": "seed-style baseline (inferred schema, one groupBy + join per feature)",
        "duckdb": "DuckDB one-pass per-user aggregation of the raw JSON",
        "train": "whole training pipeline (load, features, 4 models x 3-fold CV, tuning, evaluation)",
    }
    for name in STAGES:
        res = r(name)
        if res is None:
            continue
        note = res.note or ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}"
                                     for k, v in res.extra.items() if k not in ("status", "timings"))
        cpu = f"{res.cpu_seconds:,.0f}" if res.cpu_seconds is not None else "-"
        lines.append(f"| {labels[name]} | {_fmt_s(res)} | {cpu} | {res.py_peak / GIB:.2f} | "
                     f"{res.jvm_peak / GIB:.2f} | {res.load[0]:.1f} / {res.load[1]:.1f} | {note} |")
    ingest, train = r("ingest"), r("train")
    medians = " (median runs)" if raw is not None and "runs" in raw.extra else ""
    e2e, how = None, ""
    if train and train.status == "ok" and train.extra.get("source", "parquet") == "raw":
        e2e, how = train.seconds, "training straight from the raw JSON"
    elif ingest and train and ingest.status == train.status == "ok":
        e2e, how = ingest.seconds + train.seconds, "ingest + training from Parquet"
    lines += [
        "",
        "## Ratios",
        "",
        "| comparison | ratio | target |",
        "|---|---:|---|",
        f"| features from raw JSON / bare scan{medians} | {_ratio(raw, scan)} | <= 1.5x |",
        f"| the same with the opt-in artist features / bare scan of its 13 columns | {_ratio(raw_a, scan_a)} | (opt-in) |",
        f"| seed-style baseline / ours (both from raw JSON) | {_ratio(base, raw)} | >= 5x |",
        f"| seed-style baseline / ours with the artist features (both count distinct artists) "
        f"| {_ratio(base, raw_a)} | >= 5x |",
        f"| ours from raw JSON / DuckDB | {_ratio(raw, duck)} | (yardstick) |",
        f"| ours with the artist features / DuckDB (both count distinct artists) | {_ratio(raw_a, duck)} | (yardstick) |",
        f"| ours from Parquet / DuckDB on raw JSON | {_ratio(parq, duck)} | (yardstick) |",
        "",
    ]
    if e2e is not None:
        lines.append(f"Whole pipeline from the raw JSON ({how}): **{e2e / 60:.1f} min** "
                     "(target < 15 min).")
        lines.append("")
    timings = (train.extra.get("timings") if train else None) or {}
    if timings:
        lines += ["Training stages (from `TrainResult.timings`):", "",
                  "| training stage | seconds |", "|---|---:|"]
        lines += [f"| {k} | {v:,.1f} |" for k, v in timings.items()]
        lines.append("")
    if quality:
        def f(x):
            return f"{float(x):.3f}" if isinstance(x, (int, float)) else "-"
        lines += [
            "## Model quality (held-out test users)",
            "",
            "| model | churn-class F1 | PR-AUC |",
            "|---|---:|---:|",
            f"| best tuned ({quality.get('model_type') or '?'}) | {f(quality.get('f1'))} | {f(quality.get('pr_auc'))} |",
            f"| ceiling: same family on the simulator's true latent parameters | "
            f"{f(quality.get('ceiling_f1'))} | {f(quality.get('ceiling_pr_auc'))} |",
            "",
        ]
    lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


# ------------------------------------------------------------------ main
def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(description="Time every stage on a large log; write a results file.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", choices=("mini", "medium", "full"), default=None,
                     help="simulate a preset-sized log (default: full)")
    src.add_argument("--users", type=int, default=None, help="simulate a log of about N users")
    src.add_argument("--events", default=None, help="use this existing raw JSON log instead")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--bench-dir", type=Path, default=DEFAULT_BENCH_DIR,
                   help="cache for logs, Parquet and models, outside the repo (default: %(default)s)")
    p.add_argument("--stages", default=",".join(STAGES), help="comma list of: " + ", ".join(STAGES))
    p.add_argument("--repeats", type=int, default=3,
                   help="run each bare scan and our raw-JSON features in turn this many times and "
                        "report the median of each (default 3)")
    p.add_argument("--baseline-timeout", type=float, default=None,
                   help="stop the seed-style baseline after this many seconds "
                        "(default: 7 x our slower features_raw time, at least 120 s)")
    p.add_argument("--driver-memory", default=None,
                   help="spark.driver.memory (default: Sparkify's own choice, half the machine, <= 16g)")
    p.add_argument("--quick-train", action="store_true", help="train with TrainConfig.fast() (smoke runs)")
    p.add_argument("--train-from", choices=("raw", "parquet"), default="raw",
                   help="train on the raw JSON (default: the whole pipeline, one pass into "
                        "session-day rows) or on the ingested Parquet")
    p.add_argument("--workers", type=int, default=None, help="simulator worker processes")
    p.add_argument("--results", type=Path, default=DEFAULT_BENCH_DIR / "scale-results.md",
                   help="where the run's figures are written after every stage (default: %(default)s; "
                        "benchmarks/RESULTS.md holds the curated current figures)")
    p.add_argument("--no-results", action="store_true", help="print only; do not write the results file")
    p.add_argument("--note", action="append", default=[], help="a line for the Notes section")
    args = p.parse_args(argv)
    if not (args.users or args.events):
        args.preset = args.preset or "full"
    if args.users is not None and args.users < 10:
        p.error("--users must be at least 10")
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = set(stages) - set(STAGES)
    if unknown:
        p.error(f"unknown stage(s): {', '.join(sorted(unknown))}")
    args.stages = stages
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    command = "python benchmarks/scale.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    mach = machine()

    if args.events:
        raw_path = Path(args.events)
        if not raw_path.exists():
            print(f"scale: error: no such log: {raw_path}", file=sys.stderr)
            return 2
        data = {"path": str(raw_path), "bytes": sum(p.stat().st_size for p in raw_path.rglob("*") if p.is_file())
                if raw_path.is_dir() else raw_path.stat().st_size}
        digest = hashlib.sha1(str(raw_path.resolve()).encode()).hexdigest()[:10]
        work = args.bench_dir / f"events-{digest}"
    else:
        raw_path = log_path(args.bench_dir, args.preset, args.users, args.seed)
        data = ensure_log(raw_path, args.preset, args.users, args.seed, args.workers)
        work = raw_path.parent
    work.mkdir(parents=True, exist_ok=True)
    raw = str(raw_path)
    parquet_dir = work / "events.parquet"
    model_dir = work / "model" / "classifier"

    from sparkify.spark import default_driver_memory, get_spark

    conf = {"spark.ui.showConsoleProgress": "false", "spark.local.dir": str(work / "spark-local")}
    if args.driver_memory:
        conf["spark.driver.memory"] = args.driver_memory
    spark = get_spark(app_name="sparkify-scale", extra_conf=conf)
    spark_version = spark.version
    notes = list(args.note)
    memory_note = (f"{args.driver_memory} (set with --driver-memory)" if args.driver_memory
                   else f"{default_driver_memory()} (Sparkify's default: half the machine, <= 16g)")
    notes.append(f"Spark local[*], driver memory {memory_note}, "
                 f"shuffle partitions {spark.conf.get('spark.sql.shuffle.partitions')}, AQE on. The load average "
                 "column shows how busy the shared 2-core machine was (other jobs ran at the same time).")
    sampler = MemorySampler().start()
    bench = Bench(sampler)
    quality: dict = {}

    def report(final: bool) -> None:
        run_notes = list(notes)
        base = bench.results.get("baseline")
        if base is not None and base.status == "timeout":
            run_notes.append("The seed-style baseline was stopped at its time limit "
                             f"({base.extra.get('timeout_s', 0):,.0f} s); its ratio is a lower bound.")
        run_notes.append("Ours computes more (>= 25 leakage-free features with a prediction-time cutoff, "
                         "exact-duplicate removal, quarantine and a data-quality summary) than the seed-style "
                         "baseline and DuckDB (the notebooks' 19 columns, no cleaning), so the ratios favour "
                         "the yardsticks.")
        if not final:
            run_notes.append("**Run in progress**: the stages not listed have not finished yet.")
        text = render(bench.results, data, mach, quality, command, spark_version, started, run_notes)
        if final:
            print("\n" + text)
        if not args.no_results:
            args.results.parent.mkdir(parents=True, exist_ok=True)
            args.results.write_text(text)

    # The longest and least important stage (the seed-style baseline) runs last, and the
    # results file is rewritten after every stage, so an interrupted run keeps its figures.
    try:
        for artists in (False, True):
            suffix = "_artists" if artists else ""
            turns = [(name, fn, spark, raw, artists) for name, fn in
                     ((f"scan{suffix}", stage_scan), (f"features_raw{suffix}", stage_features))
                     if name in args.stages]
            if not turns:
                continue
            runs = bench.run_in_turns(turns, args.repeats)
            ratios = pair_ratios(runs, f"features_raw{suffix}", f"scan{suffix}")
            if args.repeats > 1:
                what = (f"The bare scan{' with the artist column' if artists else ''} and ours "
                        f"{'with the artist features ' if artists else ''}ran in turns"
                        if len(turns) == 2 else f"Stage {turns[0][0]} ran")
                notes.append(f"{what}, {args.repeats} times in one JVM (the first run in a fresh one); "
                             "the table shows each one's median run"
                             + (f"; the pairs' ratios: {ratios}." if ratios else "."))
            res = bench.results.get("features_raw")
            if res is not None:
                data.setdefault("events", res.extra.get("rows_read", 0))
                data.setdefault("users", res.extra.get("users", 0))
                data.setdefault("churned", res.extra.get("churners", 0))
            report(False)
        needs_parquet = "features_parquet" in args.stages or (
            "train" in args.stages and args.train_from == "parquet")
        if "ingest" in args.stages or (needs_parquet and not parquet_dir.exists()):
            bench.run("ingest", stage_ingest, spark, raw, str(parquet_dir))
            report(False)
        if "features_parquet" in args.stages:
            bench.run("features_parquet", stage_features, spark, str(parquet_dir))
            report(False)
        if "duckdb" in args.stages:
            bench.run("duckdb", stage_duckdb, raw, work / "duckdb-tmp")
            report(False)
        if "train" in args.stages:
            source = raw
            if args.train_from == "parquet":
                # training reads `<dir>/_truth.parquet` on the driver (pyarrow) for the ceiling
                copy_truth(raw, str(parquet_dir))
                source = str(parquet_dir)
            res = bench.run("train", stage_train, spark, source, model_dir, args.quick_train)
            res.extra["source"] = args.train_from
            if res.status == "ok":
                quality.update(model_quality(model_dir))
                res.extra["model_dir"] = str(model_dir)
            report(False)
        if "baseline" in args.stages:
            ours_s = max((r.seconds for name in ("features_raw", "features_raw_artists")
                          if (r := bench.results.get(name)) and r.status == "ok"), default=None)
            timeout = args.baseline_timeout or max(120.0, BASELINE_TIMEOUT_FACTOR * (ours_s or 300))
            bench.run("baseline", stage_baseline, spark, raw, timeout)
    finally:
        sampler.stop()
        spark.stop()

    report(True)
    if not args.no_results:
        print(f"wrote {args.results}")
    failed = [r.name for r in bench.results.values() if r.status == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
