"""Logging for every process (web, worker, command line): one format, plain text or JSON
(LOG_FORMAT), and on every line the request id of the request, or of the operation, in hand.

The request id is the caller's `X-Request-ID` (or one generated for it); the web process
sets it per request, and a worker sets it while it runs an operation that request recorded,
so one id finds a write's lines in both.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO

from pythonjsonlogger.json import JsonFormatter

from app.config import Settings

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
JSON_RENAMES = {"asctime": "time", "levelname": "level", "name": "logger"}

# Celery's lines about every task received and finished: with the sweepers and the webhook
# dispatcher on a one-second beat they are a line per second doing nothing, so they show
# only at DEBUG. Failures are warnings and errors, and still show.
PER_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.beat")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        request_id = REQUEST_ID.get()
        record.request_id = request_id
        record.request_tag = f" [{request_id}]" if request_id else ""
        return True


class _OurHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler configure_logging installs: replaced, not doubled, when it runs again,
    while handlers others installed (a test runner's) stay."""


def make_handler(log_format: str, stream: IO[str] | None = None) -> logging.Handler:
    handler = _OurHandler(stream or sys.stderr)
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(JSON_FIELDS, rename_fields=JSON_RENAMES, reserved_attrs=_RESERVED)
        )
    else:
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    handler.addFilter(_RequestIdFilter())
    return handler


# Not repeated in JSON lines: the record's own bookkeeping, and the plain format's tag.
_RESERVED = [*logging.LogRecord("", 0, "", 0, "", None, None).__dict__, "request_tag", "message"]


def configure_logging(settings: Settings) -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(handler)
    root.addHandler(make_handler(settings.log_format))
    root.setLevel(settings.log_level)
    quiet = logging.DEBUG if settings.log_level == "DEBUG" else logging.WARNING
    for name in PER_TASK_LOGGERS:
        logging.getLogger(name).setLevel(quiet)


@contextmanager
def request_id_set(request_id: str | None) -> Iterator[None]:
    """Log lines inside carry this request id (a worker running an operation)."""
    token = REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        REQUEST_ID.reset(token)
