"""Serving: one prediction in process, Spark's single-row transform, HTTP throughput, and
the cost of explanations.

    .venv/bin/python benchmarks/serve.py speed --model model/classifier --variants --spark
    .venv/bin/python benchmarks/serve.py explain --model V/rf --calls 2000

Subcommands (``--help`` on each; the code is in ``bench/serving.py``):

* ``speed``: p50/p99 of one prediction through the NumPy scorer (and with its
  explanation), optionally Spark's single-row ``transform`` (``--spark``) and an LR and a
  100-tree forest fitted on the model's features (``--variants``), then ``POST
  /api/predict`` against ``sparkify serve`` in its own process, with and without reasons,
  in turns (``--repeat``; the median run, requests/s, latency, server and client CPU per
  request); writes benchmarks/out/serve.json;
* ``explain``: p50/p99 of ``predict_records`` with and without reasons and of the bare
  TreeSHAP call, for one model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import serving
from bench.common import run_subcommand
from sparkify.webapp.cli import DEFAULT_THREADS


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("speed", help="in-process, Spark and HTTP timings; writes benchmarks/out/serve.json")
    s.add_argument("--model", type=Path, action="append",
                   help="model directory (repeatable; default model/classifier)")
    s.add_argument("--n", type=int, default=3000, help="in-process timed calls (default 3000)")
    s.add_argument("--requests", type=int, default=5000, help="HTTP requests per run (default 5000)")
    s.add_argument("--concurrency", type=int, default=16, help="concurrent keep-alive connections (default 16)")
    s.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                   help=f"server threads per worker (default {DEFAULT_THREADS}, as sparkify serve)")
    s.add_argument("--workers", type=int, default=None,
                   help="server worker processes (default: sparkify serve's own, one per core)")
    s.add_argument("--repeat", type=int, default=3, help="HTTP runs of each kind; the median is reported (default 3)")
    s.add_argument("--variants", action="store_true", help="also fit and benchmark LR and a 100-tree RF (needs Java)")
    s.add_argument("--variants-dir", type=Path, default=None,
                   help="keep the fitted variants here (model directories lr/ and rf/; "
                        "e.g. to load-test one with --model DIR/rf)")
    s.add_argument("--spark", action="store_true", help="also time Spark's single-row transform (needs Java)")
    s.add_argument("--no-http", action="store_true", help="skip the HTTP load test")
    s.set_defaults(run=serving.run_speed)

    e = sub.add_parser("explain", help="per-request cost of explaining one record")
    e.add_argument("--model", type=Path, required=True)
    e.add_argument("--calls", type=int, default=2000)
    e.set_defaults(run=serving.run_explain)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_subcommand(parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
