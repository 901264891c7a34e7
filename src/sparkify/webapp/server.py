"""Run the WSGI app under a production server.

* ``workers > 1`` (the default on Linux/macOS: one per core, at most 4): granian, whose
  HTTP handling is native (Rust) code, so a worker's CPU goes to the app rather than to
  parsing requests. Each worker process runs ``threads`` Python threads (one Python
  process is bound to one core by its GIL, so the workers score in parallel). Where
  processes start by fork (Linux), the model loaded in the parent is shared with every
  worker; elsewhere each worker loads it again from the model directory.
* ``workers == 1``, or where granian cannot run several workers (Windows): waitress, one
  process with ``threads`` threads.

:func:`serve` blocks until Ctrl+C / SIGTERM and returns a process exit code.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

MAX_DEFAULT_WORKERS = 4
HEADER_READ_TIMEOUT_MS = 30_000

#: The app the parent process built, inherited by forked workers (see :func:`_load_app`).
_PRELOADED: Callable | None = None


def granian_available() -> bool:
    """True where granian can run several worker processes (not on Windows)."""
    if os.name != "posix":
        return False
    try:
        import granian  # noqa: F401
    except ImportError:
        return False
    return True


def default_workers() -> int:
    """One worker process per core (at most 4) where granian runs, else 1."""
    if not granian_available():
        return 1
    return max(1, min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1))


def check_bindable(host: str, port: int) -> str | None:
    """None if ``host:port`` can be bound now, else the reason (e.g. 'Address already in use')."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(app: Callable, host: str, port: int, *, workers: int, threads: int,
          banner: str = "") -> int:
    """Serve ``app`` on ``host:port`` until interrupted; print the URL once listening.

    In: a WSGI app, the address (port 0: any free port), worker processes and threads per
    worker. Out: exit code (0 after a clean stop, 2 when the address cannot be bound).
    """
    problem = check_bindable(host, port)
    if problem:
        print(f"sparkify serve: error: cannot listen on {host}:{port}: {problem}", file=sys.stderr)
        return 2
    if workers > 1 and granian_available():
        return _serve_granian(app, host, port, workers, threads, banner)
    return _serve_waitress(app, host, port, threads, banner)


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _serve_waitress(app: Callable, host: str, port: int, threads: int, banner: str) -> int:
    from waitress import create_server

    try:
        server = create_server(app, host=host, port=port, threads=threads,
                               clear_untrusted_proxy_headers=True, ident="sparkify")
    except OSError as exc:
        print(f"sparkify serve: error: cannot listen on {host}:{port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    print(f"Sparkify churn app: {_url(host, server.effective_port)}  "
          f"({banner}waitress, 1 process x {threads} threads; Ctrl+C to stop)", flush=True)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop_on_sigterm)  # stop as on Ctrl+C: exit code 0
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


def _load_app(target: str) -> Callable:
    """Granian's loader, called in each worker: the parent's app when the worker was
    forked from it, else the app rebuilt from ``target`` (JSON: model dir, scores path)."""
    if _PRELOADED is not None:
        return _PRELOADED
    from sparkify.webapp import create_app

    where = json.loads(target)
    return create_app(where["model"], scores_path=where["scores"])


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _serve_granian(app: Callable, host: str, port: int, workers: int, threads: int,
                   banner: str) -> int:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    global _PRELOADED
    _PRELOADED = app
    bundle = getattr(app, "extensions", {}).get("sparkify")
    scores = getattr(app, "extensions", {}).get("sparkify_scores")
    target = json.dumps({"model": str(getattr(bundle, "model_dir", "") or ""),
                         "scores": str(getattr(scores, "path", "") or "") or None})
    if port == 0:
        port = _free_port(host)
    server = Granian(
        target, address=host, port=port, interface=Interfaces.WSGI, workers=workers,
        blocking_threads=threads, http=HTTPModes.http1, websockets=False,
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_READ_TIMEOUT_MS, keep_alive=True),
        log_enabled=True, log_level=LogLevels.warning, log_access=False,
        respawn_failed_workers=True,
    )
    print(f"Sparkify churn app: {_url(host, port)}  ({banner}granian, {workers} processes x "
          f"{threads} threads; Ctrl+C to stop)", flush=True)
    try:
        server.serve(target_loader=_load_app)
    except KeyboardInterrupt:
        pass
    return 0
