"""Wake the requests waiting for an operation to finish.

The database holds the answer; Redis carries a copy of it to the waiters, pushed after the
commit, so a sync request does not read it back.
A finished operation leaves a token in a short-lived list. A waiter pops it with BLPOP
and pushes it back, so any number of waiters (the original request and its concurrent
replays) each wake, and one that starts waiting late finds the token already there.
A lost token costs a waiter its timeout (it then reads the database), never a wrong answer.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

TOKEN_TTL_SECONDS = 120
WAIT_SLICE_SECONDS = 0.5  # < app.redis_client.SOCKET_TIMEOUT_SECONDS
MIN_WAIT_SLICE_SECONDS = 0.01


def _key(prefix: str, operation_id: uuid.UUID | str) -> str:
    return f"{prefix}op-done:{operation_id}"


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
    """Called after the commit. The token carries the answer, so a waiter need not read it
    back from the database; the database still has it for every later replay."""
    pipe = client.pipeline(transaction=False)
    for operation_id, answer in answers:
        key = _key(prefix, operation_id)
        pipe.rpush(key, json.dumps([answer.status, answer.body], default=str))
        pipe.expire(key, TOKEN_TTL_SECONDS)
    pipe.execute()


def wait_finished(
    client: redis.Redis, prefix: str, operation_id: uuid.UUID, timeout: float
) -> FinishedAnswer | None:
    """The operation's answer once its finished token is seen, None after `timeout` s."""
    key = _key(prefix, operation_id)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        # Redis reads a BLPOP timeout that rounds to 0 ms as "block forever".
        if remaining < MIN_WAIT_SLICE_SECONDS:
            return None
        # One BLPOP blocks at most a slice, well inside the client's socket timeout, so a
        # stalled Redis is noticed then rather than hanging the request.
        popped = client.blpop([key], timeout=min(remaining, WAIT_SLICE_SECONDS))
        if popped is not None:
            break
    token = popped[1]
    pipe = client.pipeline(transaction=False)
    pipe.rpush(key, token)  # for the next waiter (a concurrent replay)
    pipe.expire(key, TOKEN_TTL_SECONDS)
    pipe.execute()
    try:
        status, body = json.loads(token)
        return FinishedAnswer(int(status), dict(body))
    except (ValueError, TypeError):
        return None  # not a token this version wrote: the caller reads the database
