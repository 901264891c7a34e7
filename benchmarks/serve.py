"""Serving speed: one prediction in-process (NumPy scorer), Spark's single-row transform, and
HTTP throughput of the web app under waitress.

    .venv/bin/python benchmarks/serve.py --model model/classifier
    .venv/bin/python benchmarks/serve.py --model model/classifier --variants --spark

``--variants`` fits a LogisticRegression and a 100-tree RandomForest with Spark on the model
directory's ``features.parquet`` (same pipeline stages as ``sparkify train``; needs Java) and
benchmarks them too, so the targets (p50 <= 1 ms for LR and a 100-tree forest) are checked
whatever model ``train`` picked. ``--spark`` times Spark's single-row ``transform`` of each
saved pipeline for comparison (needs Java). HTTP: a bounded number of ``POST /api/predict``
requests (default 5,000 over 16 keep-alive connections from one lean asyncio client) against
``sparkify serve`` started as a separate process on 127.0.0.1 (``--workers``: its worker processes).

Prints a table and writes benchmarks/out/serve.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sparkify.webapp.cli import DEFAULT_THREADS

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "benchmarks" / "out"


# --------------------------------------------------------------------------- helpers

def percentiles(samples_s: list[float]) -> dict[str, float]:
    """Seconds -> {"p50_ms", "p99_ms", "mean_ms", "n"}."""
    ordered = sorted(samples_s)
    n = len(ordered)

    def pick(q: float) -> float:
        return ordered[min(n - 1, int(round(q * (n - 1))))] * 1e3

    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99), "mean_ms": statistics.fmean(ordered) * 1e3, "n": n}


def example_records(model_dir: Path, model, n: int = 200) -> list[dict]:
    """Real customers from the training table (features.parquet), as the API receives them."""
    import pandas as pd

    names = [f["name"] for f in model.features]
    frame = pd.read_parquet(model_dir / "features.parquet")[names].dropna().head(n)
    kinds = {f["name"]: f.get("kind", "numeric") for f in model.features}
    return [{k: (float(v) if kinds[k] == "numeric" else str(v)) for k, v in row.items()}
            for row in frame.to_dict("records")]


def time_calls(fn, records: list[dict], n: int, warmup: int = 50) -> dict[str, float]:
    for i in range(warmup):
        fn(records[i % len(records)])
    samples = []
    clock = time.perf_counter
    for i in range(n):
        record = records[i % len(records)]
        t0 = clock()
        fn(record)
        samples.append(clock() - t0)
    return percentiles(samples)


# --------------------------------------------------------------------------- in-process

def bench_inprocess(model_dir: Path, n: int) -> dict:
    """Latency of one prediction through the scorer API (and with its explanation)."""
    from sparkify.scorer import load_model

    t0 = time.perf_counter()
    model = load_model(model_dir)
    load_s = time.perf_counter() - t0
    records = example_records(model_dir, model)
    out = {"model_type": model.model_type, "load_s": load_s}
    out["predict"] = time_calls(lambda r: model.predict([r]), records, n)
    if hasattr(model, "predict_records"):
        out["predict_records"] = time_calls(lambda r: model.predict_records([r]), records, n)
    out["explain"] = time_calls(lambda r: model.explain(r, top=5), records, max(200, n // 4))
    return out


def bench_spark(model_dir: Path, n: int) -> dict:
    """Spark's single-row transform (+ collect) of the saved PipelineModel, for comparison."""
    from pyspark.ml import PipelineModel
    from pyspark.sql import types as T

    from sparkify.scorer import load_model
    from sparkify.spark import get_spark

    spark = get_spark(app_name="bench-serve", master="local[1]", shuffle_partitions=1,
                      extra_conf={"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"})
    model = load_model(model_dir)
    records = example_records(model_dir, model, 50)
    schema = T.StructType([
        T.StructField(f["name"], T.DoubleType() if f.get("kind", "numeric") == "numeric" else T.StringType())
        for f in model.features
    ])
    pipeline = PipelineModel.load(str(model_dir / "pipeline"))

    def one(record):
        row = tuple(record[f.name] for f in schema.fields)
        return pipeline.transform(spark.createDataFrame([row], schema)).select("probability").collect()

    return {"model_type": model.model_type, "transform": time_calls(one, records, n, warmup=10)}


