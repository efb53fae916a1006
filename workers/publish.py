"""Publishing accepted operations to the broker (after their row is committed).

Operations of a partitioned kind (claims of one reward) are not published one by one: a
single "drain this partition" task is queued, coalesced with a short Redis SET NX, and the
worker that runs it executes every queued operation of the partition in batches. The
drain task deletes the key before it reads the queue, so an operation committed after that
read always finds the key free and queues a fresh drain. A lost drain only costs latency:
the sweeper republishes operations that stay queued.
"""

from __future__ import annotations

import logging
from contextlib import suppress

import redis
from celery import Celery

from app.models import Operation, OperationStatus
from workers.celery_app import QUEUE_OPERATIONS, TASK_DRAIN_PARTITION, TASK_EXECUTE_OPERATION

log = logging.getLogger(__name__)

# A drain queued longer than this (a deep backlog) no longer blocks the next one.
DRAIN_KEY_TTL_MS = 10_000


def drain_key(prefix: str, partition_key: str) -> str:
    return f"{prefix}drain:{partition_key}"


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
    celery: Celery, redis_client: redis.Redis, prefix: str, operation: Operation
) -> None:
    """Get an accepted operation executed: its partition drained, or it alone."""
    if operation.partition_key is None or operation.status != OperationStatus.QUEUED.value:
        publish_operation(celery, operation)
        return
    key = drain_key(prefix, operation.partition_key)
    if redis_client.set(key, "1", nx=True, px=DRAIN_KEY_TTL_MS):
        try:
            publish_drain(celery, operation.partition_key)
        except Exception:
            # No drain was queued: free the key, or every publish of the partition (the
            # sweeper's included) is skipped until it expires, and a web process whose
            # broker is down takes it again on its next write.
            with suppress(redis.RedisError):
                redis_client.delete(key)
            raise
