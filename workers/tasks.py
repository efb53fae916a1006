"""Celery tasks. Each receives ids, opens its own transaction, calls the core, commits."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import NoReturn

from celery import Task, current_app, shared_task
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

import app.kinds  # noqa: F401  (registers every operation kind)
from app.coupons.expiry import sweep_coupons
from app.engagement.leaderboard_cache import ScoreUpdate, pending_updates
from app.engagement.leaderboard_cache import push as push_scores
from app.engagement.streak_sweeps import sweep_streaks
from app.infra.completion import FinishedAnswer, signal_finished
from app.infra.drain_key import DrainKey
from app.logs import request_id_set
from app.metrics import (
    backend_errors,
    count_finished,
    drain_batch_size,
    operation_errors,
    operations_republished,
    rows_purged,
)
from app.models import Operation
from app.operation_failures import record_failed_run
from app.operation_kinds import partition_kind
from app.operation_runs import (
    OperationsRun,
    drain_partition,
    execute_operations,
    lock_oldest_queued,
)
from app.operation_sweeps import claim_stalled_operations
from app.operations import operation_answer, operations_to_publish
from app.outbox import events_to_dispatch
from app.points.sweeps import Shard, sweep_lots
from app.points.tier_sweeps import sweep_tiers
from app.referrals.expiry import sweep_referrals
from app.retention import Retention, purge_expired
from workers.celery_app import (
    QUEUE_MAINTENANCE,
    QUEUE_OPERATIONS,
    TASK_DRAIN_PARTITION,
    TASK_EXECUTE_OPERATION,
    TASK_SWEEP_LOT_SHARD,
    TASK_SWEEP_LOTS,
    TASK_SWEEP_OPERATIONS,
)
from workers.publish import publish_accepted, publish_drain, publish_operation
from workers.runtime import runtime
from workers.webhook_publish import wake_webhook_dispatcher

log = logging.getLogger(__name__)

# Lock timeouts, deadlocks, serialization failures and lost connections are worth a quick
# retry; anything longer is the sweeper's job (see visibility_timeout in celery_app).
RETRY_COUNTDOWN_CAP_SECONDS = 10
# How long one drain task keeps taking batches of a busy partition before handing over.
DRAIN_TIME_BUDGET_SECONDS = 2.0
# How long a drain that ran out of work waits for the next write before it ends, when no
# other task waits for its worker process: a client writing one request after another
# sends the next within a few milliseconds of its answer, and a running drain takes it
# without a new task (no broker round trip, no task set-up in the web or the worker).
DRAIN_LINGER_SECONDS = 0.02


def _after_commit(
    run: OperationsRun,
    wake_dispatcher: bool,
    recorded: Sequence[Operation] = (),
    scores: Sequence[ScoreUpdate] = (),
) -> None:
    """Tell waiters, queue the next step of long jobs and the operations the run
    recorded (the engine's own claims), push leaderboard scores to their cache, wake
    the webhook dispatcher."""
    rt = runtime()
    if scores:
        try:
            push_scores(rt.redis, rt.settings.redis_key_prefix, scores)
        except RedisError as exc:
            # The scores are committed; the cache is rebuilt from them within its lifetime.
            backend_errors.labels("redis", "worker").inc()
            log.warning("leaderboard cache not updated: %s", exc)
    if run.finished:
        count_finished(run.finished)
        signal_finished(
            rt.redis,
            rt.settings.redis_key_prefix,
            [(op.id, FinishedAnswer(*operation_answer(op))) for op in run.finished],
        )
    for operation in (*run.continuing, *recorded):
        publish_operation(current_app, operation)
    if wake_dispatcher:
        wake_webhook_dispatcher(current_app, rt.redis, rt.settings.redis_key_prefix)


def _is_transient(exc: Exception) -> bool:
    """A lost connection, lock timeout, deadlock or serialization failure: the run is
    retried, not counted against the operation (app/operation_failures.py)."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _retry_transient(task: Task, subject: str, exc: Exception) -> NoReturn:
    backend_errors.labels("postgres", "worker").inc()
    countdown = min(2**task.request.retries * 0.2, RETRY_COUNTDOWN_CAP_SECONDS)
    log.warning("%s: transient database error, retrying: %s", subject, exc)
    raise task.retry(exc=exc, countdown=countdown) from exc


def _record_failed_run(operation_id: uuid.UUID, exc: Exception) -> bool:
    """Count a run of one operation that raised an unexpected error (its transaction has
    rolled back). True if it is out of the way: set aside as failed (its waiters told), or
    finished by someone else; False if it stays queued for another run."""
    rt = runtime()
    max_attempts = rt.settings.operation_max_attempts
    with rt.session_factory.begin() as session:
        failed = record_failed_run(session, operation_id, exc, max_attempts)
    if failed is None:
        return True
    operation_errors.labels(failed.operation.kind).inc()
    with request_id_set(failed.operation.request_id):
        log.error(
            "operation %s (%s) failed unexpectedly, %d of %d",
            operation_id,
            failed.operation.kind,
            failed.failures,
            max_attempts,
            exc_info=exc,
        )
        if failed.set_aside:
            log.error(
                "operation %s is marked failed; `rewards operations retry %s` runs it again",
                operation_id,
                operation_id,
            )
    if not failed.set_aside:
        return False
    _after_commit(OperationsRun([failed.operation], []), wake_dispatcher=False)
    return True


def _execute_alone(task: Task, operation_id: uuid.UUID | None, key: str | None = None) -> bool:
    """Run one operation in a transaction of its own: `operation_id`, or the oldest queued
    one of partition `key`. False if it failed unexpectedly and stays queued (see
    _record_failed_run); True otherwise, including when there was nothing to run."""
    rt = runtime()
    try:
        with rt.session_factory.begin() as session:
            if key is not None:
                operation_id = lock_oldest_queued(session, key)
            if operation_id is None:
                return True
            run = execute_operations(session, [operation_id])
            recorded = operations_to_publish(session)
            scores = pending_updates(session)
            wake_dispatcher = events_to_dispatch(session)
    except Exception as exc:
        if _is_transient(exc):
            _retry_transient(task, f"operation {operation_id}", exc)
        if operation_id is None:
            raise  # reading the partition failed: there is no operation to count it on
        return _record_failed_run(operation_id, exc)
    _after_commit(run, wake_dispatcher, recorded, scores)
    return True


def _drain_one_by_one(task: Task, partition_key: str, limit: int) -> bool:
    """After a batch of the partition raised an unexpected error: run up to `limit` of its
    queued operations one per transaction, oldest first, so the one that fails is found
    and counted and those before it are applied. False if it stays queued (the partition
    waits for its next run, keeping the order of its writes)."""
    for _ in range(limit):
        if not _execute_alone(task, None, partition_key):
            return False
    return True


@shared_task(
    name=TASK_EXECUTE_OPERATION,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=8,
    ignore_result=True,
)
def execute_operation(self, operation_id: str) -> None:  # type: ignore[no-untyped-def]
    _execute_alone(self, uuid.UUID(operation_id))


@shared_task(
    name=TASK_DRAIN_PARTITION,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=8,
    ignore_result=True,
)
def drain_partition_task(self, partition_key: str) -> None:  # type: ignore[no-untyped-def]
    """Execute every queued operation of one partition, a batch per transaction.

    The drain marks the partition's drain key clean before each read and ends after a
    read that did not fill a batch if no write marked it since (app/infra/drain_key.py),
    having waited DRAIN_LINGER_SECONDS for one if no other task was queued.
    A kind that drains side by side frees the key at the start instead, so the next write
    wakes another drain, and this one stops at its first batch that is not full. After a
    time budget the task hands the rest to a fresh task, so one hot partition cannot hold
    a worker process forever while others wait.
    """
    rt = runtime()
    kind = partition_kind(partition_key)
    key = DrainKey(rt.redis, rt.settings.redis_key_prefix, partition_key)
    # The broker's list of waiting operations tasks (kombu's Redis transport, under the
    # key prefix create_celery gives it).
    operations_queue = f"{rt.settings.redis_key_prefix}celery:{QUEUE_OPERATIONS}"
    if kind.drains_side_by_side:
        key.release()
    deadline = time.monotonic() + DRAIN_TIME_BUDGET_SECONDS
    while True:
        if not kind.drains_side_by_side:
            key.hold()
        ran = _drain_batch(self, partition_key, kind.max_batch)
        if ran is None:
            if not kind.drains_side_by_side:
                key.release()  # the next write, or the sweeper, runs the partition again
            return
        if ran < kind.max_batch:
            if kind.drains_side_by_side:
                return
            if not key.await_write(DRAIN_LINGER_SECONDS, unless_queued=operations_queue):
                if key.end():
                    return
        if time.monotonic() > deadline:
            key.hold()
            try:
                publish_drain(current_app, partition_key)
            except Exception:
                key.release()  # no drain was queued: the next write's wake queues one
                raise
            return


def _drain_batch(task: Task, partition_key: str, limit: int) -> int | None:
    """Run one batch of up to `limit` queued operations of a partition; how many ran.

    A batch that raises an unexpected error is run again one by one (_drain_one_by_one):
    then `limit` if that went through (read again, more may wait), None if an operation
    failed and stays queued (the partition waits for its next run)."""
    rt = runtime()
    try:
        with rt.session_factory.begin() as session:
            run = drain_partition(session, partition_key, limit)
            recorded = operations_to_publish(session)
            scores = pending_updates(session)
            wake_dispatcher = events_to_dispatch(session)
    except Exception as exc:
        if _is_transient(exc):
            _retry_transient(task, f"partition {partition_key}", exc)
        # The run one by one logs the failing operation's traceback.
        log.warning("partition %s: a batch failed (%r); running it one by one", partition_key, exc)
        return limit if _drain_one_by_one(task, partition_key, limit) else None
    _after_commit(run, wake_dispatcher, recorded, scores)
    ran = len(run.finished) + len(run.continuing)
    drain_batch_size.labels(partition_key.split(":", 1)[0]).observe(ran)
    return ran


@shared_task(
    name=TASK_SWEEP_OPERATIONS,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def sweep_operations() -> int:
    """Republish operations stalled in queued/processing; purge what is past retention
    (app/retention.py)."""
    rt = runtime()
    with rt.session_factory.begin() as session:
        stalled = claim_stalled_operations(
            session, timedelta(seconds=rt.settings.operation_stall_seconds)
        )
    publish_accepted(current_app, rt.redis, rt.settings.redis_key_prefix, stalled)
    if stalled:
        operations_republished.inc(len(stalled))
        log.warning("republished %d stalled operation(s)", len(stalled))
    purged = purge_expired(rt.session_factory, Retention.from_settings(rt.settings))
    if purged.total:
        rows_purged.labels("operations").inc(purged.operations)
        rows_purged.labels("webhook_deliveries").inc(purged.deliveries)
        rows_purged.labels("outbox_events").inc(purged.events)
        rows_purged.labels("audit_entries").inc(purged.audit_entries)
        rows_purged.labels("console_sessions").inc(purged.console_sessions)
    return len(stalled)


@shared_task(name=TASK_SWEEP_LOTS, ignore_result=True)
def start_lot_sweeps() -> None:
    """The periodic start of the lot sweeps: one task per shard, so that every worker
    process takes a share of a large expiry."""
    rt = runtime()
    shards = rt.settings.lot_sweep_shards
    for index in range(shards):
        current_app.send_task(
            TASK_SWEEP_LOT_SHARD,
            args=[index, shards],
            queue=QUEUE_MAINTENANCE,
            expires=rt.settings.sweep_interval_seconds,
        )


@shared_task(
    name=TASK_SWEEP_LOT_SHARD,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def sweep_lot_shard(index: int, shards: int) -> None:
    """Release pending lots and expire lots that are due (app.points.sweeps), then
    evaluate the rolling tiers that are due (app.points.tier_sweeps) and break the streaks
    past their deadline (app.engagement.streak_sweeps), of one shard of the participants;
    announce the expired coupons of the same shard of coupons (app.coupons.expiry) and
    expire the pending referrals past their time (app.referrals.expiry)."""
    rt = runtime()
    shard = Shard(index, shards)
    report = sweep_lots(rt.session_factory, shard=shard)
    # Then the rolling tiers: a tier sweep records events too (always dispatched).
    tiers = sweep_tiers(rt.session_factory, shard=shard)
    broken_streaks = sweep_streaks(rt.session_factory, shard=shard)
    expired_coupons = sweep_coupons(rt.session_factory, shard=shard)
    expired_referrals = sweep_referrals(rt.session_factory, shard=shard)
    if report.to_dispatch or tiers or broken_streaks or expired_coupons:
        wake_webhook_dispatcher(current_app, rt.redis, rt.settings.redis_key_prefix)
    if report.released or report.expired:
        log.info("lots: %d released, %d expired", report.released, report.expired)
    if expired_referrals:
        log.info("referrals: %d expired", expired_referrals)
