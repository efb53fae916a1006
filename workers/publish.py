"""Publishing accepted operations to the broker (after their row is committed): each
partition's drain woken through its drain key (app/infra/drain_key.py says why no write
can be missed), other operations queued alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import suppress

import redis
from celery import Celery

from app.infra.drain_key import DrainKey, drain_key
from app.models import Operation, OperationStatus
from workers.celery_app import QUEUE_OPERATIONS, TASK_DRAIN_PARTITION, TASK_EXECUTE_OPERATION

log = logging.getLogger(__name__)


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
        DrainKey.mark_written(pipe, drain_key(prefix, partition_key))
    taken_answers = pipe.execute()[1 :: DrainKey.MARK_ANSWERS]
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
