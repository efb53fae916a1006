"""Run the API under gunicorn, built by the app factory (no import-time app)."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from app.config import Settings


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

        return create_app(self.settings)


def serve(settings: Settings, host: str, port: int, workers: int, threads: int) -> None:
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
            "accesslog": None,
            "errorlog": "-",
            "loglevel": settings.log_level.lower(),
        },
    ).run()
