"""Redis connections with bounded timeouts: a stalled Redis must never hang a request."""

from __future__ import annotations

import time

import redis

from app.config import Settings
from app.metrics import backend_errors

# Every command here takes well under a millisecond; one that has not been answered in
# this long means Redis is stalled (stopped, partitioned), and the caller fails over (the
# rate limiter admits, a publish is left to the sweeper, a wait answers 503). Blocking
# waits are cut into slices shorter than this (see app/infra/completion.py).
SOCKET_TIMEOUT_SECONDS = 1.0


def make_redis(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(
        settings.require_redis_url(),
        socket_connect_timeout=2,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        health_check_interval=30,
        decode_responses=True,
    )


# After a failed call, the web's hot path leaves Redis alone this long.
OUTAGE_PAUSE_SECONDS = 1.0


class RedisOutage:
    """What a web process knows of Redis being unreachable, shared by its hot-path users.

    Rate limits fail open, a worker wake-up is left to the sweeper and a sync request does
    not wait for an answer that cannot come; after one failed call (a timeout on a stalled
    Redis takes SOCKET_TIMEOUT_SECONDS) they skip Redis for a pause instead of each
    request waiting out its own timeout, then try it again.
    """

    def __init__(self, pause_seconds: float = OUTAGE_PAUSE_SECONDS) -> None:
        self._pause_seconds = pause_seconds
        self._until = 0.0

    @property
    def suspected(self) -> bool:
        return time.monotonic() < self._until

    def failed(self) -> None:
        backend_errors.labels("redis", "web").inc()
        self._until = time.monotonic() + self._pause_seconds
