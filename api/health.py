"""Liveness and readiness probes.

`/livez` answers from the process alone: a restart cannot fix a database outage. `/readyz`
is ready while PostgreSQL answers: with Redis down the API still serves what PostgreSQL
alone can (reads, and 202 for writes, which run once Redis is back), so a load balancer
must keep sending it traffic; Redis and the broker are reported, as `degraded`.
"""

from __future__ import annotations

from typing import Literal

from flask import Blueprint
from pydantic import BaseModel
from sqlalchemy import text

from api.endpoint import Access, endpoint
from api.runtime import runtime

bp = Blueprint("health", __name__)


class Readiness(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    checks: dict[str, str]


class Liveness(BaseModel):
    status: str


@endpoint(
    bp,
    "GET",
    "/livez",
    summary="Process is up",
    tag="health",
    access=Access.PUBLIC,
    responses={200: Liveness},
)
def livez() -> tuple[Liveness, int]:
    return Liveness(status="ok"), 200


@endpoint(
    bp,
    "GET",
    "/readyz",
    summary="Ready while the database answers; Redis and the broker are reported",
    tag="health",
    access=Access.PUBLIC,
    responses={200: Readiness, 503: Readiness},
)
def readyz() -> tuple[Readiness, int]:
    rt = runtime()
    checks: dict[str, str] = {}
    try:
        with rt.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    try:
        rt.redis.ping()
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"unavailable: {type(exc).__name__}"
    if rt.settings.celery_broker_url:
        # A separate broker (e.g. RabbitMQ): Redis above still carries signals and limits.
        checks["redis"] = checks.pop("broker")
        try:
            with rt.celery.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"unavailable: {type(exc).__name__}"
    if checks["database"] != "ok":
        return Readiness(status="unavailable", checks=checks), 503
    healthy = all(value == "ok" for value in checks.values())
    return Readiness(status="ok" if healthy else "degraded", checks=checks), 200
