"""Waking the webhook dispatcher after a commit that wrote outbox events.

Coalesced with a short Redis SET NX: while a wake-up is queued and not yet started, more
commits publish nothing, so 1,000 claims/s cost a handful of dispatcher tasks, not 1,000.
The dispatcher deletes the key as it starts, before it reads the outbox, so an event
committed after that read always finds the key free and publishes a fresh wake-up.
A lost wake-up (Redis or broker down) only costs latency: beat runs the dispatcher anyway.
"""

from __future__ import annotations

import logging

import redis
from celery import Celery
from kombu.exceptions import OperationalError

from workers.celery_app import QUEUE_WEBHOOKS, TASK_DISPATCH_WEBHOOKS

log = logging.getLogger(__name__)

# Bounds how long a wake-up lost between SET and publish can block the next ones.
WAKE_KEY_TTL_MS = 2000


def wake_key(prefix: str) -> str:
    return f"{prefix}webhooks:wake"


def wake_webhook_dispatcher(celery: Celery, redis_client: redis.Redis, prefix: str) -> bool:
    """Publish a dispatcher run unless one is already queued; True if published."""
    try:
        if not redis_client.set(wake_key(prefix), "1", nx=True, px=WAKE_KEY_TTL_MS):
            return False
        celery.send_task(TASK_DISPATCH_WEBHOOKS, queue=QUEUE_WEBHOOKS, retry=False)
    except (redis.RedisError, OperationalError) as exc:
        log.warning("could not wake the webhook dispatcher (beat will run it): %s", exc)
        return False
    return True
