"""A worker killed in the middle of dispatching: every event is still delivered."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from app.webhooks.dispatcher import DISPATCHER_APPLICATION_NAME
from tests.builders import claim, create_reward, wait_for
from tests.conftest import TenantKeys
from tests.webhook_receiver import Reply, WebhookReceiver, create_webhook, wait_for_deliveries

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("worker")]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


def _dispatcher_pid(session_factory: sessionmaker[Session], timeout: float = 10) -> int:
    """The OS pid of the worker process holding the dispatcher lock (it names itself)."""

    def dispatcher_pids() -> list[int]:
        with session_factory() as session:
            names = session.execute(
                text(
                    "SELECT application_name FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name LIKE :prefix"
                ),
                {"prefix": f"{DISPATCHER_APPLICATION_NAME} pid=%"},
            ).scalars()
            return [int(name.rsplit("=", 1)[1]) for name in names]

    return wait_for(dispatcher_pids, bool, timeout, "a running dispatcher")[0]


def test_worker_killed_during_dispatch_loses_no_event(
    client: FlaskClient,
    tenant: TenantKeys,
    receiver: WebhookReceiver,
    session_factory: sessionmaker[Session],
    start_worker: object,
) -> None:
    start_worker()  # type: ignore[operator]  # a second worker, so one survives either way
    # Answers are held back, so the dispatcher has requests in flight when it is killed.
    answer = threading.Event()
    receiver.responder = lambda request: Reply(200) if answer.wait(20) else Reply(500)
    webhook = create_webhook(client, tenant.admin(), receiver.url)
    reward = create_reward(client, tenant.admin())
    claims = 20
    for number in range(claims):
        response = claim(client, tenant.participant(), reward["id"], f"user_{number}")
        assert response.status_code == 201, response.json
    receiver.wait_for_requests(5)
    os.kill(_dispatcher_pid(session_factory), signal.SIGKILL)
    answer.set()

    # Deliveries in flight come back when their lease runs out (timeout 3 s + 5 s margin);
    # the rest are sent by whichever worker process takes the dispatcher lock next.
    receiver.wait_for(lambda requests: len({r.webhook_id for r in requests}) == claims, timeout=40)
    wait_for_deliveries(
        client,
        tenant.admin(),
        webhook["id"],
        lambda deliveries: [d["status"] for d in deliveries] == ["succeeded"] * claims,
    )
