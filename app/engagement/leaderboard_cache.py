"""Leaderboards in Redis: a sorted set per leaderboard and period serves the reads;
PostgreSQL (`leaderboard_scores`) is the truth they are rebuilt from.

Per (leaderboard, period) three keys: the sorted set (member `<tie key>|<participant id>`,
score the participant's score), a hash participant id -> member, and a marker that the
set was built. The tie key is 10^16 minus when the score was reached, in microseconds,
zero-padded: Redis orders equal scores by member, so a descending range lists ties by who
reached the score first.

Workers push the scores a batch changed after it commits, into sets already built only
(a set not built is built from PostgreSQL by the next read). A score only grows within a
period, so a push never lowers one: an older push landing after a newer one, or after a
rebuild, changes nothing. What a push can miss (a worker dying between commit and push,
a push racing a rebuild) is bounded by the sets' lifetime: every CACHE_SECONDS a read
rebuilds them from PostgreSQL. A Redis flush loses nothing: the next read rebuilds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from redis import Redis
from sqlalchemy.orm import Session

from app.infra.pgcopy import fetch_tuples

CACHE_SECONDS = 300
_TIE_BASE = 10**16
_UPDATES = "leaderboard_cache_updates"

# Per entry (participant id, score, member): replace its member unless it holds a score
# as high already; nothing unless the set is built.
_PUSH = """
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
local pushed = 0
for i = 1, #ARGV, 3 do
    local old = redis.call('HGET', KEYS[2], ARGV[i])
    local keep = false
    if old then
        local held = redis.call('ZSCORE', KEYS[1], old)
        if held and tonumber(held) >= tonumber(ARGV[i + 1]) then
            keep = true
        else
            redis.call('ZREM', KEYS[1], old)
        end
    end
    if not keep then
        redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i + 2])
        redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
        pushed = pushed + 1
    end
end
local ttl = redis.call('TTL', KEYS[3])
if ttl > 0 then
    redis.call('EXPIRE', KEYS[1], ttl)
    redis.call('EXPIRE', KEYS[2], ttl)
end
return pushed
"""


@dataclass(frozen=True)
class ScoreUpdate:
    leaderboard_id: str
    period_start: date
    participant_id: str
    score: int
    reached_at: datetime


def member(participant_id: str, reached_at: datetime) -> str:
    micros = int(reached_at.timestamp() * 1_000_000)
    return f"{_TIE_BASE - micros:017d}|{participant_id}"


def participant_of(entry: str | bytes) -> str:
    text = entry.decode() if isinstance(entry, bytes) else entry
    return text.split("|", 1)[1]


@dataclass(frozen=True)
class Keys:
    scores: str
    members: str
    built: str

    @classmethod
    def of(cls, prefix: str, leaderboard_id: str, period_start: date) -> Keys:
        base = f"{prefix}lb:{leaderboard_id}:{period_start.isoformat()}"
        return cls(base, f"{base}:m", f"{base}:ok")


def push_after_commit(session: Session, updates: Sequence[ScoreUpdate]) -> None:
    """Ask the worker running this transaction to push `updates` once it commits."""
    if updates:
        session.info.setdefault(_UPDATES, []).extend(updates)


def pending_updates(session: Session) -> list[ScoreUpdate]:
    return list(session.info.get(_UPDATES, ()))


def push(redis: Redis, prefix: str, updates: Iterable[ScoreUpdate]) -> None:
    """Push committed scores into the sets that are built (one script call per set)."""
    by_board: dict[tuple[str, date], list[str]] = {}
    for update in updates:
        by_board.setdefault((update.leaderboard_id, update.period_start), []).extend(
            (
                update.participant_id,
                str(update.score),
                member(update.participant_id, update.reached_at),
            )
        )
    if not by_board:
        return
    script = redis.register_script(_PUSH)
    with redis.pipeline(transaction=False) as pipe:
        for (leaderboard_id, period_start), args in by_board.items():
            keys = Keys.of(prefix, leaderboard_id, period_start)
            script(keys=[keys.scores, keys.members, keys.built], args=args, client=pipe)
        pipe.execute()


_ALL_SCORES = """
    SELECT p.external_id, s.score, s.reached_at
    FROM leaderboard_scores AS s JOIN participants AS p ON p.id = s.participant_pk
    WHERE s.leaderboard_id = %(leaderboard_id)s AND s.period_start = %(period_start)s
"""
_CHUNK = 5_000


def rebuild(
    session: Session, redis: Redis, prefix: str, leaderboard_id: str, period_start: date
) -> None:
    """Build one period's set from PostgreSQL, beside the live keys, then swap it in."""
    keys = Keys.of(prefix, leaderboard_id, period_start)
    rows = fetch_tuples(
        session, _ALL_SCORES, {"leaderboard_id": leaderboard_id, "period_start": period_start}
    )
    building = Keys(f"{keys.scores}:new", f"{keys.members}:new", keys.built)
    with redis.pipeline(transaction=False) as pipe:
        pipe.delete(building.scores, building.members)
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            members = {
                external_id: member(external_id, reached_at) for external_id, _, reached_at in chunk
            }
            pipe.zadd(
                building.scores,
                {members[external_id]: score for external_id, score, _ in chunk},
            )
            pipe.hset(building.members, mapping=members)
        pipe.execute()
    with redis.pipeline(transaction=True) as pipe:
        if rows:
            pipe.rename(building.scores, keys.scores)
            pipe.rename(building.members, keys.members)
            pipe.expire(keys.scores, CACHE_SECONDS)
            pipe.expire(keys.members, CACHE_SECONDS)
        else:
            pipe.delete(keys.scores, keys.members)
        pipe.set(keys.built, "1", ex=CACHE_SECONDS)
        pipe.execute()
