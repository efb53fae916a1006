"""Finished answers reach the requests waiting for them, through one subscriber per process."""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import redis

from app.infra.completion import CompletionListener, FinishedAnswer, signal_finished
from tests.builders import wait_for, wait_until


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
    cancelled, other = uuid.uuid4(), uuid.uuid4()
    forgotten = listener.expect(cancelled)
    forgotten.cancel()
    still_waiting = listener.expect(other)
    # One message answers both, the cancelled one first: once the other waiter has its
    # answer, the listener has handed out every answer of that message.
    signal_finished(
        client,
        prefix,
        [(cancelled, FinishedAnswer(200, {})), (other, FinishedAnswer(201, {}))],
    )
    assert still_waiting.wait(5) == FinishedAnswer(201, {})
    assert forgotten.wait(0) is None


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

    def publish_and_wait_a_little() -> FinishedAnswer | None:
        # Answers published while it resubscribes are lost (their waiters read the
        # database): publish until one arrives.
        signal_finished(client, prefix, [(operation_id, FinishedAnswer(201, {"back": True}))])
        return waiter.wait(0.2)

    answer = wait_for(
        publish_and_wait_a_little,
        lambda answer: answer is not None,
        10,
        "an answer through the resubscribed listener",
    )
    assert answer == FinishedAnswer(201, {"back": True})


def test_a_closed_listener_lets_go_of_its_subscription(
    client: redis.Redis, listener: CompletionListener
) -> None:
    before = _subscriber_ids(client)
    listener.expect(uuid.uuid4()).cancel()
    assert _subscriber_ids(client) - before
    listener.close()
    wait_until(
        lambda: not _subscriber_ids(client) - before,
        5,
        "the closed listener to let go of its subscription",
        interval=0.1,
    )


class _SlowRedis:
    """A TCP proxy to Redis that holds each new connection for `delay` s before passing it
    on: a subscriber that takes that long to subscribe, as on a loaded machine."""

    def __init__(self, redis_url: str, delay: float) -> None:
        parts = urlsplit(redis_url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._delay = delay
        self._sockets: list[socket.socket] = []
        self._closed = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self._sockets.append(client)
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        if self._closed.wait(self._delay):
            return
        upstream = socket.create_connection(self._upstream)
        self._sockets.append(upstream)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        for sock in self._sockets:
            sock.close()


def test_every_early_waiter_of_a_new_process_finds_the_subscriber_listening(
    client: redis.Redis, redis_url: str, prefix: str
) -> None:
    """Many requests arrive at once when a web process starts: none may find the
    subscriber not yet subscribed (it would not wait, and answer 202 for a claim about to
    succeed)."""
    proxy = _SlowRedis(redis_url, delay=0.3)
    slow_client = redis.Redis(
        host="127.0.0.1", port=proxy.port, decode_responses=True, socket_timeout=1.0
    )
    listener = CompletionListener(slow_client, prefix)
    barrier = threading.Barrier(8)

    def first_request() -> bool:
        barrier.wait()
        waiter = listener.expect(uuid.uuid4())
        listening = listener.listening
        waiter.cancel()
        return listening

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            assert all(pool.map(lambda _: first_request(), range(8)))
    finally:
        listener.close()
        # Seen from Redis itself: the subscriber has let go of its connection (its channel,
        # under this test's prefix, has no subscriber left).
        wait_until(
            lambda: not client.pubsub_channels(f"{prefix}*"),
            5,
            "the closed listener to let go of its connection",
        )
        slow_client.close()
        proxy.close()
