"""Reading leaderboards: a page of entries, and one participant's rank with its
neighbours, from the Redis sets (app.engagement.leaderboard_cache), built from PostgreSQL
when missing. With Redis unreachable the same answers come from PostgreSQL."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.engagement.leaderboard_cache import Keys, participant_of, rebuild
from app.engagement.leaderboards import LeaderboardDef
from app.engagement.program_definitions import get_leaderboard
from app.infra.pgcopy import fetch_tuples
from app.models import Leaderboard


@dataclass(frozen=True)
class Entry:
    rank: int
    participant_id: str
    score: int

    def as_body(self) -> dict[str, Any]:
        return {"rank": self.rank, "participant_id": self.participant_id, "score": self.score}


# Leaderboard definitions a web process read lately: a hot leaderboard's reads then touch
# only Redis. An admin's change (size, active) is seen within DEFINITION_CACHE_SECONDS.
DEFINITION_CACHE_SECONDS = 5.0
_DEFINITION_CACHE_MAX = 1024
_definitions: dict[tuple[uuid.UUID, str, str], tuple[float, LeaderboardDef]] = {}


def find_leaderboard(
    session: Session, tenant_id: uuid.UUID, env: str, leaderboard_id: str
) -> LeaderboardDef:
    cached = _definitions.get((tenant_id, env, leaderboard_id))
    now = time.monotonic()
    if cached is not None and cached[0] > now:
        return cached[1]
    board = get_leaderboard(session, tenant_id, env, leaderboard_id)
    definition = LeaderboardDef.of(
        {column.name: getattr(board, column.key) for column in Leaderboard.__mapper__.columns}
    )
    if len(_definitions) >= _DEFINITION_CACHE_MAX:
        _definitions.clear()
    _definitions[(tenant_id, env, leaderboard_id)] = (now + DEFINITION_CACHE_SECONDS, definition)
    return definition


class LeaderboardReader:
    """Reads of one period of one leaderboard."""

    def __init__(
        self,
        session: Session,
        redis: Redis,
        prefix: str,
        board: LeaderboardDef,
        period_start: date,
    ) -> None:
        self.session = session
        self.redis = redis
        self.board = board
        self.period_start = period_start
        self.keys = Keys.of(prefix, board.id, period_start)
        self.prefix = prefix

    def page(self, limit: int, offset: int) -> tuple[list[Entry], int]:
        """Entries [offset, offset + limit) within the board's size; and how many it
        holds (up to its size)."""
        limit = max(min(limit, self.board.size - offset), 0)
        try:
            return self._page_from_redis(limit, offset)
        except RedisError:
            return self._page_from_postgres(limit, offset)

    def _built(self) -> None:
        if not self.redis.exists(self.keys.built):
            rebuild(self.session, self.redis, self.prefix, self.board.id, self.period_start)

    def _page_from_redis(self, limit: int, offset: int) -> tuple[list[Entry], int]:
        page = self.redis.register_script(_PAGE_SCRIPT)
        keys = [self.keys.scores, self.keys.built]
        answer = cast(list[Any], page(keys=keys, args=[offset, limit]))
        if not answer[0]:
            self._built()
            answer = cast(list[Any], page(keys=keys, args=[offset, limit]))
        _, total, higher, raw = answer
        entries: list[Entry] = []
        for position in range(0, len(raw), 2):
            value = int(float(raw[position + 1]))
            if entries and entries[-1].score == value:
                rank = entries[-1].rank
            elif not entries:
                rank = 1 + int(higher)
            else:
                rank = offset + position // 2 + 1
            entries.append(Entry(rank, participant_of(raw[position]), value))
        return entries, min(int(total), self.board.size)

    def _page_from_postgres(self, limit: int, offset: int) -> tuple[list[Entry], int]:
        rows = fetch_tuples(
            self.session,
            _PAGE,
            {
                "leaderboard_id": self.board.id,
                "period_start": self.period_start,
                "limit": limit,
                "offset": offset,
            },
        )
        [(total,)] = fetch_tuples(
            self.session,
            _COUNT,
            {"leaderboard_id": self.board.id, "period_start": self.period_start},
        )
        return [Entry(rank, pid, score) for pid, score, rank in rows], min(total, self.board.size)

    def standing(self, participant_id: str) -> dict[str, Any]:
        """The participant's rank and score, and the entries just above and below it
        (None where there is none: not ranked, first, last)."""
        try:
            return self._standing_from_redis(participant_id)
        except RedisError:
            return self._standing_from_postgres(participant_id)

    def _standing_from_redis(self, participant_id: str) -> dict[str, Any]:
        self._built()
        member = self.redis.hget(self.keys.members, participant_id)
        position = cast(
            int | None,
            self.redis.zrevrank(self.keys.scores, member) if member is not None else None,
        )
        if position is None:
            return _standing(participant_id, None, 0, None, None)
        start = max(position - 1, 0)
        raw = cast(
            list[tuple[bytes, float]],
            self.redis.zrevrange(self.keys.scores, start, position + 1, withscores=True),
        )
        entries = []
        for member_of, score in raw:
            value = int(score)
            rank = 1 + int(self.redis.zcount(self.keys.scores, f"({value}", "+inf"))
            entries.append(Entry(rank, participant_of(member_of), value))
        index = position - start
        me = entries[index]
        above = entries[index - 1] if index > 0 else None
        below = entries[index + 1] if index + 1 < len(entries) else None
        return _standing(participant_id, me.rank, me.score, above, below)

    def _standing_from_postgres(self, participant_id: str) -> dict[str, Any]:
        rows = fetch_tuples(
            self.session,
            _AROUND,
            {
                "leaderboard_id": self.board.id,
                "period_start": self.period_start,
                "participant_id": participant_id,
            },
        )
        ordered = [Entry(rank, pid, score) for pid, score, rank in rows]
        for index, entry in enumerate(ordered):
            if entry.participant_id == participant_id:
                above = ordered[index - 1] if index > 0 else None
                below = ordered[index + 1] if index + 1 < len(ordered) else None
                return _standing(participant_id, entry.rank, entry.score, above, below)
        return _standing(participant_id, None, 0, None, None)


def _standing(
    participant_id: str, rank: int | None, score: int, above: Entry | None, below: Entry | None
) -> dict[str, Any]:
    return {
        "participant_id": participant_id,
        "rank": rank,
        "score": score,
        "above": above.as_body() if above else None,
        "below": below.as_body() if below else None,
    }


# One round trip for a page: whether the set is built, its size, how many entries score
# above the page's first (its rank), and the page (member, score, ...). A limit of 0
# reads no range (one ending at -1 would be every entry).
_PAGE_SCRIPT = """
if redis.call('EXISTS', KEYS[2]) == 0 then return {0, 0, 0, {}} end
local total = redis.call('ZCARD', KEYS[1])
local limit = tonumber(ARGV[2])
if limit <= 0 then return {1, total, 0, {}} end
local first = tonumber(ARGV[1])
local page = redis.call('ZREVRANGE', KEYS[1], first, first + limit - 1, 'WITHSCORES')
local higher = 0
if #page > 0 then higher = redis.call('ZCOUNT', KEYS[1], '(' .. page[2], '+inf') end
return {1, total, higher, page}
"""
_RANKED = """
    SELECT p.external_id, s.score,
           rank() OVER (ORDER BY s.score DESC) AS rank,
           row_number() OVER (ORDER BY s.score DESC, s.reached_at, p.external_id) AS position
    FROM leaderboard_scores AS s JOIN participants AS p ON p.id = s.participant_pk
    WHERE s.leaderboard_id = %(leaderboard_id)s AND s.period_start = %(period_start)s
