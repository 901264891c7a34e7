"""What every benchmark shares: the simulated-log cache, CPU and memory measurement, the
in-turns protocol, tables, the machine's description.

* :func:`cached_log`: a simulated log for (preset or users, days, seed) under
  ``$SPARKIFY_BENCH_DIR`` (default ``/tmp/sparkify-bench``), simulated on first use after a
  check of the free disk, reused afterwards (``<label>-seed<seed>/sparkify_event_data.json``
  with a ``_SIMULATED.json`` summary beside it); :func:`add_log_args` / :func:`resolve_log`:
  the command-line options that pick a cached or an existing log;
* :func:`cpu_seconds`: user + system CPU seconds of this process and of its child JVMs
  (in local mode the JVM is all of Spark); on a shared machine a steadier measure of work
  than wall-clock time. :func:`tree_cpu_seconds`: the same for another process tree;
* :class:`MemorySampler`: peak RSS of this process and of its JVMs, sampled in a thread;
* :class:`Bench`: runs stages, timing each (wall and CPU seconds, peak memory, load
  average), recording failures instead of raising; :meth:`Bench.run_in_turns` is the
  in-turns protocol (yardstick, ours, yardstick, ours, ...; each side's median run) and
  :func:`pair_ratios` the ratio of each side-by-side pair;
* :func:`markdown_table`, :func:`machine`, :func:`machine_line`, :func:`command_line`,
  :func:`get_bench_spark`, :func:`noop`, :func:`free_port`, :func:`start_server`,
  :func:`scratch_dir`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(os.environ.get("SPARKIFY_BENCH_DIR", "/tmp/sparkify-bench"))
BYTES_PER_USER = 560_000  # measured on the simulator's output (~12 GB / 22 k users, 61 days)
DEFAULT_DAYS = 61
GIB = 2**30
ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ the simulated-log cache
def log_path(bench_dir: Path, preset: str | None, users: int | None, seed: int, days: float | None = None,
             churn_model: str = "eventsim") -> Path:
    """In: cache dir, preset or users (users win), window days (default: the simulator's),
    seed, churn model. Out: where that simulated log lives, e.g.
    ``full-seed42/sparkify_event_data.json``, ``users2000-seed42/...``,
    ``users1500-days92-seed42/...``, ``users2000-satisfaction-seed42/...``."""
    label = f"users{users}" if users else preset
    if days is not None:
        label += f"-days{days:g}"
    if churn_model != "eventsim":
        label += f"-{churn_model}"
    return bench_dir / f"{label}-seed{seed}" / "sparkify_event_data.json"


def cached_log(preset: str | None = None, users: int | None = None, seed: int = 42, *, days: float | None = None,
               workers: int | None = None, bench_dir: Path | None = None,
               churn_model: str = "eventsim") -> tuple[Path, dict]:
    """The simulated log for ``preset`` (or about ``users`` users), ``days`` and ``seed`` in
    the cache, simulated there unless a finished one (``_SIMULATED.json`` beside it) is
    there; before simulating, checks that the disk has room for the log, its Parquet copy
    and Spark's spill. Out: (the log's path, its summary: path, events, users, churned,
    bytes, seed, seconds, preset, requested_users, days)."""
    from sparkify.simulator import PRESETS, simulate

    if not users and preset not in PRESETS:
        raise SystemExit(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    path = log_path(bench_dir or BENCH_DIR, None if users else preset, users, seed, days, churn_model)
    done = path.with_name("_SIMULATED.json")
    if path.exists() and done.exists():
        summary = json.loads(done.read_text())
        print(f"reusing {path} ({summary['bytes'] / 1e9:.2f} GB, {summary['users']:,} users)")
        return path, summary
    n_users = users or PRESETS[preset].users
    size = n_users * BYTES_PER_USER * (days or DEFAULT_DAYS) / DEFAULT_DAYS
    need = int(size * 1.8)  # the log + Parquet + spill room
    existing = next(p for p in (path.parent, path.parent.parent, Path("/")) if p.exists())
    free = shutil.disk_usage(existing).free
    if free < need:
        raise SystemExit(f"not enough free disk for {n_users:,} users: need ~{need / 1e9:.1f} GB, "
                         f"{free / 1e9:.1f} GB free under {path.parent} (set SPARKIFY_BENCH_DIR or --bench-dir)")
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"simulating {n_users:,} users into {path} (~{size / 1e9:.1f} GB)", flush=True)
    start = time.perf_counter()
    summary = simulate(out=path, users=users, preset=None if users else preset, days=days, seed=seed,
                       workers=workers, progress=True, churn_model=churn_model)
    info = {"path": str(path), "events": summary.events, "users": summary.users,
            "churned": summary.churned, "bytes": summary.bytes, "seed": seed,
            "seconds": time.perf_counter() - start, "preset": preset, "requested_users": users,
            "churn_model": churn_model}
    if days is not None:
        info["days"] = days
    done.write_text(json.dumps(info, indent=2))
    print(f"simulated {summary.events:,} events, {summary.users:,} users in {info['seconds']:.1f} s")
    return path, info


def add_log_args(parser, default_preset: str | None = None, log_help: str = "an existing log instead") -> None:
    """Adds ``--preset`` | ``--users N`` | ``--log PATH``, ``--seed``, ``--bench-dir`` and
    ``--workers`` (simulator processes) to ``parser``; :func:`resolve_log` reads them."""
    src = parser.add_mutually_exclusive_group()
    default = f" (default: {default_preset})" if default_preset else ""
    src.add_argument("--preset", choices=("mini", "medium", "full"), default=None,
                     help=f"a simulated log of this preset, cached{default}")
    src.add_argument("--users", type=int, default=None, help="a simulated log of about N users, cached")
    src.add_argument("--log", default=None, help=log_help)
    parser.add_argument("--seed", type=int, default=42, help="simulation seed (default 42)")
    parser.add_argument("--bench-dir", type=Path, default=BENCH_DIR,
                        help="cache of simulated logs and work files, outside the repo (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None, help="simulator worker processes")
    parser.set_defaults(default_preset=default_preset)


def resolve_log(args) -> tuple[Path, dict, Path]:
    """In: arguments from :func:`add_log_args`. Out: (the log, what is known of it, a work
    directory for its Parquet, models and spill: the cache entry's, or
    ``<bench-dir>/events-<hash of the path>`` for a given log)."""
    if args.log:
        path = Path(args.log)
        if not any(ch in args.log for ch in "*?[") and not path.exists():
            raise SystemExit(f"no such log: {path}")
        size = (sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir()
                else path.stat().st_size if path.exists() else 0)
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
        return path, {"path": str(path), "bytes": size}, args.bench_dir / f"events-{digest}"
    preset = args.preset or args.default_preset
    if not (args.users or preset):
        raise SystemExit("give --preset, --users or --log")
    if args.users is not None and args.users < 10:
        raise SystemExit("--users must be at least 10")
    path, data = cached_log(None if args.users else preset, args.users, args.seed, workers=args.workers,
                            bench_dir=args.bench_dir)
    return path, data, path.parent


@contextmanager
def scratch_dir(prefix: str, keep: bool = False):
    """A temporary directory, deleted on exit unless ``keep``."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield tmp
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ CPU and memory
def _is_jvm(proc) -> bool:
    return "java" in proc.name()


