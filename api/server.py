"""Run the API under gunicorn, built by the app factory (no import-time app).

The workers are gunicorn's gevent workers: a request is a greenlet, not a thread. A web
process spends most of its time waiting (for PostgreSQL, for Redis, for a sync write's
completion), and a thread per waiting request cost a poller hand-off, a thread-pool
hand-off and GIL switches on every request: about 0.6 ms of CPU for a request that does
nothing, against about 0.3 ms as a greenlet, measured on this machine (bench/README.md).
"""

from __future__ import annotations

import gc
import json
import logging
import sys
from typing import Any

import gevent
import gunicorn.util
from gunicorn.app.base import BaseApplication
from gunicorn.workers.ggevent import GeventWorker

from app.config import Settings

log = logging.getLogger(__name__)


def _write_json_error(sock: Any, status: int, reason: str, message: str) -> None:
    """gunicorn's answer to a request it cannot parse (request line over 8 KiB, too many
    or too large headers, a malformed line), in the API's JSON error body, not HTML."""
    code = reason.lower().replace(" ", "_")
    body = json.dumps({"code": code, "type": code, "detail": reason, "status": status}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    gunicorn.util.write_nonblock(sock, head.encode("latin-1") + body)


class CooperativeWorker(GeventWorker):  # type: ignore[misc]
    """gunicorn's gevent worker that refuses to start when the database driver is already
    imported. psycopg picks its wait function when it is imported: imported before gevent
    patched the standard library it blocks in C, and every query stalls every request of
    the process. So nothing the serving command imports before the fork imports psycopg
    (app/db.py reaches the driver through SQLAlchemy's dialect)."""

    def patch(self) -> None:
        if "psycopg" in sys.modules:
            raise RuntimeError(
                "psycopg was imported before gevent patched the standard library; "
                "its queries would block the whole web process"
            )
        super().patch()


class DeadlinePassed(BaseException):
    """Raised into a request's greenlet at its deadline. A BaseException: no handler of the
    app's takes it for an error to answer, and SQLAlchemy, seeing it interrupt a query,
    drops that connection instead of talking to the server that stopped answering."""


class RequestDeadline:
    """WSGI middleware: a request unanswered after `seconds` gets 503 service_unavailable
    with Retry-After. libpq has no client-side read timeout and the kernel of a frozen host
    still acknowledges packets, so nothing below this bounds a query to a stopped server;
    a gevent timeout interrupts the greenlet wherever it waits."""

    def __init__(self, app: Any, seconds: float) -> None:
        self._app = app
        self._seconds = seconds

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        try:
            with gevent.Timeout(self._seconds, DeadlinePassed):
                return self._app(environ, start_response)
        except DeadlinePassed:
            log.warning(
                "%s %s: no answer within %ss (REQUEST_TIMEOUT_SECONDS)",
                environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO"),
                self._seconds,
            )
            body = json.dumps(
                {
                    "code": "service_unavailable",
                    "type": "service_unavailable",
                    "detail": "No answer in time, retry shortly",
                    "status": 503,
                }
            ).encode()
            start_response(
                "503 Service Unavailable",
                [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    ("Retry-After", "1"),
                ],
            )
            return [body]


class GunicornServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from api.factory import create_app

        # gunicorn looks this up at call time; only processes serving the API run this.
        gunicorn.util.write_error = _write_json_error

        app = create_app(self.settings)
        app.wsgi_app = RequestDeadline(  # type: ignore[method-assign]
            app.wsgi_app, self.settings.request_timeout_seconds
        )
        # What the process built to serve (routes, models, schemas, pools) lives as long
        # as it does: frozen out of the cyclic collector, it is not walked again by every
        # full collection, which showed as the slowest requests (hot-drop p99 about 140 ms
        # against about 80 ms frozen, bench/README.md).
        gc.collect()
        gc.freeze()
        return app


# Pooled PostgreSQL connections per web process when DB_POOL_SIZE is not set. Writes share
# grouped statements and a sync write waits for its answer without a connection, so
# few requests hold one at a time; reads each hold one for their query.
SERVE_DB_POOL_SIZE = 16


def serve(settings: Settings, host: str, port: int, workers: int, connections: int) -> None:
    if "db_pool_size" not in settings.model_fields_set:
        settings = settings.model_copy(update={"db_pool_size": SERVE_DB_POOL_SIZE})
    GunicornServer(
        settings,
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "worker_class": CooperativeWorker,
            # Open client connections per process (idle keep-alive ones included); a
            # sync request mostly waits for its answer, so one process holds many.
            "worker_connections": connections,
            "timeout": 60,
            "graceful_timeout": 10,
            "keepalive": 5,
            # gunicorn's largest bounded request line (default 4094): long filter queries
            # reach the app and its validation; longer ones get 414 in the JSON body.
            "limit_request_line": 8190,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": settings.log_level.lower(),
        },
    ).run()
