"""Wake the requests waiting for an operation to finish.

The database holds the answer; Redis carries a copy of it to the waiters, pushed after the
commit, so a sync request does not read it back. A worker publishes one message per
committed batch on one channel; each web process keeps one subscriber thread that hands
every answer to the requests of that process waiting for it. A request registers before
its write can reach a worker, so the answer cannot pass it by; a lost message (Redis
restarting, the subscriber reconnecting) costs a waiter its timeout, after which it reads
the database: never a wrong answer.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from app.infra.redis_client import RedisOutage

log = logging.getLogger(__name__)

# The subscriber's read blocks at most this long (< app.infra.redis_client.SOCKET_TIMEOUT_SECONDS),
# so a stalled Redis is noticed then rather than hanging the thread.
LISTEN_SLICE_SECONDS = 0.5
RESUBSCRIBE_PAUSE_SECONDS = 0.5
# How long the first waiter of a process lets its subscriber take to subscribe.
SUBSCRIBE_WAIT_SECONDS = 1.0


def _channel(prefix: str) -> str:
    return f"{prefix}op-done"


@dataclass(frozen=True)
class FinishedAnswer:
    """The committed answer of a finished operation, as its waiters will send it."""

    status: int
    body: dict[str, Any]


def signal_finished(
    client: redis.Redis,
    prefix: str,
    answers: Iterable[tuple[uuid.UUID, FinishedAnswer]],
) -> None:
    """Called after the commit: one message carries the whole batch's answers, so no
    waiter reads them back from the database; it still has them for every later replay."""
    # One line per answer, "<operation id>\t<answer JSON>" (JSON text holds no raw newline):
    # every web process reads every message, and finds the answers someone there waits for
    # without parsing the rest.
    message = "\n".join(
        f"{operation_id}\t{json.dumps([answer.status, answer.body], default=str)}"
        for operation_id, answer in answers
    )
    if message:
        client.publish(_channel(prefix), message)


class Waiter:
    """One request's wait for one operation's answer."""

    def __init__(self, listener: CompletionListener, operation_id: str) -> None:
        self._listener = listener
        self.operation_id = operation_id
        # Released once the answer is in (a held lock: the cheapest one-shot signal).
        self._answered = threading.Lock()
        self._answered.acquire()
        self._answer: FinishedAnswer | None = None

    def deliver(self, answer: FinishedAnswer) -> None:
        """Called at most once: the listener unregisters a waiter as it answers it."""
        self._answer = answer
        self._answered.release()

    def wait(self, timeout: float) -> FinishedAnswer | None:
        """The answer once it arrives; None after `timeout` seconds (read the database)."""
        # Without a subscriber (Redis down) no answer can come: do not hold the request.
        if self._answer is None and timeout > 0 and self._listener.listening:
            self._answered.acquire(timeout=timeout)
        return self._answer

    def cancel(self) -> None:
        self._listener.forget(self)


class CompletionListener:
    """A web process's subscriber to finished answers, and the requests waiting for them."""

    def __init__(self, client: redis.Redis, prefix: str, outage: RedisOutage | None = None) -> None:
        self._client = client
        self._outage = outage or RedisOutage()
        self._channel = _channel(prefix)
        self._lock = threading.Lock()
        self._waiting: dict[str, list[Waiter]] = {}
        self._subscribed = threading.Event()
        # Set once the subscriber's first attempt is over, subscribed or failed.
        self._first_attempt_over = threading.Event()
        self._closed = threading.Event()
        self._started_in_pid: int | None = None

    def expect(self, operation_id: uuid.UUID) -> Waiter:
        """Register before the operation can finish (before its workers are woken); cancel
        the waiter when done with it."""
        self._ensure_started()
        waiter = Waiter(self, str(operation_id))
        with self._lock:
            self._waiting.setdefault(waiter.operation_id, []).append(waiter)
        return waiter

    def forget(self, waiter: Waiter) -> None:
        with self._lock:
            waiters = self._waiting.get(waiter.operation_id)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiting[waiter.operation_id]

    @property
    def listening(self) -> bool:
        return self._subscribed.is_set() and not self._outage.suspected

    def _ensure_started(self) -> None:
        # Per process: a subscriber thread does not survive a fork (gunicorn forks workers).
        if self._started_in_pid != os.getpid():
            with self._lock:
                if self._started_in_pid != os.getpid():
                    self._subscribed.clear()
                    self._first_attempt_over.clear()
                    threading.Thread(
                        target=self._listen, name="completion-listener", daemon=True
                    ).start()
                    self._started_in_pid = os.getpid()
        # Every early caller, not just the first: a waiter that finds no subscriber yet
        # would not wait at all and answer 202 for a write about to finish.
        self._first_attempt_over.wait(SUBSCRIBE_WAIT_SECONDS)

    def close(self) -> None:
        """Stop the subscriber (within a listen slice); waiters left read the database."""
        self._closed.set()

    def _listen(self) -> None:
        while not self._closed.is_set():
            try:
                with self._client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    pubsub.subscribe(self._channel)
                    self._subscribed.set()
                    self._first_attempt_over.set()
                    while not self._closed.is_set():
                        message = pubsub.get_message(timeout=LISTEN_SLICE_SECONDS)
                        if message is not None:
                            self._deliver(message["data"])
            except Exception as exc:  # the thread must outlive any failure
                self._subscribed.clear()
                self._first_attempt_over.set()
                if self._closed.is_set():
                    return
                log.warning("completion subscriber lost Redis, resubscribing: %s", exc)
                time.sleep(RESUBSCRIBE_PAUSE_SECONDS)

    def _deliver(self, data: str | bytes) -> None:
        # A waiter registers before its write can reach a worker, so one this message
        # answers is registered by now: with nobody waiting there is nothing to look for.
        if not self._waiting:
            return
        text = data.decode() if isinstance(data, bytes) else data
        lines = [line.partition("\t") for line in text.split("\n")]
        with self._lock:
            woken = [
                (waiter, answer)
                for operation_id, _, answer in lines
                for waiter in self._waiting.pop(operation_id, ())
            ]
        for waiter, answer in woken:
            try:
                status, body = json.loads(answer)
            except (TypeError, ValueError):
                continue  # not an answer this version wrote: its waiter reads the database
            waiter.deliver(FinishedAnswer(int(status), dict(body)))
