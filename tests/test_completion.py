"""Finished answers reach the requests waiting for them, through one subscriber per process."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from app.completion import CompletionListener, FinishedAnswer, signal_finished


@pytest.fixture
def prefix() -> str:
    return f"test-completion-{uuid.uuid4()}:"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=1.0)
    yield client
    client.close()


@pytest.fixture
def listener(client: redis.Redis, prefix: str) -> Iterator[CompletionListener]:
    listener = CompletionListener(client, prefix)
    yield listener
    listener.close()


def test_a_waiter_registered_before_the_commit_gets_the_answer(
    client: redis.Redis, prefix: str, listener: CompletionListener
) -> None:
    operation_id = uuid.uuid4()
    waiter = listener.expect(operation_id)
    signal_finished(client, prefix, [(operation_id, FinishedAnswer(201, {"code": "C-1"}))])
    assert waiter.wait(5) == FinishedAnswer(201, {"code": "C-1"})


def test_every_waiter_of_an_operation_is_answered_and_no_other(
    client: redis.Redis, prefix: str, listener: CompletionListener
) -> None:
    claimed, other = uuid.uuid4(), uuid.uuid4()
    original, replay = listener.expect(claimed), listener.expect(claimed)
    bystander = listener.expect(other)
    signal_finished(
        client,
        prefix,
        [(claimed, FinishedAnswer(201, {"n": 1})), (uuid.uuid4(), FinishedAnswer(409, {}))],
    )
    assert original.wait(5) == replay.wait(5) == FinishedAnswer(201, {"n": 1})
    assert bystander.wait(0.3) is None  # then the request reads the database


def test_a_cancelled_waiter_is_forgotten(
    client: redis.Redis, prefix: str, listener: CompletionListener
) -> None:
    operation_id = uuid.uuid4()
    listener.expect(operation_id).cancel()
    signal_finished(client, prefix, [(operation_id, FinishedAnswer(200, {}))])
    time.sleep(0.2)
    assert listener._waiting == {}


def _subscriber_ids(client: redis.Redis) -> set[str]:
    return {str(entry["id"]) for entry in client.client_list(_type="pubsub")}


def test_the_subscriber_comes_back_after_redis_drops_its_connection(
    client: redis.Redis, prefix: str, listener: CompletionListener
) -> None:
    before = _subscriber_ids(client)
    listener.expect(uuid.uuid4()).cancel()  # starts and subscribes the listener
    ours = _subscriber_ids(client) - before
    assert ours
    for client_id in ours:
        client.client_kill_filter(_id=client_id)
    operation_id = uuid.uuid4()
    waiter = listener.expect(operation_id)
    deadline = time.monotonic() + 10
    answer = None
    while answer is None and time.monotonic() < deadline:
        # Answers published while it resubscribes are lost (their waiters read the
        # database): publish until one arrives.
        signal_finished(client, prefix, [(operation_id, FinishedAnswer(201, {"back": True}))])
        answer = waiter.wait(0.2)
    assert answer == FinishedAnswer(201, {"back": True})


def test_a_closed_listener_lets_go_of_its_subscription(
    client: redis.Redis, listener: CompletionListener
) -> None:
    before = _subscriber_ids(client)
    listener.expect(uuid.uuid4()).cancel()
    assert _subscriber_ids(client) - before
    listener.close()
    deadline = time.monotonic() + 5
    while _subscriber_ids(client) - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _subscriber_ids(client) - before
