"""Rate limits as GCRA (generic cell rate algorithm), one Lua script call per decision.

Each limited subject (a participant's writes, an API key's requests) keeps one Redis key
holding its "theoretical arrival time". The script reads Redis's own clock, decides and
updates atomically, so any number of web processes share one exact limit: over any
window, admitted requests never exceed burst + rate x elapsed seconds.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)

# KEYS[1]: the subject's key. ARGV: rate per second, burst, cost (1 to take, -1 to give
# one back, e.g. for a request that turned out to be a replay).
# Returns {allowed (0/1), remaining, retry_after_ms, reset_ms} as integers.
_GCRA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local interval = 1000 / rate
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if cost < 0 then
  local back = math.max(now, tat - interval)
  redis.call('SET', KEYS[1], back, 'PX', math.ceil(back - now) + 1000)
  return {1, 0, 0, 0}
end
local new_tat = tat + interval
local allowed_at = new_tat - burst * interval
if allowed_at > now then
  return {0, 0, math.ceil(allowed_at - now), math.ceil(tat - now)}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now) + 1000)
return {1, math.floor((now - allowed_at) / interval), 0, math.ceil(new_tat - now)}
"""


@dataclass(frozen=True)
class Limit:
    rate: float  # per second
    burst: int


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: Limit
    remaining: int
    retry_after_ms: int
    reset_ms: int

    @property
    def retry_after_seconds(self) -> int:
        """Whole seconds, rounded up: a client that waits this long is admitted."""
        return max(1, math.ceil(self.retry_after_ms / 1000))


class RateLimiter:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._prefix = prefix
        self._script = client.register_script(_GCRA)

    def take(self, subject: str, limit: Limit) -> Decision | None:
        """Take one unit for `subject`; None when Redis is unreachable (fail open)."""
        try:
            allowed, remaining, retry_ms, reset_ms = self._script(
                keys=[f"{self._prefix}rl:{subject}"], args=[limit.rate, limit.burst, 1]
            )
        except redis.RedisError as exc:
            # Availability over strictness: a Redis outage must not take the API down.
            log.warning("rate limiter unavailable, admitting %s: %s", subject, exc)
            return None
        return Decision(bool(allowed), limit, int(remaining), int(retry_ms), int(reset_ms))

    def give_back(self, subject: str, limit: Limit) -> None:
        try:
            self._script(keys=[f"{self._prefix}rl:{subject}"], args=[limit.rate, limit.burst, -1])
        except redis.RedisError as exc:
            log.warning("rate limiter unavailable, could not refund %s: %s", subject, exc)
