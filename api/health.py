"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint
from pydantic import BaseModel
from sqlalchemy import text

from api.endpoint import Access, endpoint
from api.runtime import runtime

bp = Blueprint("health", __name__)


class Readiness(BaseModel):
    status: str
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
    summary="Database and broker reachable",
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
    ready = all(value == "ok" for value in checks.values())
    body = Readiness(status="ok" if ready else "unavailable", checks=checks)
    return body, 200 if ready else 503
