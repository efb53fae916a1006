"""Logs an operator can use: a request id on every answer (the caller's X-Request-ID, or a
new one) and on every line logged for that request, an access line per request, JSON lines
with LOG_FORMAT=json, and workers that say nothing while there is nothing to do."""

from __future__ import annotations

import io
import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.logs import make_handler
from app.models import Environment, Operation
from app.operation_kinds import OperationKind
from app.operation_runs import execute_operations
from app.operations import Submission, Write, submit_operations
from tests.builders import registered_kinds
from tests.conftest import TenantKeys, WorkerProcess

HEALTH = "/livez"


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the root logger writes in LOG_FORMAT=json, at INFO, during the test."""
    stream = io.StringIO()
    handler = make_handler("json", stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def logged(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_callers_request_id_comes_back_and_one_is_made_when_missing_or_unfit(
    client: FlaskClient,
) -> None:
    given = client.get(HEALTH, headers={"X-Request-ID": "checkout-42.retry:1"})
    assert given.headers["X-Request-ID"] == "checkout-42.retry:1"
    made = client.get(HEALTH)
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-ID"])
    assert client.get(HEALTH).headers["X-Request-ID"] != made.headers["X-Request-ID"]
    for unfit in ("x" * 129, "two words", "line\tbreak", "ünicode"):
        answered = client.get(HEALTH, headers={"X-Request-ID": unfit})
        assert re.fullmatch(r"[0-9a-f]{32}", answered.headers["X-Request-ID"]), unfit


def test_each_request_logs_one_json_access_line_carrying_its_request_id(
    client: FlaskClient, tenant: TenantKeys, json_lines: io.StringIO
) -> None:
    request_id = f"req-{uuid.uuid4().hex[:8]}"
    answered = client.get(
        "/api/v1/gamify/participants/nobody/points",
        headers={**tenant.participant(), "X-Request-ID": request_id},
    )
    assert answered.status_code == 200
    mine = [line for line in logged(json_lines) if line.get("request_id") == request_id]
    [access] = [line for line in mine if line["logger"] == "rewards.access"]
    assert access["level"] == "INFO"
    assert (access["method"], access["path"], access["status"]) == (
        "GET",
        "/api/v1/gamify/participants/nobody/points",
        200,
    )
    assert isinstance(access["duration_ms"], float) and access["time"]


def test_access_log_can_be_switched_off(make_app: Any, json_lines: io.StringIO) -> None:
    quiet = make_app(access_log=False).test_client()
    assert quiet.get(HEALTH).status_code == 200
    assert [line for line in logged(json_lines) if line["logger"] == "rewards.access"] == []


def test_an_idle_worker_logs_nothing_per_beat_and_speaks_json_when_asked(
    start_worker: Any, service_env: dict[str, str]
) -> None:
    prefix = f"{service_env['REDIS_KEY_PREFIX']}logs-{uuid.uuid4().hex[:6]}:"
    worker = start_worker(REDIS_KEY_PREFIX=prefix, LOG_FORMAT="json")
    started = worker.log_path.read_text()
    time.sleep(3.5)  # three beats of the one-second sweepers and the webhook dispatcher
    idle = worker.log_path.read_text()[len(started) :]
    assert idle.strip() == "", idle[-2000:]
    records = [json.loads(line) for line in started.splitlines() if line.startswith("{")]
    assert any(record["message"].endswith(" ready.") for record in records), started[-2000:]
    assert all({"time", "level", "logger", "message"} <= set(record) for record in records)


def _log_and_answer(session: Session, operation: Operation) -> dict[str, Any]:
    logging.getLogger("tests.kind").info("running %s", operation.id)
    return {}


LOGGING_KIND = OperationKind("tests.logs", handler=_log_and_answer)


def test_a_write_keeps_its_request_id_and_the_worker_logs_under_it(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
    db_session: Session,
    json_lines: io.StringIO,
) -> None:
    awarded = client.post(
        "/api/v1/gamify/points/award",
        json={"participant_id": "rid", "amount": 1},
        headers={**tenant.participant(), "X-Request-ID": "order-77-award"},
    )
    assert awarded.status_code == 200, awarded.json
    with session_factory() as session:
        stored = session.execute(
            select(Operation.request_id).where(Operation.tenant_id == tenant.tenant_id)
        ).scalar_one()
    assert stored == "order-77-award"
    # A worker runs an operation under the id of the request that made it.
    with registered_kinds(LOGGING_KIND):
        write = Write(tenant.tenant_id, Environment.LIVE, LOGGING_KIND.name, {}, None)
        [submission] = submit_operations(
            db_session.connection(), [replace(write, request_id="r-9")]
        )
        assert isinstance(submission, Submission)
        execute_operations(db_session, [submission.operation.id])
    [line] = [line for line in logged(json_lines) if line["logger"] == "tests.kind"]
    assert line["request_id"] == "r-9"