def cpu_seconds(own: bool = True, reaped: bool = False) -> float:
    """User + system CPU seconds used so far by this process (unless not ``own``) and its
    live child JVMs (in local mode all of Spark); with ``reaped``, also by its children
    that have ended and been waited for (e.g. the simulator's worker processes)."""
    import psutil

    me = psutil.Process()
    times = me.cpu_times()
    total = times.user + times.system if own else 0.0
    if reaped:
        total += times.children_user + times.children_system
    for child in me.children(recursive=True):
        try:
            if _is_jvm(child):
                total += sum(child.cpu_times()[:2])
        except psutil.Error:
            continue
    return total


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` and all its descendants
    (e.g. a server and its worker processes)."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            times = proc.cpu_times()
            total += times.user + times.system
    except psutil.Error:
        pass
    return total


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
                if _is_jvm(child):
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

    def start(self) -> MemorySampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def cpu_seconds(self) -> float:
        """:func:`cpu_seconds`: this process and its JVMs."""
        return cpu_seconds()

    def reset(self) -> None:
        with self._lock:
            self._py = self._jvm = 0

    def peak(self) -> tuple[int, int]:
        time.sleep(self.interval * 1.5)  # one more sample after the stage
        with self._lock:
            return self._py, self._jvm


# ------------------------------------------------------------------ stages and the in-turns protocol
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


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%H:%M:%S")


def fmt_s(r: StageResult | None) -> str:
    """A stage's seconds as a table shows them: ``93.4``, ``> 2,100 (stopped)``, ``failed``."""
    if r is None:
        return "-"
    if r.status == "timeout":
        return f"> {r.extra.get('timeout_s', r.seconds):,.0f} (stopped)"
    if r.status != "ok":
        return r.status
    return f"{r.seconds:,.1f}"


def ratio_text(num: StageResult | None, den: StageResult | None) -> str:
    """``1.38x`` (``>= 6.10x`` when ``num`` was stopped at its time limit), ``-`` when either
    side has no time."""
    if not num or not den or den.status != "ok" or num.seconds is None or not den.seconds:
        return "-"
    sign = ">= " if num.status == "timeout" else ""
    if num.status not in ("ok", "timeout"):
        return "-"
    return f"{sign}{num.seconds / den.seconds:.2f}x"


class Bench:
    """Runs stages one after another, timing each and sampling memory."""

    def __init__(self, sampler: MemorySampler):
        self.sampler = sampler
        self.results: dict[str, StageResult] = {}

    def run(self, name: str, fn, *args, **kwargs) -> StageResult:
        """Run ``fn(*args, **kwargs) -> dict | None`` as stage ``name``; failures are
        recorded (with their message), never raised, so one stage cannot sink the run."""
        print(f"[{now()}] {name}: start", flush=True)
        self.sampler.reset()
        result = StageResult(name)
        load_start = os.getloadavg()[0]
        cpu_start = self.sampler.cpu_seconds()
        start = time.perf_counter()
        try:
            extra = fn(*args, **kwargs) or {}
            result.extra.update(extra)
            result.status = extra.get("status", "ok")
        except Exception as exc:  # noqa: BLE001 - recorded in the results, the run goes on
            result.status = "failed"
            result.note = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        result.seconds = time.perf_counter() - start
        result.py_peak, result.jvm_peak = self.sampler.peak()
        result.load = (load_start, os.getloadavg()[0])
        result.cpu_seconds = self.sampler.cpu_seconds() - cpu_start
        self.results[name] = result
        print(f"[{now()}] {name}: {result.status} in {result.seconds:,.1f} s "
              f"(peak Python {result.py_peak / GIB:.2f} GiB, JVM {result.jvm_peak / GIB:.2f} GiB)"
              f"{' - ' + result.note if result.note else ''}", flush=True)
        return result

    def run_in_turns(self, stages: list[tuple], repeats: int, *, rotate: bool = False, after_round=None,
                     stop_on_failure: bool = False) -> dict[str, list[StageResult]]:
        """Run ``stages`` ((name, fn, *args) each) in turn, ``repeats`` rounds (yardstick,
        ours, yardstick, ours, ...), so that every ratio compares runs made side by side on
        a machine whose speed drifts; with ``rotate``, round r starts at stage r (mod the
        number of stages), so no stage always runs first. ``after_round(runs)`` is called
        after each round (e.g. to write the figures so far); ``stop_on_failure`` ends the
        rounds at a failed run. Keeps, as each stage's result in ``self.results``, its run
        with the median time (the lower middle one for an even count; never a failed run),
        noting every run's time. Out: every run of each stage, in order."""
        runs: dict[str, list[StageResult]] = {name: [] for name, *_ in stages}
        failed = False
        for r in range(max(1, repeats)):
            shift = r % len(stages) if rotate else 0
            for name, fn, *args in stages[shift:] + stages[:shift]:
                result = self.run(name, fn, *args)
                runs[name].append(result)
                if result.status == "failed" and stop_on_failure:
                    failed = True
                    break
            if after_round is not None:
                after_round(runs)
            if failed:
                break
        for name, results in runs.items():
            if not results:
                continue
            ok = sorted((r for r in results if r.status == "ok"), key=lambda r: r.seconds)
            pick = ok[(len(ok) - 1) // 2] if ok else results[-1]
            if len(results) > 1:
                pick.extra["runs"] = " / ".join(fmt_s(r) for r in results) + " s"
            self.results[name] = pick
        return runs


def pair_ratio_values(runs: dict[str, list[StageResult]], num: str, den: str) -> list[float]:
    """The ratio of each side-by-side run of ``num`` and ``den`` (both ok)."""
    return [a.seconds / b.seconds for a, b in zip(runs.get(num, []), runs.get(den, []))
            if a.status == b.status == "ok" and b.seconds]


def pair_ratios(runs: dict[str, list[StageResult]], num: str, den: str) -> str:
    """'1.41x, 1.52x, 1.38x': the ratio of each side-by-side run of ``num`` and ``den``."""
    return ", ".join(f"{r:.2f}x" for r in pair_ratio_values(runs, num, den))


# ------------------------------------------------------------------ tables and the machine
def markdown_table(header: list[str], rows: list[list], align: str = "") -> list[str]:
    """A Markdown table's lines. ``align``: one letter per column, ``l`` or ``r``
    (default: the first column left, the others right)."""
    align = align or "l" + "r" * (len(header) - 1)
    return (["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
            + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def machine() -> dict:
    """Cores, CPU model, memory (GiB), OS, Python and the load average now."""
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


def machine_line(mach: dict | None = None) -> str:
    """``cores: 2 (CPU), 23.4 GiB, load average: 1.3`` for the top of a printout."""
    mach = mach or machine()
    return (f"cores: {mach['nproc']} ({mach['cpu'] or '?'}), {mach['memory_gib']:.1f} GiB, "
            f"load average: {mach['load_at_start'][0]:.1f}")


def command_line(argv: list[str] | None = None) -> str:
    """The command being run, as a results file records it: ``python benchmarks/x.py ...``."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(ROOT)
    except ValueError:
        pass
    return f"python {script} " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))


def started_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


# ------------------------------------------------------------------ Spark and servers
def get_bench_spark(app_name: str, work_dir: Path | None = None, driver_memory: str | None = None,
                    master: str | None = None, extra: dict | None = None):
    """The benchmark's SparkSession: no console progress bars, spill under ``work_dir``
    (``spark-local``), the given driver memory (default: Sparkify's own choice)."""
    from sparkify.spark import get_spark

    conf = {"spark.ui.showConsoleProgress": "false"}
    if work_dir is not None:
        conf["spark.local.dir"] = str(work_dir / "spark-local")
    if driver_memory:
        conf["spark.driver.memory"] = driver_memory
    conf.update(extra or {})
    return get_spark(app_name=app_name, master=master, extra_conf=conf)


def noop(df) -> None:
    """Compute the whole of ``df`` and discard it (Spark's ``noop`` sink): nothing collected."""
    df.write.format("noop").mode("overwrite").save()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(cmd: list, log_path: Path, timeout: float = 120.0) -> tuple[subprocess.Popen, int, float]:
    """Start ``cmd + ["--port", N]`` (a ``sparkify serve`` command) on a free port, its
    output appended to ``log_path``, and wait for ``/api/health`` to answer 200.
    Out: (the process, its port, seconds from the start to the first 200). Raises
    RuntimeError if it exits or does not answer within ``timeout`` seconds."""
    port = free_port()
    t0 = time.perf_counter()
    log = open(log_path, "a")  # noqa: SIM115 - the server's output, open while it runs
    proc = subprocess.Popen([str(a) for a in cmd] + ["--port", str(port)], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api/health"
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc, port, time.perf_counter() - t0
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"no answer from {url} within {timeout:.0f} s; see {log_path}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_subcommand(p, argv: list[str] | None) -> int:
    """Parse ``argv`` (None: the command line) with the entry point's parser ``p`` and run
    the chosen subcommand (its ``run`` default) with the parsed arguments; ``args.argv``
    keeps the words given, for the results' command line."""
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    return args.run(args)
