"""Leaderboards: participants ranked by points earned, by actions of one name or by
referrals completed as referrer (app.engagement.referral_scores), per period (all time,
or a day, week or month in the leaderboard's time zone), decided without I/O.

PostgreSQL holds the scores (`leaderboard_scores`, written with the rest of a batch);
Redis sorted sets serve the reads (app.engagement.leaderboard_cache). Ranks are
competition style (1, 1, 3); ties are listed by who reached the score first. A score
counts activity from the leaderboard's creation on, and only grows within a period.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from app.engagement.challenges import ACTION_COUNT, POINTS_EARNED
from app.engagement.rules import zone
from app.errors import NotFound

ALL_TIME, DAILY, WEEKLY, MONTHLY = "all_time", "daily", "weekly", "monthly"
# Kept by referral completion, not by the action pipeline: see app.engagement.referral_scores.
REFERRAL_COUNT = "referral_count"
# The one period of an all-time leaderboard.
EPOCH = date(1970, 1, 1)


def leaderboard_not_found() -> NotFound:
    return NotFound("leaderboard_not_found", "Leaderboard not found")


def _moment(value: object) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


@dataclass(frozen=True)
class LeaderboardDef:
    id: str
    name: str
    metric: str
    action: str | None
    period: str
    timezone: ZoneInfo
    size: int
    notify_top: int
    active: bool
    created_at: datetime

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> LeaderboardDef:
        return cls(
            id=str(row["id"]),
            name=row["name"],
            metric=row["metric"],
            action=row.get("action"),
            period=row["period"],
            timezone=zone(row.get("timezone") or "UTC"),
            size=int(row.get("size") or 100),
            notify_top=int(row.get("notify_top") or 0),
            active=bool(row.get("active", True)),
            created_at=_moment(row["created_at"]),
        )

    def period_start(self, moment: datetime) -> date:
        """The first day of the period `moment` falls in, in the leaderboard's zone."""
        if self.period == ALL_TIME:
            return EPOCH
        day = moment.astimezone(self.timezone).date()
        if self.period == WEEKLY:
            return day - timedelta(days=day.weekday())
        if self.period == MONTHLY:
            return day.replace(day=1)
        return day

    def is_period_start(self, day: date) -> bool:
        if self.period == ALL_TIME:
            return day == EPOCH
        if self.period == WEEKLY:
            return day.weekday() == 0
        if self.period == MONTHLY:
            return day.day == 1
        return True

    def counts(self, action: str | None, points: int, at: datetime) -> int:
        """What an activity at `at` adds: 1 for an action of its name, the points for a
        credit; nothing before the leaderboard existed."""
        if not self.active or at < self.created_at:
            return 0
        if self.metric == ACTION_COUNT:
            return 1 if action is not None and action == self.action else 0
        if self.metric == POINTS_EARNED:
            return max(points, 0)
        return 0

    def counts_referral(self, at: datetime) -> int:
        """What a referral completed at `at` adds to its referrer's score."""
        if not self.active or at < self.created_at or self.metric != REFERRAL_COUNT:
            return 0
        return 1


@dataclass
class Score:
    participant_id: str
    score: int
    reached_at: datetime


# (leaderboard id, period start) -> its top entries as read, (pk, Score), best first.
Tops = dict[tuple[str, date], list[tuple[str, Score]]]


def ranked(entries: list[tuple[str, Score]]) -> list[tuple[str, Score, int]]:
    """Entries in leaderboard order (score down, then who reached it first), with their
    competition ranks (ties share a rank; the next rank skips)."""
    ordered = sorted(entries, key=lambda entry: (-entry[1].score, entry[1].reached_at))
    result: list[tuple[str, Score, int]] = []
    for position, (pk, score) in enumerate(ordered):
        if result and result[-1][1].score == score.score:
            rank = result[-1][2]
        else:
            rank = position + 1
        result.append((pk, score, rank))
    return result


def rank_changes(
    board: LeaderboardDef,
    period: date,
    top_before: list[tuple[str, Score]],
    changed: Mapping[str, Score],
) -> list[dict[str, Any]]:
    """`leaderboard.rank_changed` payloads: who entered or left the top `notify_top`
    entries of one period, given its top before the batch and the scores it changed (by
    participant key). Only those can move in or out: an unchanged participant outside the
    top stays out."""
    limit = board.notify_top
    if limit <= 0:
        return []
    merged = dict(top_before)
    merged.update(changed)
    before = {pk: rank for pk, _, rank in ranked(top_before)[:limit]}
    after = ranked(list(merged.items()))[:limit]
    after_ranks = {pk: (score, rank) for pk, score, rank in after}
    payloads: list[dict[str, Any]] = []
    for pk, (score, rank) in after_ranks.items():
        if pk not in before:
            payloads.append(_payload(board, period, score, "entered", rank, None))
    for pk, _ in top_before:
        if pk in before and pk not in after_ranks:
            now_score = merged[pk]
            payloads.append(_payload(board, period, now_score, "left", None, before[pk]))
    return payloads


def _payload(
    board: LeaderboardDef,
    period: date,
    score: Score,
    change: str,
    rank: int | None,
    previous_rank: int | None,
) -> dict[str, Any]:
    return {
        "leaderboard_id": board.id,
        "period_start": period.isoformat(),
        "participant_id": score.participant_id,
        "change": change,
        "rank": rank,
        "previous_rank": previous_rank,
        "score": score.score,
        "top": board.notify_top,
    }
