"""``sparkify serve``: the web app under a production WSGI server.

``sparkify serve --model DIR [--scores FILE] [--host 127.0.0.1] [--port 8001] [--workers N] [--threads N]``

Runs under granian (one worker process per core) or waitress; see :mod:`sparkify.webapp.server`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sparkify.config import DEFAULT_HOST, DEFAULT_MODEL_DIR, DEFAULT_PORT

DEFAULT_THREADS = 2


def configure_serve(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve`` options to ``parser``."""
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR,
                        help=f"model directory written by 'sparkify train' (default: {DEFAULT_MODEL_DIR})")
    parser.add_argument("--scores", type=Path, default=None,
                        help="'sparkify score' output for user look-up and the at-risk list "
                             "(default: <model>/scores.csv when present; re-read when it changes)")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default: {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help=f"Python threads per worker process (default: {DEFAULT_THREADS}; "
                             "connections are handled natively, so a few threads keep a core busy)")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: one per core, at most 4, under granian; "
                             "1 = a single waitress process, the only choice on Windows)")


def run_serve(args: argparse.Namespace) -> int:
    """Load the model (exit 2 with a message if it cannot be), then serve until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" under load
    from sparkify.webapp.server import default_workers, serve

    workers = default_workers() if args.workers is None else args.workers
    if not 0 <= args.port <= 65535:  # 0: any free port (the address is printed)
        print(f"sparkify serve: error: --port must be 0..65535, not {args.port}", file=sys.stderr)
        return 2
    if args.threads < 1:
        print("sparkify serve: error: --threads must be at least 1", file=sys.stderr)
        return 2
    if workers < 1:
        print("sparkify serve: error: --workers must be at least 1", file=sys.stderr)
        return 2
    from sparkify.webapp import AppStartupError, create_app
    from sparkify.webapp.server import check_bindable

    problem = check_bindable(args.host, args.port)  # before the model load: fail fast
    if problem:
        print(f"sparkify serve: error: cannot listen on {args.host}:{args.port}: {problem}", file=sys.stderr)
        return 2
    try:
        app = create_app(args.model, scores_path=args.scores)
    except AppStartupError as exc:
        print(f"sparkify serve: error: {exc}", file=sys.stderr)
        return 2
    app.extensions["sparkify"].charts  # noqa: B018 - render the dashboard before listening
    return serve(app, args.host, args.port, workers=workers, threads=args.threads,
                 banner=f"model {args.model}; ")
