"""Publishing accepted operations to the broker (after their row is committed).

Operations of a partitioned kind (claims of one reward) are not published one by one: a
single "drain this partition" task is queued, coalesced on the partition's drain key, and
the worker that runs it executes every queued operation of the partition in batches.

The drain key says whether a drain is queued or running, and whether a write was
committed since the running drain last read the queue:
- a write, after its commit, marks the key `dirty` if it exists, and otherwise takes it
  (SET NX) and queues a drain;
- a drain marks the key `clean` (`DrainKey.hold`) before each read of the queue;
- a drain that read fewer operations than a batch holds ends only if the key is still
  `clean` (`DrainKey.end`, one atomic compare-and-delete); otherwise it reads again.
Why no write can be missed: a write's mark comes after its commit. If the mark came
before the drain's last `hold`, the commit came before that read, which found it. If it
came between that `hold` and `end`, the key is dirty and the drain reads again. If it
came after `end`, the key was gone and the write queued a fresh drain. So a drain that
ran out of work ends with no trailing empty read of the database, and a busy partition
costs one task, not one per batch.

A kind that drains side by side (app/operation_kinds.py::OperationKind) frees the key as its
drain starts and ends at a batch that is not full: the next write wakes another drain to
run alongside. A lost drain only costs latency: the key expires and the sweeper
republishes operations that stay queued.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import suppress

import redis
from celery import Celery

from app.models import Operation, OperationStatus
from workers.celery_app import QUEUE_OPERATIONS, TASK_DRAIN_PARTITION, TASK_EXECUTE_OPERATION

log = logging.getLogger(__name__)

# How long a drain key outlives its last taking: a drain queued longer than this (a deep
# backlog) no longer blocks the next one, and a drain killed mid-run blocks its partition's
# wakes no longer than this (the sweeper then republishes what it left queued). A running
# drain takes it afresh at its start and at each handover, DRAIN_TIME_BUDGET_SECONDS apart.
DRAIN_KEY_TTL_MS = 5_000


def drain_key(prefix: str, partition_key: str) -> str:
    return f"{prefix}drain:{partition_key}"


_CLEAN = "clean"
_DIRTY = "dirty"
# Deletes the key unless a write marked it since the drain's last read (an expired key
# counts as ended: the next write takes it and queues a drain).
_END_IF_CLEAN = """
local marked = redis.call('GET', KEYS[1])
if marked == ARGV[1] then return 0 end
if marked then redis.call('DEL', KEYS[1]) end
return 1
"""


class DrainKey:
    """A drain's hold on its partition's drain key (see the module docstring)."""

    def __init__(self, redis_client: redis.Redis, prefix: str, partition_key: str) -> None:
        self._redis = redis_client
        self._key = drain_key(prefix, partition_key)

    def hold(self) -> None:
        """Before a read of the queue: hold the key afresh, marked clean, whoever took it
        (the running drain is the one it stands for)."""
        self._redis.set(self._key, _CLEAN, px=DRAIN_KEY_TTL_MS)

    def end(self) -> bool:
        """After a read that did not fill a batch: free the key and end, unless a write
        was committed since that read began (then False: read again)."""
        return bool(self._redis.register_script(_END_IF_CLEAN)(keys=[self._key], args=[_DIRTY]))

    def release(self) -> None:
        """Free the key outright: the next write queues a drain."""
        self._redis.delete(self._key)


def mark_written(pipe: redis.client.Pipeline, key: str) -> None:
    """Queue a write's wake on `pipe`: its second answer says whether it took the key."""
    pipe.set(key, _DIRTY, xx=True, keepttl=True)
    pipe.set(key, _DIRTY, nx=True, px=DRAIN_KEY_TTL_MS)


def publish_operation(celery: Celery, operation: Operation) -> None:
    """Queue one operation on its own (unpartitioned kinds, long jobs' next steps)."""
    celery.send_task(
        TASK_EXECUTE_OPERATION,
        args=[str(operation.id)],
        queue=QUEUE_OPERATIONS,
        retry=False,  # the caller decides; a lost publish is covered by the sweeper
    )


def publish_drain(celery: Celery, partition_key: str) -> None:
    celery.send_task(
        TASK_DRAIN_PARTITION, args=[partition_key], queue=QUEUE_OPERATIONS, retry=False
    )


def publish_accepted(
    celery: Celery, redis_client: redis.Redis, prefix: str, operations: Sequence[Operation]
) -> None:
    """Get accepted operations executed: each partition drained (one wake for all of its
    operations here), the others queued alone. Every publish is tried; the first failure is
    raised after, and what it lost is the sweeper's to republish."""
    failures: list[Exception] = []
    partitions: dict[str, None] = {}  # insertion-ordered set
    for operation in operations:
        if operation.partition_key is None or operation.status != OperationStatus.QUEUED.value:
            try:
                publish_operation(celery, operation)
            except Exception as exc:
                failures.append(exc)
        else:
            partitions[operation.partition_key] = None
    if partitions:
        try:
            _wake_drains(celery, redis_client, prefix, list(partitions), failures)
        except Exception as exc:  # the pipeline itself: no drain was queued
            failures.append(exc)
    if failures:
        raise failures[0]


def _wake_drains(
    celery: Celery,
    redis_client: redis.Redis,
    prefix: str,
    partition_keys: list[str],
    failures: list[Exception],
) -> None:
    """Queue a drain for each partition whose key this call takes; a failed publish goes
    to `failures`, and the others are still tried."""
    pipe = redis_client.pipeline(transaction=False)
    for partition_key in partition_keys:
        mark_written(pipe, drain_key(prefix, partition_key))
    taken_answers = pipe.execute()[1::2]
    for partition_key, taken in zip(partition_keys, taken_answers, strict=True):
        if not taken:
            continue  # a drain is already queued and has not read the queue yet
        try:
            publish_drain(celery, partition_key)
        except Exception as exc:
            # No drain was queued: free the key, or every publish of the partition (the
            # sweeper's included) is skipped until it expires, and a web process whose
            # broker is down takes it again on its next write.
            with suppress(redis.RedisError):
                DrainKey(redis_client, prefix, partition_key).release()
            failures.append(exc)