# --------------------------------------------------------------------------- HTTP

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: Path, threads: int, workers: int | None, log_path: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    log = open(log_path, "w")
    cmd = [sys.executable, "-m", "sparkify.cli", "serve", "--model", str(model_dir), "--port", str(port),
           "--threads", str(threads)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}; see {log_path}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/health")
            if conn.getresponse().status == 200:
                conn.close()
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("server did not start within 120 s")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` and its children (the
    server's worker processes), from /proc."""
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


async def _client(port: int, requests: list[bytes], counter, latencies: list[float], errors: list[str]):
    """One keep-alive connection sending requests until ``counter`` runs out (HTTP/1.1,
    pre-encoded requests, Content-Length framing: a lean client like wrk, so the machine's
    CPU goes to the server)."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    clock = time.perf_counter
    try:
        for i in counter:
            t0 = clock()
            writer.write(requests[i % len(requests)])
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
                errors.append(type(exc).__name__)
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            if not head.startswith(b"HTTP/1.1 200") or b"probability" not in body:
                errors.append(head.split(b"\r\n", 1)[0].decode(errors="replace"))
                continue
            latencies.append(clock() - t0)
    finally:
        writer.close()


def load_test(port: int, path: str, bodies: list[bytes], total: int, concurrency: int,
              server_pid: int) -> dict:
    """``total`` POSTs over ``concurrency`` keep-alive connections (one asyncio client)."""
    import asyncio

    requests = [(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(b)}\r\n\r\n").encode() + b for b in bodies]
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(total))

    async def run():
        await asyncio.gather(*[_client(port, requests, counter, latencies, errors) for _ in range(concurrency)])

    server_cpu0 = tree_cpu_seconds(server_pid)
    client_cpu0 = time.process_time()
    t0 = time.perf_counter()
    asyncio.run(run())
    elapsed = time.perf_counter() - t0
    server_cpu = tree_cpu_seconds(server_pid) - server_cpu0
    client_cpu = time.process_time() - client_cpu0
    result = {"requests": total, "concurrency": concurrency, "seconds": elapsed,
              "requests_per_s": total / elapsed, "errors": len(errors),
              "error_kinds": sorted(set(errors))[:5],
              # CPU spent per request: capacity independent of other load on the box
              "server_cpu_ms_per_request": server_cpu / total * 1e3,
              "client_cpu_ms_per_request": client_cpu / total * 1e3,
              "load_average_1min": os.getloadavg()[0]}
    result.update({f"latency_{k}": v for k, v in percentiles(latencies or [0.0]).items() if k != "n"})
    return result


def bench_http(model_dir: Path, total: int, concurrency: int, threads: int, workers: int | None,
               repeat: int) -> dict:
    """Each load test ``repeat`` times, alternating with and without reasons; the median run
    is reported (the runs' requests/s are kept: shared VMs vary from minute to minute)."""
    from sparkify.scorer import load_model

    model = load_model(model_dir)
    bodies = [json.dumps(r).encode() for r in example_records(model_dir, model)]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    proc, port = start_server(model_dir, threads, workers, OUT_DIR / "serve-server.log")
    paths = {"predict_with_reasons": "/api/predict", "predict_no_reasons": "/api/predict?reasons=0"}
    runs: dict[str, list[dict]] = {key: [] for key in paths}
    try:
        load_test(port, "/api/predict", bodies, min(1000, total), concurrency, proc.pid)  # warm-up
        for _ in range(max(1, repeat)):
            for key, path in paths.items():
                runs[key].append(load_test(port, path, bodies, total, concurrency, proc.pid))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    out = {"server_threads": threads, "server_workers": workers or "default"}
    for key, results in runs.items():
        ordered = sorted(results, key=lambda r: r["requests_per_s"])
        out[key] = dict(ordered[len(ordered) // 2], runs_requests_per_s=[r["requests_per_s"] for r in results],
                        errors_all_runs=sum(r["errors"] for r in results))
    return out


# --------------------------------------------------------------------------- variants

def build_variants(model_dir: Path, out_root: Path) -> list[Path]:
    """Fit LR and a 100-tree RF on ``features.parquet`` (train split) with the project's
    pipeline stages; write each as a model directory the scorer reads."""
    import pandas as pd

    from sparkify.modeling.pipelines import build_pipeline
    from sparkify.spark import get_spark

    spark = get_spark(app_name="bench-serve", master="local[2]", shuffle_partitions=2,
                      extra_conf={"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"})
    meta = json.loads((model_dir / "model.json").read_text())
    numeric = [f["name"] for f in meta["features"] if f.get("kind", "numeric") == "numeric"]
    categorical = [f["name"] for f in meta["features"] if f.get("kind") == "categorical"]
    frame = pd.read_parquet(model_dir / "features.parquet")
    frame = frame[numeric + categorical + ["churn"]].dropna()
    frame[numeric] = frame[numeric].astype("float64")
    frame[categorical] = frame[categorical].astype(str)
    frame["churn"] = frame["churn"].astype("float64")
    df = spark.createDataFrame(frame)
    out = []
    for family, params, name in (("lr", {"regParam": 0.05, "maxIter": 50}, "LogisticRegression"),
                                 ("rf", {"numTrees": 100, "maxDepth": 6}, "RandomForestClassifier")):
        pipeline, _ = build_pipeline(family, numeric, categorical, params=params, weighted=False)
        fitted = pipeline.fit(df)
        target = out_root / f"{family}"
        shutil.copytree(model_dir, target, ignore=shutil.ignore_patterns("pipeline", "scores.csv"))
        fitted.write().overwrite().save(str(target / "pipeline"))
        variant = dict(meta, model_type=name, score_kind="probability", calibration=None,
                       threshold=0.5)
        variant.pop("bands", None)
        (target / "model.json").write_text(json.dumps(variant, indent=1))
        out.append(target)
        print(f"  fitted {name} ({params}) -> {target}", flush=True)
    return out


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, action="append",
                        help="model directory (repeatable; default model/classifier)")
    parser.add_argument("--n", type=int, default=3000, help="in-process timed calls (default 3000)")
    parser.add_argument("--requests", type=int, default=5000, help="HTTP requests per run (default 5000)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent keep-alive connections (default 16)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help=f"server threads per worker (default {DEFAULT_THREADS}, as sparkify serve)")
    parser.add_argument("--workers", type=int, default=None,
                        help="server worker processes (default: sparkify serve's own, one per core)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="HTTP runs of each kind; the median is reported (default 3)")
    parser.add_argument("--variants", action="store_true",
                        help="also fit and benchmark LR and a 100-tree RF (needs Java)")
    parser.add_argument("--variants-dir", type=Path, default=None,
                        help="keep the fitted variants here (model directories lr/ and rf/; "
                             "e.g. to load-test one with --model DIR/rf)")
    parser.add_argument("--spark", action="store_true",
                        help="also time Spark's single-row transform (needs Java)")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP load test")
    args = parser.parse_args(argv)
    models = args.model or [ROOT / "model" / "classifier"]
    for m in models:
        if not (m / "model.json").exists():
            print(f"benchmarks/serve.py: no model directory at {m}; run `sparkify train` first",
                  file=sys.stderr)
            return 2
    tmp = None
    if args.variants:
        if args.variants_dir:
            args.variants_dir.mkdir(parents=True, exist_ok=True)
        tmp = args.variants_dir or Path(tempfile.mkdtemp(prefix="sparkify-bench-"))
        print("fitting variants with Spark ...", flush=True)
        models = models + build_variants(models[0], tmp)
    results = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "models": []}
    try:
        for m in models:
            entry = {"model_dir": str(m)}
            print(f"\n== {m}", flush=True)
            entry["inprocess"] = ip = bench_inprocess(m, args.n)
            print(f"  {ip['model_type']}: load {ip['load_s']:.2f} s")
            for key in ("predict", "predict_records", "explain"):
                if key in ip:
                    s = ip[key]
                    print(f"  in-process {key:<16} p50 {s['p50_ms']:.3f} ms   p99 {s['p99_ms']:.3f} ms"
                          f"   mean {s['mean_ms']:.3f} ms   (n={s['n']})", flush=True)
            if args.spark:
                entry["spark"] = sp = bench_spark(m, 60)
                s = sp["transform"]
                print(f"  Spark transform 1 row  p50 {s['p50_ms']:.1f} ms   p99 {s['p99_ms']:.1f} ms", flush=True)
            results["models"].append(entry)
        if not args.no_http:
            m = models[0]
            print(f"\n== HTTP: {args.requests} POST /api/predict, {args.concurrency} connections, "
                  f"server workers {args.workers or 'default'} x {args.threads} threads, model {m}", flush=True)
            results["http"] = h = bench_http(m, args.requests, args.concurrency, args.threads, args.workers,
                                             args.repeat)
            for key in ("predict_with_reasons", "predict_no_reasons"):
                r = h[key]
                each = ", ".join(f"{x:.0f}" for x in r["runs_requests_per_s"])
                print(f"  {key:<22} {r['requests_per_s']:8.0f} req/s (median of {each})"
                      f"   errors {r['errors_all_runs']}"
                      f"   latency p50 {r['latency_p50_ms']:.1f} ms  p99 {r['latency_p99_ms']:.1f} ms"
                      f"   server CPU {r['server_cpu_ms_per_request']:.2f} ms/request"
                      f"   client CPU {r['client_cpu_ms_per_request']:.2f} ms/request"
                      f"   (load average {r['load_average_1min']:.1f})", flush=True)
    finally:
        if tmp is not None:
            if not args.variants_dir:
                shutil.rmtree(tmp, ignore_errors=True)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "serve.json").write_text(json.dumps(results, indent=1))
    print(f"\nwrote {OUT_DIR / 'serve.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
