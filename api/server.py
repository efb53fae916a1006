"""Run the API under gunicorn, built by the app factory (no import-time app)."""

from __future__ import annotations

import json
from typing import Any

import gunicorn.util
from gunicorn.app.base import BaseApplication

from app.config import Settings


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


class GunicornServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from api import create_app

        # gunicorn looks this up at call time; only processes serving the API run this.
        gunicorn.util.write_error = _write_json_error

        return create_app(self.settings)


def serve(settings: Settings, host: str, port: int, workers: int, threads: int) -> None:
    if "db_pool_size" not in settings.model_fields_set:
        # One pooled connection per thread: with fewer, busy moments open and close
        # overflow connections per request, which costs more than the request's own work.
        settings = settings.model_copy(update={"db_pool_size": threads})
    GunicornServer(
        settings,
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            # Threads: a sync request spends most of its time waiting for the worker's
            # nudge, so one process serves many of them at once.
            "worker_class": "gthread",
            "threads": threads,
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
