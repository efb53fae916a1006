"""The request id (`X-Request-ID`, the caller's or a new one) and the access log line."""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, current_app, g, request

from app.logs import REQUEST_ID
from app.metrics import http_request_duration, http_requests

REQUEST_ID_HEADER = "X-Request-ID"
# What a caller's id may be to be carried as it is: short, and nothing that could forge a
# log line or a header. Anything else gets a fresh id instead.
GIVEN_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+=/-]{1,128}")

ACCESS_LOG_CONFIG = "REWARDS_ACCESS_LOG"
access_log = logging.getLogger("rewards.access")


def current_request_id() -> str | None:
    return REQUEST_ID.get()


def _begin() -> None:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = given if GIVEN_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    g.request_id_token = REQUEST_ID.set(request_id)
    g.request_started = time.perf_counter()


def _answer(response: Response) -> Response:
    request_id = REQUEST_ID.get()
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id
    if "request_started" not in g:
        return response
    seconds = time.perf_counter() - g.request_started
    # The rule, not the path: one series per endpoint, whatever ids the paths carry.
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    http_requests.labels(route, request.method, response.status_code).inc()
    http_request_duration.labels(route).observe(seconds)
    if current_app.config[ACCESS_LOG_CONFIG] and access_log.isEnabledFor(logging.INFO):
        duration_ms = round(seconds * 1000, 1)
        access_log.info(
            "%s %s %s %.1fms",
            request.method,
            request.path,
            response.status_code,
            duration_ms,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": duration_ms,
            },
        )
    return response


def _end(_exc: BaseException | None) -> None:
    token = g.pop("request_id_token", None)
    if token is not None:
        REQUEST_ID.reset(token)


def install_request_log(app: Flask, *, access_log_on: bool) -> None:
    app.before_request(_begin)
    app.after_request(_answer)
    app.teardown_request(_end)
    app.config[ACCESS_LOG_CONFIG] = access_log_on
