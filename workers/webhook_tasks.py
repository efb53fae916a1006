"""The webhook dispatcher task: woken after commits that wrote events, and run by beat."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

import redis
from celery import current_app, shared_task

from app.config import Settings
from app.webhooks.dispatch import RetryPolicy
from app.webhooks.dispatcher import WebhookDispatcher
from app.webhooks.secret_box import SecretBox
from app.webhooks.transport import WebhookTransport
from workers.celery_app import TASK_DISPATCH_WEBHOOKS
from workers.runtime import runtime
from workers.webhook_publish import wake_key, wake_webhook_dispatcher

log = logging.getLogger(__name__)

# A run stops taking new work after this long and returns the process to other tasks;
# the next wake-up or beat tick carries on.
RUN_BUDGET_SECONDS = 5.0


@dataclass
class _SenderState:
    pid: int
    transport: WebhookTransport
    executor: ThreadPoolExecutor
    secret_box: SecretBox


_sender: _SenderState | None = None


def _sender_state(settings: Settings) -> _SenderState:
    """Threads and keep-alive pools live as long as the worker process (built after fork)."""
    global _sender
    if _sender is None or _sender.pid != os.getpid():
        _sender = _SenderState(
            pid=os.getpid(),
            transport=WebhookTransport(
                timeout_seconds=settings.webhook_timeout_seconds,
                allow_private=settings.webhook_allow_private,
                connections_per_pool=settings.webhook_max_in_flight_per_endpoint,
            ),
            executor=ThreadPoolExecutor(
                max_workers=settings.webhook_sender_threads, thread_name_prefix="webhook-send"
            ),
            secret_box=SecretBox.from_settings(settings),
        )
    return _sender


@shared_task(
    name=TASK_DISPATCH_WEBHOOKS,
    # Acked on receipt: a run lost with its worker is not worth redelivering, the next beat
    # tick starts another, and leases hand its unfinished deliveries back.
    acks_late=False,
    ignore_result=True,
    # Past the budget a run only finishes its sends, each bounded by the request timeout:
    # its own limits, above the dispatch budget whatever TASK_SOFT_TIME_LIMIT_SECONDS says.
    soft_time_limit=270,
    time_limit=300,
)
def dispatch_webhooks() -> int:
    rt = runtime()
    settings = rt.settings
    try:
        rt.redis.delete(wake_key(settings.redis_key_prefix))
    except redis.RedisError as exc:
        log.warning("webhook dispatcher: could not clear the wake-up key: %s", exc)
    sender = _sender_state(settings)
    dispatcher = WebhookDispatcher(
        engine=rt.engine,
        session_factory=rt.session_factory,
        transport=sender.transport,
        executor=sender.executor,
        threads=settings.webhook_sender_threads,
        policy=RetryPolicy(
            schedule=settings.webhook_retry_schedule,
            disable_after_failing=timedelta(seconds=settings.webhook_disable_after_failing_seconds),
        ),
        max_in_flight_per_endpoint=settings.webhook_max_in_flight_per_endpoint,
        timeout_seconds=settings.webhook_timeout_seconds,
        secret_box=sender.secret_box,
    )
    stats = dispatcher.run(RUN_BUDGET_SECONDS)
    if stats.out_of_time:
        # Carry on at once rather than at the next beat tick.
        wake_webhook_dispatcher(current_app, rt.redis, settings.redis_key_prefix)
    if stats.attempts:
        log.info(
            "webhook dispatcher: %d event(s) fanned out, %d attempt(s), %d succeeded in %.2fs",
            stats.events,
            stats.attempts,
            stats.succeeded,
            stats.seconds,
        )
    return stats.attempts
