"""Serving measured (``python benchmarks/serve.py speed|explain``).

* :func:`run_speed`: one prediction in-process (the NumPy scorer), Spark's single-row
  transform, and HTTP throughput of the web app. ``--variants`` fits a LogisticRegression
  and a 100-tree RandomForest with Spark on the model directory's ``features.parquet``
  (same pipeline stages as ``sparkify train``; needs Java) and benchmarks them too, so the
  targets (p50 <= 1 ms for LR and a 100-tree forest) are checked whatever model ``train``
  picked. ``--spark`` times Spark's single-row ``transform`` of each saved pipeline for
  comparison (needs Java). HTTP: a bounded number of ``POST /api/predict`` requests
  (default 5,000 over 16 keep-alive connections from one lean asyncio client) against
  ``sparkify serve`` started as a separate process on 127.0.0.1 (``--workers``: its worker
  processes), with and without reasons in turns, ``--repeat`` times each, the median run
  reported with the server's and the client's CPU per request. Prints a table and writes
  benchmarks/out/serve.json.
* :func:`run_explain`: the per-request cost of explaining one record (TreeSHAP for
  forests), in process: p50/p99 of ``predict_records([record])`` with and without reasons
  and of the bare ``tree_shap`` call (one feature vector), over real customers of the
  model's features.parquet.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from .common import ROOT, machine_line, scratch_dir, start_server, stop_server, tree_cpu_seconds

OUT_DIR = ROOT / "benchmarks" / "out"


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
    server_log = OUT_DIR / "serve-server.log"
    server_log.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "sparkify.cli", "serve", "--model", model_dir, "--threads", threads]
    if workers is not None:
        cmd += ["--workers", workers]
    proc, port, _ = start_server(cmd, server_log)
    paths = {"predict_with_reasons": "/api/predict", "predict_no_reasons": "/api/predict?reasons=0"}
    runs: dict[str, list[dict]] = {key: [] for key in paths}
    try:
        load_test(port, "/api/predict", bodies, min(1000, total), concurrency, proc.pid)  # warm-up
        for _ in range(max(1, repeat)):
            for key, path in paths.items():
                runs[key].append(load_test(port, path, bodies, total, concurrency, proc.pid))
    finally:
        stop_server(proc)
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


# --------------------------------------------------------------------------- the runs
def run_speed(args) -> int:
    """``serve.py speed``: in-process, Spark and HTTP timings of each model; writes serve.json."""
    models = args.model or [ROOT / "model" / "classifier"]
    for m in models:
        if not (m / "model.json").exists():
            print(f"serve speed: no model directory at {m}; run `sparkify train` first", file=sys.stderr)
            return 2
    print(machine_line())
    results = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "models": []}
    with scratch_dir("sparkify-bench-") as tmp:
        if args.variants:
            root = args.variants_dir or tmp
            root.mkdir(parents=True, exist_ok=True)
            print("fitting variants with Spark ...", flush=True)
            models = models + build_variants(models[0], root)
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
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "serve.json").write_text(json.dumps(results, indent=1))
    print(f"\nwrote {OUT_DIR / 'serve.json'}")
    return 0


def run_explain(args) -> int:
    """``serve.py explain``: p50/p99 of predictions with and without reasons, and of TreeSHAP alone."""
    from sparkify.scorer import load_model
    from sparkify.scorer.shap import tree_shap

    t0 = time.perf_counter()
    model = load_model(args.model)
    print(f"load {time.perf_counter() - t0:.2f} s ({model.model_type})")
    recs = example_records(args.model, model)
    one = [[r] for r in recs]
    print("predict_records           ", time_calls(lambda r: model.predict_records(r), one, args.calls))
    print("predict_records reasons   ", time_calls(lambda r: model.predict_records(r, reasons=True, top=5),
                                              one, args.calls))
    paths = getattr(model, "_paths", None)
    if paths is not None:
        forest = model.scorer.classifier.forest
        X = model.scorer.features(model._columns(recs)[0])
        print(f"leaves {paths.z.shape[0]}, slots {paths.z.shape[1]}, depth {paths.node.shape[1]}")
        print("tree_shap (one vector)    ", time_calls(lambda x: tree_shap(forest, paths, x), list(X), args.calls))
    return 0
