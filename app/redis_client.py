"""Redis connections with bounded timeouts: a stalled Redis must never hang a request."""

from __future__ import annotations

import redis

from app.config import Settings

# Every command here takes well under a millisecond; one that has not been answered in
# this long means Redis is stalled (stopped, partitioned), and the caller fails over (the
# rate limiter admits, a publish is left to the sweeper, a wait answers 503). Blocking
# waits are cut into slices shorter than this (see app/completion.py).
SOCKET_TIMEOUT_SECONDS = 1.0


def make_redis(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(
        settings.require_redis_url(),
        socket_connect_timeout=2,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        health_check_interval=30,
        decode_responses=True,
    )
