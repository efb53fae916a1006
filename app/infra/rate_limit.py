"""Rate limits as GCRA (generic cell rate algorithm), decided in Redis by a Lua script.

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

from app.infra.group_commit import GroupCommit
from app.infra.redis_client import RedisOutage

log = logging.getLogger(__name__)

# One call decides for many subjects (the concurrent requests of one web process, see
# app/infra/group_commit.py), in order, each exactly as if alone. KEYS[i]: subject i's key.
# ARGV[4i-3..4i]: its rate per second, burst, cost (1 to take, -1 to give one back, e.g.
# for a request that turned out to be a replay), and 1 if it is decided only when the
# subject before it was allowed (a request's later units: an API key refused takes
# nothing from its participant), else 0. Returns, per subject, {allowed (1, 0, or -1 for
# not decided), remaining, retry_after_ms, reset_ms} as integers, flattened.
_GCRA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local decisions = {}
local function decide(key, rate, burst, cost)
  local interval = 1000 / rate
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  if cost < 0 then
    local back = math.max(now, tat - interval)
    redis.call('SET', key, back, 'PX', math.ceil(back - now) + 1000)
    return 1, 0, 0, 0
  end
  local new_tat = tat + interval
  local allowed_at = new_tat - burst * interval
  if allowed_at > now then
    return 0, 0, math.ceil(allowed_at - now), math.ceil(tat - now)
  end
  redis.call('SET', key, new_tat, 'PX', math.ceil(new_tat - now) + 1000)
  return 1, math.floor((now - allowed_at) / interval), 0, math.ceil(new_tat - now)
end
local previous = 1
for i, key in ipairs(KEYS) do
  local allowed, remaining, retry_ms, reset_ms = -1, 0, 0, 0
  if previous == 1 or ARGV[4 * i] == '0' then
    allowed, remaining, retry_ms, reset_ms = decide(
      key, tonumber(ARGV[4 * i - 3]), tonumber(ARGV[4 * i - 2]), tonumber(ARGV[4 * i - 1]))
  end
  previous = allowed
  table.insert(decisions, allowed)
  table.insert(decisions, remaining)
  table.insert(decisions, retry_ms)
  table.insert(decisions, reset_ms)
end
return decisions
"""

# The decisions of this many concurrent requests of one process share a script call.
MAX_DECISIONS_PER_CALL = 64


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


@dataclass(frozen=True)
class _Request:
    subject: str
    limit: Limit
    cost: int  # 1 takes a unit, -1 gives one back
    after_previous: bool = False  # decided only if the request before it was allowed


class RateLimiter:
    def __init__(self, client: redis.Redis, prefix: str, outage: RedisOutage | None = None) -> None:
        self._prefix = prefix
        self._outage = outage or RedisOutage()
        self._script = client.register_script(_GCRA)
        self._decisions: GroupCommit[tuple[_Request, ...], list[Decision] | None] = GroupCommit(
            self._decide, MAX_DECISIONS_PER_CALL
        )

    def take(self, subject: str, limit: Limit) -> Decision | None:
        """Take one unit for `subject`; None when Redis is unreachable (fail open), or was
        a moment ago (see RedisOutage)."""
        decisions = self.take_in_order([(subject, limit)])
        return None if decisions is None else decisions[0]

    def take_in_order(self, units: list[tuple[str, Limit]]) -> list[Decision] | None:
        """Take one unit of each subject, in order, each only if every one before it was
        allowed (one request's several caps, decided in one call). The decisions end at
        the first refusal: the subjects after it were not charged. None when Redis is
        unreachable, as for `take`."""
        return self._decisions.submit(
            tuple(
                _Request(subject, limit, 1, after_previous=position > 0)
                for position, (subject, limit) in enumerate(units)
            )
        )

    def give_back(self, subject: str, limit: Limit) -> None:
        self._decisions.submit((_Request(subject, limit, -1),))

    def _decide(self, calls: list[tuple[_Request, ...]]) -> list[list[Decision] | None]:
        if self._outage.suspected:
            return [None] * len(calls)
        requests = [request for call in calls for request in call]
        try:
            flat = self._script(
                keys=[f"{self._prefix}rl:{request.subject}" for request in requests],
                args=[
                    value
                    for request in requests
                    for value in (
                        request.limit.rate,
                        request.limit.burst,
                        request.cost,
                        int(request.after_previous),
                    )
                ],
            )
        except redis.RedisError as exc:
            # Availability over strictness: a Redis outage must not take the API down.
            self._outage.failed()
            log.warning("rate limiter unavailable, admitting %d request(s): %s", len(calls), exc)
            return [None] * len(calls)
        answers: list[list[Decision] | None] = []
        at = 0
        for call in calls:
            decisions = []
            for request in call:
                allowed, remaining, retry_ms, reset_ms = (int(v) for v in flat[at : at + 4])
                at += 4
                if allowed >= 0:  # -1: not decided, an earlier unit was refused
                    decisions.append(
                        Decision(bool(allowed), request.limit, remaining, retry_ms, reset_ms)
                    )
            answers.append(decisions)
        return answers