"""
_PAGE = f"""
    SELECT external_id, score, rank FROM ({_RANKED}) AS ranked
    ORDER BY position LIMIT %(limit)s OFFSET %(offset)s
"""  # noqa: S608 (constant fragments)
_COUNT = """
    SELECT count(*) FROM leaderboard_scores
    WHERE leaderboard_id = %(leaderboard_id)s AND period_start = %(period_start)s
"""
_AROUND = f"""
    WITH ranked AS ({_RANKED}),
    me AS (SELECT position FROM ranked WHERE external_id = %(participant_id)s)
    SELECT external_id, score, rank FROM ranked, me
    WHERE ranked.position BETWEEN me.position - 1 AND me.position + 1
    ORDER BY ranked.position
"""  # noqa: S608 (constant fragments)


def default_period(board: LeaderboardDef, now: datetime) -> date:
    return board.period_start(now)


def leaderboard_prizes(session: Session, leaderboard_id: str) -> dict[int, str]:
    """The prize of each rank that has one (the 23blocks dialect's `rewards`)."""
    prizes = session.execute(
        select(Leaderboard.prizes).where(Leaderboard.id == uuid.UUID(leaderboard_id))
    ).scalar_one_or_none()
    return {int(prize["rank"]): str(prize["prize"]) for prize in prizes or []}
