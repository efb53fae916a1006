"""`rewards serve` as deployed: gunicorn's gevent workers, and what the server itself
answers before the app sees a request."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.builders import GAMIFY, http_json, service_connections_waiting_on_a_lock, wait_until
from tests.conftest import TenantKeys

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("worker")]


def test_a_request_waiting_on_postgresql_does_not_stall_the_others_of_its_process(
    live_api: str, tenant: TenantKeys, engine: Engine
) -> None:
    """One web process, one write stuck behind a table lock: the process still answers.
    (With the database driver's blocking wait, imported before gevent patched the
    standard library, the whole process would wait with the write.)"""
    answers: list[tuple[int, Any]] = []
    with engine.connect() as locker:
        locker.execute(text("LOCK TABLE operations IN ACCESS EXCLUSIVE MODE"))
        writer = threading.Thread(
            target=lambda: answers.append(
                http_json(
                    "POST",
                    f"{live_api}{GAMIFY}/points/award",
                    tenant.participant_key,
                    {"participant_id": "patient", "amount": 5, "reason": "locked out"},
                )
            )
        )
        writer.start()
        wait_until(
            lambda: service_connections_waiting_on_a_lock(locker) > 0,
            10,
            "the write to reach its INSERT",
        )

        started = time.monotonic()
        assert http_json("GET", f"{live_api}/readyz", "")[0] == 200
        assert time.monotonic() - started < 2
        assert not answers, "the write finished while its table was locked"
        locker.rollback()
    writer.join(30)
    assert answers and answers[0][0] == 200, answers


def test_requests_the_http_server_refuses_still_get_a_json_error_body(live_api: str) -> None:
    """gunicorn refuses a request line over 8 KiB itself, before the app; it answers 414
    in the same error body as every other error (documented on every operation)."""
    request = urllib.request.Request(f"{live_api}/api/v1/gamify/rewards?x={'a' * 9000}")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 414
    assert refused.value.headers["Content-Type"] == "application/json"
    assert json.loads(refused.value.read()) == {
        "code": "uri_too_long",
        "type": "uri_too_long",
        "detail": "URI Too Long",
        "status": 414,
    }
