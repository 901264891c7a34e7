"""Run the WSGI app under a production server.

* ``workers > 1`` (the default on Linux/macOS: one per core, at most 4): gunicorn, pre-fork.
  The model is loaded once in the parent and the app is shared with every worker process
  by fork, so the workers score in parallel (one Python process is bound to one core by
  its GIL). Each worker runs ``threads`` threads and keeps connections alive.
* ``workers == 1``, or where gunicorn is not available (Windows): waitress, one process
  with ``threads`` threads.

:func:`serve` blocks until Ctrl+C / SIGTERM and returns a process exit code.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

KEEPALIVE_SECONDS = 5
REQUEST_TIMEOUT_SECONDS = 60
MAX_DEFAULT_WORKERS = 4


def gunicorn_available() -> bool:
    if os.name != "posix":
        return False
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        return False
    return True


def default_workers() -> int:
    """One worker process per core (at most 4) where gunicorn runs, else 1."""
    if not gunicorn_available():
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
    if workers > 1 and gunicorn_available():
        return _serve_gunicorn(app, host, port, workers, threads, banner)
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


def _serve_gunicorn(app: Callable, host: str, port: int, workers: int, threads: int,
                    banner: str) -> int:
    from gunicorn.app.base import BaseApplication

    def when_ready(server: Any) -> None:
        bound = server.LISTENERS[0].sock.getsockname()[1] if server.LISTENERS else port
        print(f"Sparkify churn app: {_url(host, bound)}  ({banner}gunicorn, {workers} processes x "
              f"{threads} threads; Ctrl+C to stop)", flush=True)

    options = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "keepalive": KEEPALIVE_SECONDS,
        "timeout": REQUEST_TIMEOUT_SECONDS,
        "graceful_timeout": 10,
        "preload_app": True,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": "sparkify-serve",
        "when_ready": when_ready,
    }

    class _Gunicorn(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Callable:
            return app

    try:
        _Gunicorn().run()  # exits the process itself on a fatal error (e.g. HaltServer)
    except KeyboardInterrupt:
        pass
    return 0
