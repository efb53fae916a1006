"""Nothing accepted is lost: faults injected while clients keep submitting claims and awards.

Each test runs the service as real processes (gunicorn API, Celery workers with the
sweeper) against its own private PostgreSQL and Redis, injects one fault under load, and
then checks (tests/faults_support.py: assert_nothing_lost) that every accepted write
finished exactly once with a documented answer, no code went out twice, no reward was
oversold, `rewards ledger verify` is clean and every claim's webhook was delivered.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.builders import wait_until
from tests.faults_support import (
    ANSWER_BOUND_SECONDS,
    KEY_PREFIX,
    RECOVERY_BOUND_SECONDS,
    Answer,
    Catalog,
    FaultStack,
    LoadGenerator,
    Outcome,
    assert_nothing_lost,
    assert_outage_answers,
    fault_stack,
    mixed_intents,
    probe_during_outage,
    report,
    set_up_catalog,
)
from tests.webhook_receiver import free_port

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(120)]

# How long a server stays down: long enough for many requests to meet the outage.
OUTAGE_SECONDS = 2.5
# Longer than ANSWER_BOUND_SECONDS: an answer within the bound did not wait for Redis.
FREEZE_SECONDS = ANSWER_BOUND_SECONDS + 2
# What a worker logs when a pool process died running a task (which it then requeues).
MID_TASK_KILL = "Task handler raised error: WorkerLostError"


def _pool_process_in_a_transaction(stack: FaultStack, worker: Any) -> int | None:
    with stack.engine.connect() as connection:
        names = connection.execute(
            text(
                "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
                " AND state IN ('active', 'idle in transaction')"
                " AND application_name LIKE 'rewards-engine pid=%'"
            )
        ).scalars()
        busy = {int(name.rsplit("=", 1)[1]) for name in names}
    candidates = sorted(busy & set(worker.child_pids()))
    return candidates[0] if candidates else None


def _load(stack: FaultStack, catalog: Catalog) -> LoadGenerator:
    return LoadGenerator(stack.client, stack.tenant.participant_key, mixed_intents(catalog))


def _accepted_operation_id(load: LoadGenerator) -> str:
    for intent in list(load.intents):
        final = intent.final
        if final is not None and final.status == 202:
            return str(final.body["operation_id"])
    raise AssertionError("no write was answered 202 yet")


def _assert_sync_claim_completes(stack: FaultStack, catalog: Catalog) -> None:
    """After recovery a plain sync claim is executed within the sync wait again, i.e. the
    API publishes and the workers consume (not only the sweeper's slow path)."""
    answers = []
    for attempt in range(3):
        answer = stack.client.request(
            "POST",
            f"/rewards/{catalog.paid}/claim",
            stack.tenant.participant_key,
            {"participant_id": "after-recovery", "points_deduction": False},
            {"Idempotency-Key": f"after-recovery-{attempt}"},
        )
        answers.append(answer)
        if answer.status == 201:
            return
    raise AssertionError(f"sync claims after recovery: {answers}")


def test_writes_accepted_while_the_api_cannot_publish_are_completed_by_the_sweeper(
    tmp_path: Path,
) -> None:
    """Enqueue fails after the commit: the API's broker is a dead port (REDIS_URL, hence
    rate limits and completion signals, still works); the workers and their sweeper use the
    real broker. Every operation therefore reaches a worker only through the sweeper."""
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    with fault_stack(tmp_path, api_env={"CELERY_BROKER_URL": dead_broker}) as stack:
        stack.start_worker()
        catalog = set_up_catalog(stack)
        with _load(stack, catalog) as load:
            load.wait_answered(250)
        outcome = assert_nothing_lost(stack, catalog, load.intents)
        assert "the sweeper will retry" in stack.api.log_text()
        assert "stalled operation(s)" in stack.workers[0].log_text()  # republished
    report("enqueue fails", outcome, total=f"{time.monotonic() - started:.1f}s")
    assert outcome.slowest_completion < RECOVERY_BOUND_SECONDS


def test_redis_restart_with_tasks_queued_loses_no_accepted_write(tmp_path: Path) -> None:
    """Redis is SIGKILLed with tasks queued and reserved in it (nothing is on disk), stays
    down while clients keep writing, then comes back empty."""
    started = time.monotonic()
    with fault_stack(tmp_path) as stack:
        worker = stack.start_worker()
        catalog = set_up_catalog(stack)
        broker = stack.redis.client()
        with broker, _load(stack, catalog) as load:
            load.wait_answered(60)
            operation_id = _accepted_operation_id(load)
            # Freeze the worker so accepted work piles up in the broker, then lose it all.
            os.killpg(worker.process.pid, signal.SIGSTOP)
            try:

                def tasks_in_redis() -> int:
                    return int(broker.llen(f"{KEY_PREFIX}celery:operations")) + int(
                        broker.hlen(f"{KEY_PREFIX}celery:unacked")
                    )

                wait_until(lambda: tasks_in_redis() >= 3, 10, "tasks queued in Redis")
                lost_tasks = tasks_in_redis()
                stack.redis.kill()
            finally:
                os.killpg(worker.process.pid, signal.SIGCONT)
            down_at = time.monotonic()
            probes = probe_during_outage(stack, catalog, operation_id)
            time.sleep(max(0.0, down_at + OUTAGE_SECONDS - time.monotonic()))
            stack.redis.start()
            downtime = time.monotonic() - down_at
            load.wait_answered(load.answered() + 100, timeout=40)
        _assert_sync_claim_completes(stack, catalog)
        outcome = assert_nothing_lost(stack, catalog, load.intents)
    # Without Redis, reads and writes may still be served from PostgreSQL (the rate
    # limiter fails open); a sync write is recorded but cannot hear its answer: 202, to poll.
    assert_outage_answers(
        probes,
        allowed={
            "catalog": {200},
            "balance": {200},
            "admin list": {200},
            "operation": {200},
            "sync claim": {202},
            "async award": {202},
            "async award batch": {202},
        },
    )
    report(
        "redis restart",
        outcome,
        tasks_lost=lost_tasks,
        worker_restarts=worker.restarts,
        downtime=f"{downtime:.1f}s",
        probes={name: answer.status for name, answer in probes.items()},
        total=f"{time.monotonic() - started:.1f}s",
    )


def test_workers_sigkilled_mid_task_lose_no_accepted_write(tmp_path: Path) -> None:
    """Pool processes are SIGKILLed in the middle of tasks (the parent requeues the task:
    reject on worker lost), then a whole worker (its reserved task stays unacknowledged in
    Redis for the visibility timeout: the sweeper republishes the operation)."""
    started = time.monotonic()
    with fault_stack(tmp_path) as stack:
        doomed = stack.start_worker(concurrency=2, beat=False)  # all its children are pool
        stack.start_worker(concurrency=1)
        catalog = set_up_catalog(stack)
        with _load(stack, catalog) as load:
            load.wait_answered(60)
            # Kill pool processes until a kill has landed mid-task (the parent then logs
            # the task it lost and requeues it).
            # Tasks take milliseconds (claims are drained in batches), so a random kill
            # mostly lands between tasks: kill a pool process that PostgreSQL shows inside
            # a transaction (its connection names its pid), i.e. one in the middle of a task.
            kills = 0

            def killed_one_mid_task() -> bool:
                nonlocal kills
                if MID_TASK_KILL in doomed.log_text():
                    return True
                victim = _pool_process_in_a_transaction(stack, doomed)
                if victim is not None:
                    os.kill(victim, signal.SIGKILL)
                    kills += 1
                    wait_until(
                        lambda: f"pid:{victim} exited" in doomed.log_text(),
                        10,
                        "the worker to notice its pool process died",
                    )
                return MID_TASK_KILL in doomed.log_text()

            try:
                # No pause between tries: a pool process is inside a transaction for
                # milliseconds at a time.
                wait_until(killed_one_mid_task, 45, "a kill mid-task", interval=0)
            except AssertionError as exc:
                raise AssertionError(f"{exc}: none of {kills} kills landed mid-task") from None
            load.wait_answered(load.answered() + 30)
            doomed.kill()
            load.wait_answered(load.answered() + 80)
        outcome = assert_nothing_lost(stack, catalog, load.intents)
    report(
        "worker kills",
        outcome,
        pool_kills=kills,
        mid_task=doomed.log_text().count(MID_TASK_KILL),
        total=f"{time.monotonic() - started:.1f}s",
    )


def test_postgres_restart_mid_load_loses_no_accepted_write(tmp_path: Path) -> None:
    """PostgreSQL shuts down (fast: sessions cut, open transactions rolled back) while
    clients keep writing, stays down, and starts again; nobody restarts the service."""
    started = time.monotonic()
    with fault_stack(tmp_path) as stack:
        stack.start_worker()
        catalog = set_up_catalog(stack)
        with _load(stack, catalog) as load:
            load.wait_answered(60)
            operation_id = _accepted_operation_id(load)
            stack.postgres.stop()
            down_at = time.monotonic()
            probes = probe_during_outage(stack, catalog, operation_id)
            time.sleep(max(0.0, down_at + OUTAGE_SECONDS - time.monotonic()))
            stack.postgres.start()
            downtime = time.monotonic() - down_at
            load.wait_answered(load.answered() + 100, timeout=40)
        _assert_sync_claim_completes(stack, catalog)
        outcome = assert_nothing_lost(stack, catalog, load.intents)
    assert_outage_answers(probes, allowed={})
    report(
        "postgres restart",
        outcome,
        downtime=f"{downtime:.1f}s",
        probes={name: answer.status for name, answer in probes.items()},
        total=f"{time.monotonic() - started:.1f}s",
    )


def _frozen_under_load(
    stack: FaultStack, freeze: Callable[[], None], thaw: Callable[[], None]
) -> tuple[dict[str, Answer], Outcome]:
    """Load, then a server frozen for FREEZE_SECONDS (probed meanwhile), then thawed: the
    probes' answers, and what the load's writes came to once everything settled."""
    stack.start_worker()
    catalog = set_up_catalog(stack)
    with _load(stack, catalog) as load:
        load.wait_answered(60)
        operation_id = _accepted_operation_id(load)
        freeze()
        frozen_at = time.monotonic()
        try:
            probes = probe_during_outage(stack, catalog, operation_id)
            time.sleep(max(0.0, frozen_at + FREEZE_SECONDS - time.monotonic()))
        finally:
            thaw()
        load.wait_answered(load.answered() + 100, timeout=60)
    _assert_sync_claim_completes(stack, catalog)
    return probes, assert_nothing_lost(stack, catalog, load.intents)


def test_frozen_postgres_gets_bounded_answers_and_loses_no_accepted_write(
    tmp_path: Path,
) -> None:
    """PostgreSQL stops answering without closing anything (SIGSTOP of every server
    process) for longer than the answer bound: requests are cut short at
    REQUEST_TIMEOUT_SECONDS with 503 instead of waiting on the kernel, workers' tasks at
    their soft time limit, and once it answers again every accepted write completes."""
    started = time.monotonic()
    bounded = {"REQUEST_TIMEOUT_SECONDS": "3", "TASK_SOFT_TIME_LIMIT_SECONDS": "5"}
    with fault_stack(tmp_path, api_env=bounded) as stack:
        stack.env.update(bounded)
        probes, outcome = _frozen_under_load(stack, stack.postgres.freeze, stack.postgres.thaw)
    assert_outage_answers(probes, allowed={})
    report(
        "postgres frozen",
        outcome,
        probes={name: (answer.status, round(answer.seconds, 1)) for name, answer in probes.items()},
        total=f"{time.monotonic() - started:.1f}s",
    )


def test_frozen_redis_gets_bounded_answers_and_loses_no_accepted_write(tmp_path: Path) -> None:
    """Redis stops answering without closing anything (SIGSTOP: a hung host, a network
    partition) for longer than the answer bound: every request still answers in bounded
    time, and nothing accepted meanwhile is lost once it answers again."""
    started = time.monotonic()
    with fault_stack(tmp_path) as stack:
        process = stack.redis.process
        assert process is not None
        probes, outcome = _frozen_under_load(
            stack,
            lambda: process.send_signal(signal.SIGSTOP),
            lambda: process.send_signal(signal.SIGCONT),
        )
    assert_outage_answers(
        probes,
        allowed={
            "catalog": {200},
            "balance": {200},
            "admin list": {200},
            "operation": {200},
            "sync claim": {202},
            "async award": {202},
            "async award batch": {202},
        },
    )
    report(
        "redis frozen",
        outcome,
        probes={name: (answer.status, round(answer.seconds, 1)) for name, answer in probes.items()},
        total=f"{time.monotonic() - started:.1f}s",
    )
