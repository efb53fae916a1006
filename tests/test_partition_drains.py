"""One drain task per busy partition: it keeps the partition's drain key while writes keep
coming, so writes recorded meanwhile queue nothing and are run by that drain; once a read
finds no write committed since, the drain ends and the next write queues a fresh drain.
Award batches of one tenant drain side by side instead: each drain frees the key as it
starts.

The drain task runs in this process, against the real PostgreSQL and Redis, on a Celery
app with a prefix of its own that no worker consumes: its queue shows what was published.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from celery import Celery, current_app
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import workers.runtime
import workers.tasks
from app.config import Settings
from app.infra.drain_key import DrainKey, drain_key
from app.models import Operation, OperationStatus
from app.operation_kinds import get_kind
from app.operation_runs import OperationsRun
from app.operations import submit_operation
from app.points.items import batch_entries
from app.points.kinds import AWARD_BATCH_KIND, AWARD_KIND, DEDUCT_KIND
from app.tenancy import create_tenant
from workers.celery_app import QUEUE_OPERATIONS, TASK_DRAIN_PARTITION, create_celery
from workers.publish import publish_accepted

AWARD = {"participant_id": "ann", "amount": 1, "reason": None, "metadata": None}
AWARD_BATCH = {"awards": batch_entries([{"participant_id": "ann", "amount": 1}])}


class Partition:
    """One partition of a kind (a participant's awards by default), and the broker queue
    its drains land in."""

    def __init__(
        self, session_factory: sessionmaker[Session], celery: Celery, client: redis.Redis
    ) -> None:
        self.session_factory = session_factory
        self.celery = celery
        self.client = client
        self._prefix: str = celery.conf.rewards_settings.redis_key_prefix
        with session_factory.begin() as session:
            self._tenant_id = create_tenant(session, "drains").id
        self.key = ""
        self.kind, self.payload = AWARD_KIND, AWARD

    def record_write(self) -> Operation:
        """What the web does for one write: commit its row, then wake a drain."""
        with self.session_factory.begin() as session:
            operation = submit_operation(
                session.connection(),
                tenant_id=self._tenant_id,
                env="live",
                kind=self.kind,
                payload=self.payload,
                idempotency_key=None,
            ).operation
        self.key = str(operation.partition_key)
        publish_accepted(self.celery, self.client, self._prefix, [operation])
        return operation

    def queued_drains(self) -> int:
        return int(self.client.llen(f"{self._prefix}celery:{QUEUE_OPERATIONS}"))

    def run_queued_drain(self) -> None:
        """Take the drain task off the queue and run it here, as a worker would."""
        assert self.client.rpop(f"{self._prefix}celery:{QUEUE_OPERATIONS}") is not None
        self.celery.tasks[TASK_DRAIN_PARTITION].apply(args=[self.key]).get()

    def key_taken(self) -> bool:
        return bool(self.client.exists(drain_key(self._prefix, self.key)))

    def statuses(self, operations: list[Operation]) -> list[str]:
        with self.session_factory() as session:
            found = dict(
                session.execute(
                    select(Operation.id, Operation.status).where(
                        Operation.id.in_([operation.id for operation in operations])
                    )
                ).all()
            )
        return [found[operation.id] for operation in operations]


@pytest.fixture
def partition(
    settings: Settings, session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Partition]:
    prefix = f"rewards-test-drains-{uuid.uuid4().hex[:8]}:"
    celery = create_celery(settings.model_copy(update={"redis_key_prefix": prefix}))
    client = redis.Redis.from_url(settings.require_redis_url())
    previous_app = current_app._get_current_object()
    celery.set_current()  # the task reads its settings from the current app
    workers.runtime.reset_runtime()  # built from this app's settings
    yield Partition(session_factory, celery, client)
    previous_app.set_current()
    workers.runtime.reset_runtime()
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()
    celery.close()


def during_each_batch(monkeypatch: pytest.MonkeyPatch, action: Callable[[int], None]) -> list[int]:
    """Call `action(batch number)` inside each of the drain's batch transactions; returns
    how many operations each batch ran."""
    sizes: list[int] = []
    real_drain = workers.tasks.drain_partition

    def drain(session: Session, key: str, limit: int) -> OperationsRun:
        run = real_drain(session, key, limit)
        sizes.append(len(run.finished))
        action(len(sizes))
        return run

    monkeypatch.setattr(workers.tasks, "drain_partition", drain)
    return sizes


def test_writes_recorded_while_a_drain_runs_queue_nothing_and_that_drain_runs_them(
    partition: Partition, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = partition.record_write()
    assert partition.queued_drains() == 1 and partition.key_taken()
    arriving: list[Operation] = []

    def write_during_the_first_two_batches(batch: int) -> None:
        if batch <= 2:
            arriving.append(partition.record_write())
            assert partition.queued_drains() == 0  # the running drain holds the key

    sizes = during_each_batch(monkeypatch, write_during_the_first_two_batches)
    partition.run_queued_drain()

    # Each batch ran what was queued when it read; the last one found the key clean.
    assert sizes == [1, 1, 1]
    assert partition.statuses([first, *arriving]) == [OperationStatus.SUCCEEDED.value] * 3
    assert partition.queued_drains() == 0
    assert not partition.key_taken()


def test_a_drain_that_ran_out_of_work_ends_without_reading_the_queue_again(
    partition: Partition, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = partition.record_write()
    sizes = during_each_batch(monkeypatch, lambda batch: None)

    partition.run_queued_drain()

    assert sizes == [1]  # no trailing empty read
    assert partition.statuses([first]) == [OperationStatus.SUCCEEDED.value]
    assert not partition.key_taken()


def test_a_write_committed_between_the_read_and_the_end_is_run_by_that_drain(
    partition: Partition, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = partition.record_write()
    late: list[Operation] = []
    real_end = DrainKey.end

    def write_just_before_ending(key: DrainKey) -> bool:
        if not late:
            late.append(partition.record_write())
            assert partition.queued_drains() == 0  # it found the key held and marked it
        return real_end(key)

    monkeypatch.setattr(DrainKey, "end", write_just_before_ending)
    sizes = during_each_batch(monkeypatch, lambda batch: None)
    partition.run_queued_drain()

    assert sizes == [1, 1]  # the mark made the drain read again
    assert partition.statuses([first, *late]) == [OperationStatus.SUCCEEDED.value] * 2
    assert partition.queued_drains() == 0
    assert not partition.key_taken()


def test_a_write_that_arrives_while_the_drain_waits_for_one_is_run_by_that_drain(
    partition: Partition, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = partition.record_write()
    next_writes: list[Operation] = []
    nudged: list[bool] = []
    real_wait = DrainKey.await_write

    def client_writes_again(key: DrainKey, seconds: float, *, unless_queued: str) -> bool:
        if not next_writes:
            next_writes.append(partition.record_write())  # the client's next request
        nudged.append(real_wait(key, seconds, unless_queued=unless_queued))
        return nudged[-1]

    monkeypatch.setattr(DrainKey, "await_write", client_writes_again)
    sizes = during_each_batch(monkeypatch, lambda batch: None)
    partition.run_queued_drain()

    assert nudged == [True, False]  # woken by the write; then nothing came
    assert sizes == [1, 1]  # the same task ran both
    assert partition.statuses([first, *next_writes]) == [OperationStatus.SUCCEEDED.value] * 2
    assert partition.queued_drains() == 0
    assert not partition.key_taken()


def test_a_drain_does_not_wait_for_writes_while_another_task_waits_for_its_process(
    partition: Partition, monkeypatch: pytest.MonkeyPatch
) -> None:
    partition.record_write()
    other = Partition(partition.session_factory, partition.celery, partition.client)
    other.record_write()  # another tenant's drain, queued behind this one
    assert partition.queued_drains() == 2
    waits: list[object] = []
    monkeypatch.setattr(redis.Redis, "blpop", lambda *args, **kwargs: waits.append(args))

    partition.run_queued_drain()

    assert waits == []  # ended at once, leaving its process to the queued task
    assert not partition.key_taken() and other.key_taken()


def test_a_write_after_the_drain_ended_queues_a_fresh_drain(partition: Partition) -> None:
    partition.record_write()
    partition.run_queued_drain()
    assert not partition.key_taken()

    later = partition.record_write()

    assert partition.queued_drains() == 1 and partition.key_taken()
    partition.run_queued_drain()
    assert partition.statuses([later]) == [OperationStatus.SUCCEEDED.value]


def test_awards_and_deductions_of_many_participants_share_one_drain_in_accepted_order(
    partition: Partition, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = [
        (AWARD_KIND, {**AWARD, "amount": 5}),
        (DEDUCT_KIND, {**AWARD, "amount": 3}),
        (DEDUCT_KIND, {**AWARD, "amount": 3}),  # 2 left: refused
    ]
    # Other participants of the same lane (see BALANCE_LANES) ride along.
    lane = get_kind(AWARD_KIND).partition(AWARD)
    others = [
        f"p{n}"
        for n in range(40)
        if get_kind(AWARD_KIND).partition({"participant_id": f"p{n}"}) == lane
    ]
    writes += [(AWARD_KIND, {**AWARD, "participant_id": other}) for other in others[:5]]
    recorded = []
    for kind, payload in writes:
        partition.kind, partition.payload = kind, payload
        recorded.append(partition.record_write())
    assert partition.queued_drains() == 1  # every write after the first found the key taken
    sizes = during_each_batch(monkeypatch, lambda batch: None)

    partition.run_queued_drain()

    assert sizes == [len(writes)]
    assert partition.statuses(recorded) == [
        OperationStatus.SUCCEEDED.value,
        OperationStatus.SUCCEEDED.value,
        OperationStatus.FAILED.value,
        *[OperationStatus.SUCCEEDED.value] * 5,
    ]


def test_a_drain_past_its_time_budget_hands_the_rest_to_one_fresh_drain_and_keeps_the_key(
    partition: Partition, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers.tasks, "DRAIN_TIME_BUDGET_SECONDS", 0.0)
    partition.record_write()
    arriving: list[Operation] = []
    sizes = during_each_batch(monkeypatch, lambda batch: arriving.append(partition.record_write()))

    partition.run_queued_drain()

    assert sizes == [1]
    assert partition.queued_drains() == 1 and partition.key_taken()
    assert partition.statuses(arriving) == [OperationStatus.QUEUED.value]


def test_award_batches_drain_side_by_side_each_drain_freeing_the_key_as_it_starts(
    partition: Partition, monkeypatch: pytest.MonkeyPatch
) -> None:
    partition.kind, partition.payload = AWARD_BATCH_KIND, AWARD_BATCH
    first = partition.record_write()
    arriving: list[Operation] = []

    def write_during_the_first_batch(batch: int) -> None:
        if batch == 1:
            arriving.append(partition.record_write())

    sizes = during_each_batch(monkeypatch, write_during_the_first_batch)
    partition.run_queued_drain()

    # The write found the key free and queued a drain of its own, to run on another
    # worker process; this drain stopped at its batch that was not full.
    assert sizes == [1]
    assert partition.queued_drains() == 1 and partition.key_taken()
    assert partition.statuses([first, *arriving]) == [
        OperationStatus.SUCCEEDED.value,
        OperationStatus.QUEUED.value,
    ]
    partition.run_queued_drain()
    assert partition.statuses(arriving) == [OperationStatus.SUCCEEDED.value]
