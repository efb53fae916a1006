"""Group commit: concurrent writes share one round trip, and each still gets its own answer.

The recording tests commit (autocommit, as the web process does) under a tenant id of
their own, so they never see other tests' rows.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import DataError

from app.errors import DomainError
from app.infra.group_commit import GroupCommit
from app.infra.rate_limit import Limit, RateLimiter
from app.models import Operation
from app.operations import Submission, Write, submit_operations
from app.points.kinds import AWARD_KIND
from tests.builders import wait_until


class _GatedFlush:
    """A flush that holds its first call until released, so later callers pile up."""

    def __init__(self) -> None:
        self.first_started = threading.Event()
        self.release = threading.Event()
        self.groups: list[list[int]] = []

    def __call__(self, items: list[int]) -> list[int | Exception]:
        self.groups.append(list(items))
        if len(self.groups) == 1:
            self.first_started.set()
            self.release.wait(10)
        return [ValueError(f"odd {item}") if item % 2 else item * 10 for item in items]


def _submit_in_background(combiner: GroupCommit[int, int], item: int) -> dict[str, Any]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["answer"] = combiner.submit(item)
        except Exception as exc:
            outcome["error"] = exc

    outcome["thread"] = threading.Thread(target=run)
    outcome["thread"].start()
    return outcome


def test_callers_arriving_during_a_flush_share_the_next_one_and_each_gets_its_own_answer() -> None:
    flush = _GatedFlush()
    combiner: GroupCommit[int, int] = GroupCommit(flush, max_group=64)
    first = _submit_in_background(combiner, 0)
    assert flush.first_started.wait(5)
    waiting = [_submit_in_background(combiner, item) for item in range(1, 9)]
    wait_until(lambda: combiner.queued >= 8, 5, "8 callers to queue up", interval=0.01)
    flush.release.set()
    for outcome in [first, *waiting]:
        outcome["thread"].join(5)

    assert flush.groups == [[0], [1, 2, 3, 4, 5, 6, 7, 8]]
    assert first["answer"] == 0
    for item, outcome in enumerate(waiting, start=1):
        if item % 2:
            assert str(outcome["error"]) == f"odd {item}"  # raised to its own caller only
        else:
            assert outcome["answer"] == item * 10


def test_a_group_is_cut_at_max_group_and_the_rest_flush_next() -> None:
    flush = _GatedFlush()
    combiner: GroupCommit[int, int] = GroupCommit(flush, max_group=3)
    first = _submit_in_background(combiner, 0)
    assert flush.first_started.wait(5)
    waiting = [_submit_in_background(combiner, item) for item in (2, 4, 6, 8, 10)]
    wait_until(lambda: combiner.queued >= 5, 5, "5 callers to queue up", interval=0.01)
    flush.release.set()
    for outcome in [first, *waiting]:
        outcome["thread"].join(5)

    assert flush.groups == [[0], [2, 4, 6], [8, 10]]
    assert [outcome["answer"] for outcome in waiting] == [20, 40, 60, 80, 100]


def test_a_failed_flush_fails_its_group_and_the_next_callers_are_served() -> None:
    calls = 0

    def flaky(items: list[int]) -> list[int | Exception]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database unreachable")
        return items

    combiner: GroupCommit[int, int] = GroupCommit(flaky, max_group=8)
    with pytest.raises(ConnectionError, match="database unreachable"):
        combiner.submit(1)
    assert combiner.submit(2) == 2


def _write(tenant_id: uuid.UUID, key: str | None, n: int = 1, env: str = "live") -> Write:
    award = {"participant_id": "ann", "amount": n, "reason": None, "metadata": None}
    return Write(tenant_id, env, AWARD_KIND, award, key)


@pytest.fixture
def tenant_id(engine: Engine) -> Iterator[uuid.UUID]:
    """A tenant id of the test's own; its recorded operations are deleted afterwards, before
    any worker's sweeper takes them for stalled."""
    tenant_id = uuid.uuid4()
    yield tenant_id
    with engine.begin() as connection:
        connection.execute(delete(Operation).where(Operation.tenant_id == tenant_id))


def _operations_of(engine: Engine, tenant_id: uuid.UUID) -> int:
    with engine.connect() as connection:
        return connection.scalar(
            select(func.count()).select_from(Operation).where(Operation.tenant_id == tenant_id)
        )


def test_one_insert_records_a_group_with_replays_and_key_reuse_answered_per_write(
    engine: Engine, tenant_id: uuid.UUID
) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        first, replay, reused, keyless = submit_operations(
            connection,
            [
                _write(tenant_id, "k-1"),
                _write(tenant_id, "k-1"),  # the same request retried: a replay
                _write(tenant_id, "k-1", n=2),  # the key with another request
                _write(tenant_id, None),
            ],
        )
    assert isinstance(first, Submission) and first.created
    assert isinstance(replay, Submission) and not replay.created
    assert replay.operation.id == first.operation.id
    assert isinstance(reused, DomainError) and reused.code == "IDEMPOTENCY_KEY_REUSED"
    assert isinstance(keyless, Submission) and keyless.created
    assert _operations_of(engine, tenant_id) == 2


def test_a_write_the_database_refuses_fails_alone_and_its_group_is_recorded(
    engine: Engine, tenant_id: uuid.UUID
) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        answers = submit_operations(
            connection,
            [
                _write(tenant_id, "a"),
                _write(tenant_id, "b", env="far-too-long-an-env"),  # varchar(8)
                _write(tenant_id, "c"),
            ],
        )
    assert isinstance(answers[0], Submission) and answers[0].created
    assert isinstance(answers[1], DataError)
    assert isinstance(answers[2], Submission) and answers[2].created
    assert _operations_of(engine, tenant_id) == 2


def test_concurrent_decisions_for_one_subject_admit_exactly_the_burst(redis_url: str) -> None:
    import redis

    limiter = RateLimiter(redis.Redis.from_url(redis_url), f"test-group-{uuid.uuid4()}:")
    limit = Limit(rate=0.001, burst=25)  # no refill within the test
    with ThreadPoolExecutor(max_workers=32) as pool:
        decisions = list(pool.map(lambda _: limiter.take("one", limit), range(200)))
    assert sum(1 for decision in decisions if decision and decision.allowed) == 25
    assert sorted(d.remaining for d in decisions if d and d.allowed) == list(range(25))
