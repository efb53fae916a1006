"""Poison operations: a write whose runs keep raising an unexpected error (not a rule's
refusal) is set aside as failed after OPERATION_MAX_ATTEMPTS runs, its lane goes on, a
poll answers its error, and the operator lists and retries it.

The core runs in `db_session` (rolled back); the tasks run in this process on a Celery app
with a key prefix of its own that no worker consumes; the last test is the whole path
through the shared worker and the `rewards` command.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from celery import Celery, current_app
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

import workers.runtime
import workers.tasks  # the tasks, registered on every Celery app
from app.clock import utcnow
from app.config import Settings
from app.errors import DomainError
from app.infra.drain_key import drain_key
from app.models import Operation, OperationStatus
from app.operation_failures import (
    OPERATION_FAILED,
    failed_operations,
    record_failed_run,
    requeue_failed_operation,
)
from app.operation_kinds import OperationKind
from app.operation_sweeps import purge_expired_idempotency_records
from app.operations import FAILURE_DIAGNOSIS, Submission, operation_answer, submit_operation
from app.points.kinds import AWARD_KIND
from tests.builders import registered_kinds, wait_for, wait_for_operation
from tests.conftest import TenantKeys, WorkerProcess
from tests.test_cli import rewards, rewards_json
from workers.celery_app import (
    QUEUE_OPERATIONS,
    TASK_DRAIN_PARTITION,
    TASK_EXECUTE_OPERATION,
    create_celery,
)
from workers.publish import publish_accepted

GAMIFY = "/api/v1/gamify"
TENANT_ID = uuid.uuid4()
MAX_ATTEMPTS = 2


class Poisoned(Exception):
    """What a test kind raises for a payload it cannot run: a bug, not a refusal."""


def _run_unless_poisoned(session: Session, operation: Operation) -> dict[str, Any]:
    if operation.payload.get("poison"):
        raise Poisoned(f"cannot run {operation.payload}")
    return {"ran": operation.payload["n"]}


def _run_batch_unless_poisoned(
    session: Session, operations: list[Operation]
) -> dict[uuid.UUID, dict[str, Any] | DomainError]:
    return {operation.id: _run_unless_poisoned(session, operation) for operation in operations}


def _refuse(session: Session, operation: Operation) -> dict[str, Any]:
    raise DomainError("NOT_TODAY", "Refused", 409)


def _lose_the_connection(session: Session, operation: Operation) -> dict[str, Any]:
    raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))


ALONE = OperationKind(name="test_poison.alone", handler=_run_unless_poisoned)
LANE = OperationKind(
    name="test_poison.lane",
    batch_handler=_run_batch_unless_poisoned,
    partition=lambda payload: "the-lane",
)


def _lose_the_batch_connection(
    session: Session, operations: list[Operation]
) -> dict[uuid.UUID, dict[str, Any] | DomainError]:
    raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))


REFUSED = OperationKind(name="test_poison.refused", handler=_refuse)
FLAKY_CONNECTION = OperationKind(name="test_poison.flaky", handler=_lose_the_connection)
FLAKY_LANE = OperationKind(
    name="test_poison.flaky_lane",
    batch_handler=_lose_the_batch_connection,
    partition=lambda payload: "the-lane",
)


@pytest.fixture(autouse=True, scope="module")
def operation_kinds() -> Iterator[None]:
    with registered_kinds(ALONE, LANE, REFUSED, FLAKY_CONNECTION, FLAKY_LANE):
        yield


def submit(connection_of: Session, kind: OperationKind, **payload: Any) -> Submission:
    return submit_operation(
        connection_of.connection(),
        tenant_id=TENANT_ID,
        env="live",
        kind=kind.name,
        payload={"n": 1, **payload},
        idempotency_key=None,
    )


def fail(session: Session, operation_id: uuid.UUID, times: int) -> None:
    for _ in range(times):
        record_failed_run(session, operation_id, Poisoned("boom"), MAX_ATTEMPTS)


# The core: counting failed runs, setting aside, listing, requeueing


def test_a_failed_run_below_the_limit_is_counted_and_left_queued_for_a_later_run(
    db_session: Session,
) -> None:
    operation_id = submit(db_session, ALONE).operation.id
    before = utcnow()

    failed = record_failed_run(db_session, operation_id, Poisoned("boom"), MAX_ATTEMPTS)

    assert failed is not None and not failed.set_aside and failed.failures == 1
    operation = db_session.get_one(Operation, operation_id)
    assert operation.status == OperationStatus.QUEUED.value
    assert operation.attempts == 1
    assert operation.error == {FAILURE_DIAGNOSIS: failed.operation.error[FAILURE_DIAGNOSIS]}
    assert operation.error[FAILURE_DIAGNOSIS]["last"] == "Poisoned: boom"
    # Stamped as just published: the sweeper runs it again after the stall timeout.
    assert operation.enqueued_at >= before


def test_the_last_allowed_failed_run_marks_it_failed_and_its_answer_hides_the_diagnosis(
    db_session: Session,
) -> None:
    operation_id = submit(db_session, ALONE).operation.id

    fail(db_session, operation_id, MAX_ATTEMPTS)

    operation = db_session.get_one(Operation, operation_id)
    assert operation.status == OperationStatus.FAILED.value
    assert operation.finished_at is not None
    assert operation.error[FAILURE_DIAGNOSIS]["count"] == MAX_ATTEMPTS
    status, body = operation_answer(operation)
    assert status == 500
    assert set(body) == {"code", "type", "detail", "status"}
    assert body["code"] == body["type"] == OPERATION_FAILED


def test_a_finished_operation_has_no_failed_run_to_count(db_session: Session) -> None:
    operation_id = submit(db_session, ALONE).operation.id
    fail(db_session, operation_id, MAX_ATTEMPTS)

    assert record_failed_run(db_session, operation_id, Poisoned("late"), MAX_ATTEMPTS) is None
    assert db_session.get_one(Operation, operation_id).attempts == MAX_ATTEMPTS


def _refused(session: Session) -> uuid.UUID:
    operation = submit(session, REFUSED).operation
    operation = session.get_one(Operation, operation.id)
    operation.status = OperationStatus.FAILED.value
    operation.error = DomainError("NOT_TODAY", "Refused", 409).as_body()
    session.flush()
    return operation.id


def test_failed_operations_lists_those_set_aside_and_not_a_rules_refusal(
    db_session: Session,
) -> None:
    set_aside = submit(db_session, ALONE).operation.id
    fail(db_session, set_aside, MAX_ATTEMPTS)
    still_queued = submit(db_session, ALONE).operation.id
    fail(db_session, still_queued, 1)
    refused = _refused(db_session)

    listed = {operation.id for operation in failed_operations(db_session, limit=10_000)}

    assert set_aside in listed
    assert still_queued not in listed and refused not in listed


def test_requeue_queues_a_set_aside_operation_with_its_failed_runs_forgotten(
    db_session: Session,
) -> None:
    operation_id = submit(db_session, ALONE).operation.id
    fail(db_session, operation_id, MAX_ATTEMPTS)

    requeue_failed_operation(db_session, operation_id)

    operation = db_session.get_one(Operation, operation_id)
    assert operation.status == OperationStatus.QUEUED.value
    assert (operation.error, operation.http_status, operation.finished_at) == (None, None, None)
    assert operation.attempts == MAX_ATTEMPTS  # the history stays
    failed = record_failed_run(db_session, operation_id, Poisoned("again"), MAX_ATTEMPTS)
    assert failed is not None and failed.failures == 1 and not failed.set_aside


def test_requeue_refuses_a_rules_refusal_and_an_unknown_operation(db_session: Session) -> None:
    with pytest.raises(DomainError) as refused:
        requeue_failed_operation(db_session, _refused(db_session))
    assert refused.value.code == "operation_not_retryable"
    with pytest.raises(DomainError) as unknown:
        requeue_failed_operation(db_session, uuid.uuid4())
    assert unknown.value.code == "operation_not_found"


def test_purge_keeps_set_aside_operations_past_retention_for_the_operator(
    db_session: Session,
) -> None:
    set_aside = submit(db_session, ALONE).operation.id
    fail(db_session, set_aside, MAX_ATTEMPTS)
    refused = _refused(db_session)
    for operation_id in (set_aside, refused):
        db_session.get_one(Operation, operation_id).finished_at = utcnow() - timedelta(days=2)
    db_session.flush()

    purge_expired_idempotency_records(db_session, timedelta(hours=24))

    remaining = set(
        db_session.scalars(select(Operation.id).where(Operation.id.in_([set_aside, refused])))
    )
    assert remaining == {set_aside}


# The tasks, run here as a worker runs them


class Tasks:
    """The operation tasks on a Celery app whose broker queue no worker reads."""

    def __init__(
        self, session_factory: sessionmaker[Session], celery: Celery, client: redis.Redis
    ) -> None:
        self.session_factory = session_factory
        self.celery = celery
        self.client = client
        self.prefix: str = celery.conf.rewards_settings.redis_key_prefix

    def record(self, kind: OperationKind, **payload: Any) -> Operation:
        """What the web does: commit the write, then publish it."""
        with self.session_factory.begin() as session:
            operation = submit(session, kind, **payload).operation
        publish_accepted(self.celery, self.client, self.prefix, [operation])
        return operation

    def run_queued(self) -> None:
        """Take the next task off the queue and run it here, as a worker would."""
        message = self.client.rpop(f"{self.prefix}celery:{QUEUE_OPERATIONS}")
        assert message is not None, "no task was queued"
        envelope = json.loads(message)  # kombu's Redis message; the body is Celery's
        args, _, _ = json.loads(base64.b64decode(envelope["body"]))
        self.celery.tasks[envelope["headers"]["task"]].apply(args=args).get()

    def queued_tasks(self) -> int:
        return int(self.client.llen(f"{self.prefix}celery:{QUEUE_OPERATIONS}"))

    def rows(self, operations: list[Operation]) -> list[Operation]:
        with self.session_factory() as session:
            found = {
                row.id: row
                for row in session.scalars(
                    select(Operation).where(Operation.id.in_([op.id for op in operations]))
                )
            }
        return [found[operation.id] for operation in operations]

    def statuses(self, operations: list[Operation]) -> list[str]:
        return [row.status for row in self.rows(operations)]


@pytest.fixture
def tasks(settings: Settings, session_factory: sessionmaker[Session]) -> Iterator[Tasks]:
    prefix = f"rewards-test-poison-{uuid.uuid4().hex[:8]}:"
    celery = create_celery(
        settings.model_copy(
            update={"redis_key_prefix": prefix, "operation_max_attempts": MAX_ATTEMPTS}
        )
    )
    client = redis.Redis.from_url(settings.require_redis_url())
    previous_app = current_app._get_current_object()
    celery.set_current()  # the tasks read their settings from the current app
    workers.runtime.reset_runtime()
    yield Tasks(session_factory, celery, client)
    previous_app.set_current()
    workers.runtime.reset_runtime()
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()
    celery.close()


SUCCEEDED, FAILED, QUEUED = (
    OperationStatus.SUCCEEDED.value,
    OperationStatus.FAILED.value,
    OperationStatus.QUEUED.value,
)


def test_a_poisoned_write_holds_its_lane_for_at_most_its_attempts_and_the_rest_run_in_order(
    tasks: Tasks,
) -> None:
    before = tasks.record(LANE, n=1)
    poisoned = tasks.record(LANE, n=2, poison=True)
    after = tasks.record(LANE, n=3)
    assert tasks.queued_tasks() == 1  # one drain for the lane

    tasks.run_queued()

    # The batch failed; run one by one, the write before the poisoned one was applied and
    # the one after it waits, so the lane keeps its order.
    assert tasks.statuses([before, poisoned, after]) == [SUCCEEDED, QUEUED, QUEUED]
    assert tasks.rows([poisoned])[0].error[FAILURE_DIAGNOSIS]["count"] == 1
    # The drain freed the lane's key: the next write wakes a drain at once.
    assert not tasks.client.exists(drain_key(tasks.prefix, str(poisoned.partition_key)))

    latest = tasks.record(LANE, n=4)
    assert tasks.queued_tasks() == 1
    tasks.run_queued()

    assert tasks.statuses([poisoned, after, latest]) == [FAILED, SUCCEEDED, SUCCEEDED]
    row = tasks.rows([poisoned])[0]
    assert row.error["code"] == OPERATION_FAILED and row.attempts == MAX_ATTEMPTS
    assert tasks.queued_tasks() == 0


def test_an_operation_run_alone_that_keeps_failing_is_set_aside_after_its_attempts(
    tasks: Tasks,
) -> None:
    poisoned = tasks.record(ALONE, poison=True)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert tasks.statuses([poisoned]) == [QUEUED], attempt
        # The sweeper's republish, as the worker gets it.
        publish_accepted(tasks.celery, tasks.client, tasks.prefix, tasks.rows([poisoned]))
        tasks.run_queued()
        tasks.client.delete(f"{tasks.prefix}celery:{QUEUE_OPERATIONS}")

    assert tasks.statuses([poisoned]) == [FAILED]


def test_a_lost_connection_is_retried_and_never_counted_against_the_operation(
    tasks: Tasks,
) -> None:
    flaky = tasks.record(FLAKY_CONNECTION)

    result = tasks.celery.tasks[TASK_EXECUTE_OPERATION].apply(args=[str(flaky.id)])

    assert isinstance(result.result, OperationalError)  # retried, then given up
    [row] = tasks.rows([flaky])
    assert (row.status, row.attempts, row.error) == (QUEUED, 0, None)


def test_a_drain_whose_batch_keeps_failing_on_a_lost_connection_counts_nothing(
    tasks: Tasks,
) -> None:
    flaky = tasks.record(FLAKY_LANE)

    result = tasks.celery.tasks[TASK_DRAIN_PARTITION].apply(args=[flaky.partition_key])

    assert isinstance(result.result, OperationalError)
    [row] = tasks.rows([flaky])
    assert (row.status, row.attempts, row.error) == (QUEUED, 0, None)


# Through the API and the operator's command


def test_polling_a_set_aside_operation_answers_200_with_its_error_never_a_500(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as session:
        operation = submit_operation(
            session.connection(),
            tenant_id=tenant.tenant_id,
            env="live",
            kind=ALONE.name,
            payload={"poison": True},
            idempotency_key=None,
        ).operation
        record_failed_run(session, operation.id, Poisoned("secret detail"), max_attempts=1)

    response = client.get(f"{GAMIFY}/operations/{operation.id}", headers=tenant.participant())

    assert response.status_code == 200
    assert response.json["status"] == "failed"
    assert response.json["error"]["code"] == OPERATION_FAILED
    assert response.json["error"]["status"] == 500
    assert "secret detail" not in response.get_data(as_text=True)
    assert "Retry-After" not in response.headers


def test_a_write_an_earlier_version_recorded_is_set_aside_listed_and_retried_by_the_operator(
    worker: WorkerProcess,
    client: FlaskClient,
    tenant: TenantKeys,
    session_factory: sessionmaker[Session],
    service_env: dict[str, str],
) -> None:
    participant = f"poisoned-{uuid.uuid4().hex[:8]}"
    # An award without its amount: the points lane's handler cannot run it, every time.
    with session_factory.begin() as session:
        poisoned = submit_operation(
            session.connection(),
            tenant_id=tenant.tenant_id,
            env="live",
            kind=AWARD_KIND,
            payload={"participant_id": participant, "reason": None, "metadata": None},
            idempotency_key=None,
        ).operation
    answer = client.post(
        f"{GAMIFY}/points/award",
        json={"participant_id": participant, "amount": 7},
        headers={**tenant.participant(), "Prefer": "respond-async"},
    )
    assert answer.status_code == 202, answer.json
    later_award = answer.json["operation_id"]
    # The later award in the same lane is held until the poisoned one is set aside.
    wait_for_operation(client, tenant.participant(), later_award)
    view = wait_for_operation(client, tenant.participant(), str(poisoned.id))
    assert view["status"] == "failed" and view["error"]["code"] == OPERATION_FAILED
    balance = client.get(
        f"{GAMIFY}/participants/{participant}/points", headers=tenant.participant()
    ).json
    assert balance["balance"] == 7

    listing = rewards(service_env, "operations", "failed", "--limit", "10000")
    assert listing.returncode == 0, listing.stderr
    listed = {line["operation_id"]: line for line in map(json.loads, listing.stdout.splitlines())}
    entry = listed[str(poisoned.id)]
    assert entry["kind"] == AWARD_KIND
    assert entry["attempts"] == int(service_env["OPERATION_MAX_ATTEMPTS"])
    assert entry["error"][FAILURE_DIAGNOSIS]["last"].startswith("KeyError")

    retried = rewards_json(service_env, "operations", "retry", str(poisoned.id))
    assert retried == {"operation_id": str(poisoned.id), "status": "queued", "published": True}

    # Still poisoned: run again as many times, then set aside again.
    def attempts() -> int:
        with session_factory() as session:
            return int(session.get_one(Operation, poisoned.id).attempts)

    wait_for(attempts, lambda n: n == 2 * int(service_env["OPERATION_MAX_ATTEMPTS"]), 30, "runs")
    assert wait_for_operation(client, tenant.participant(), str(poisoned.id))["status"] == "failed"
    assert rewards(service_env, "operations", "retry", str(uuid.uuid4())).returncode == 1
