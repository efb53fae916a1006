"""23blocks Leaderboards API: a board's entries, a user's rank and board creation, over the
native leaderboards (their Redis-cached reads; the document's prizes are stored beside the
board and shown on the entries they go to)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Literal

from flask import Blueprint
from pydantic import Field
from sqlalchemy.orm import Session

from api.audit import audit_change
from api.auth import current_principal
from api.blocks.jsonapi import (
    PREFIX,
    Attributes,
    Document,
    Kebab,
    Single,
    UnnamedSingle,
    native_model,
    one,
)
from api.blocks.limits import Family, take_family_unit
from api.endpoint import Access, endpoint
from api.engagement.program_schemas import LeaderboardCreate
from api.runtime import runtime
from api.schemas import QueryModel
from api.validation import check_participant_id, validation_failed
from app.clock import utcnow
from app.engagement.leaderboard_reads import (
    Entry,
    LeaderboardReader,
    find_leaderboard,
    leaderboard_prizes,
)
from app.engagement.leaderboards import ALL_TIME, MONTHLY, WEEKLY, LeaderboardDef
from app.engagement.program_definitions import create_leaderboard

bp = Blueprint("blocks_leaderboards", __name__, url_prefix=PREFIX)

TAG = "23blocks: leaderboards"
LEADERBOARD_NOT_FOUND = {404: ("leaderboard_not_found",)}

# The document's metric and period names -> the native ones.
METRICS = {
    "points-earned": "points_earned",
    "action-count": "action_count",
    "referral-count": "referral_count",
}
PERIODS = {"all-time": "all_time", "daily": "daily", "weekly": "weekly", "monthly": "monthly"}
# A period's first day: weeks start on Monday (ISO day 1), months on the 1st.
RESET_DAYS = {"weekly": 1, "monthly": 1}


def _document_name(names: dict[str, str], native: str) -> str:
    return next((ours for ours, theirs in names.items() if theirs == native), native)


class Prize(Attributes):
    rank: int = Field(ge=1)
    prize: str = Field(min_length=1, max_length=200)


class LeaderboardAttributes(Attributes):
    name: str
    slug: str | None = Field(default=None, min_length=1, max_length=100)
    metric: str = Field(description="points-earned, action-count or referral-count")
    action: str | None = Field(default=None, description="The action counted (action-count)")
    period: str = Field(default="all-time", description="all-time, daily, weekly or monthly")
    max_entries: int = 100
    rewards: list[Prize] | None = Field(default=None, max_length=100)
    active: bool = True


LeaderboardDocument = Document[Literal["leaderboard"], LeaderboardAttributes]


class PrizeOut(Kebab):
    rank: int
    prize: str


class LeaderboardOut(Kebab):
    name: str
    slug: str | None
    metric: str
    period: str
    reset_day: int | None = Field(description="A period's first day (weekly: ISO weekday)")
    max_entries: int
    rewards: list[PrizeOut]
    active: bool


@endpoint(
    bp,
    "POST",
    "/leaderboards",
    summary="Create a leaderboard",
    tag=TAG,
    access=Access.ADMIN,
    body=LeaderboardDocument,
    responses={201: Single[Literal["leaderboard"], LeaderboardOut]},
)
def blocks_create_leaderboard(body: LeaderboardDocument) -> tuple[dict[str, Any], int]:
    attributes = body.attributes
    native = native_model(
        LeaderboardCreate,
        {"size": "max-entries"},
        name=attributes.name,
        metric=METRICS.get(attributes.metric, attributes.metric),
        action=attributes.action,
        period=PERIODS.get(attributes.period, attributes.period),
        size=attributes.max_entries,
        notify_top=min(10, attributes.max_entries),
        active=attributes.active,
    )
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        board = create_leaderboard(session, principal.tenant_id, principal.env, native.model_dump())
        board.slug = attributes.slug
        board.prizes = [prize.model_dump() for prize in attributes.rewards or []]
        audit_change(session, "leaderboard.created", board.id, {"name": board.name})
        attributes_out = LeaderboardOut(
            name=board.name,
            slug=board.slug,
            metric=_document_name(METRICS, board.metric),
            period=_document_name(PERIODS, board.period),
            reset_day=RESET_DAYS.get(board.period),
            max_entries=board.size,
            rewards=[PrizeOut.model_validate(prize) for prize in board.prizes],
            active=board.active,
        )
        return one("leaderboard", str(board.id), attributes_out), 201


PERIOD_PATTERN = r"^(current|previous|\d{4}-\d{2}(-\d{2})?)$"


class BoardQuery(QueryModel):
    period: str = Field(
        default="current",
        pattern=PERIOD_PATTERN,
        description="current, previous, a month (YYYY-MM, monthly boards) or a period's "
        "first day (YYYY-MM-DD: a Monday for weekly, the 1st for monthly)",
    )


class EntriesQuery(BoardQuery):
    limit: int = Field(default=10, ge=1, le=1000)


class EntryOut(Kebab):
    rank: int
    user_id: str
    display_name: str | None = Field(description="Always null: users carry no profile here")
    avatar_url: str | None = Field(description="Always null: users carry no profile here")
    score: int
    prize: str | None = Field(description="The prize of this rank, if the board has one")


class BoardOut(Kebab):
    name: str
    period: str = Field(description="2026-01 for a monthly board, all-time, else its first day")
    entries: list[EntryOut]
    updated_at: datetime = Field(description="When this answer was read")


def _board(session: Session, leaderboard_id: str, asked: str) -> LeaderboardReader:
    """The reader of the asked period of the caller's board (404 for another's)."""
    principal = current_principal()
    rt = runtime()
    board = find_leaderboard(session, principal.tenant_id, principal.env, leaderboard_id)
    return LeaderboardReader(
        session, rt.redis, rt.settings.redis_key_prefix, board, _period(board, asked)
    )


def _period(board: LeaderboardDef, asked: str) -> date:
    """The first day of the period the document's `period` names."""
    current = board.period_start(utcnow())
    if asked == "current":
        return current
    if asked == "previous":
        return _previous(board.period, current)
    try:
        day = date.fromisoformat(asked if len(asked) == 10 else asked + "-01")
    except ValueError:
        day = None
    if day is None or not board.is_period_start(day):
        raise validation_failed(
            [
                {
                    "loc": ["query", "period"],
                    "msg": f"not a {board.period.replace('_', '-')} period of this board",
                    "type": "value_error",
                }
            ]
        )
    return day


def _previous(period: str, current: date) -> date:
    if period == ALL_TIME:
        return current  # one period, ever
    if period == WEEKLY:
        return current - timedelta(days=7)
    if period == MONTHLY:
        return (current - timedelta(days=1)).replace(day=1)
    return current - timedelta(days=1)


def period_label(board: LeaderboardDef, start: date) -> str:
    """The period as the document names it: 2026-01 for a month, all-time, else its first
    day."""
    if board.period == MONTHLY:
        return start.strftime("%Y-%m")
    if board.period == ALL_TIME:
        return "all-time"
    return start.isoformat()


def _entry(entry: Entry, prizes: dict[int, str]) -> EntryOut:
    return EntryOut(
        rank=entry.rank,
        user_id=entry.participant_id,
        display_name=None,
        avatar_url=None,
        score=entry.score,
        prize=prizes.get(entry.rank),
    )


@endpoint(
    bp,
    "GET",
    "/leaderboards/<leaderboard_id>",
    summary="A leaderboard's entries in one period, best first",
    tag=TAG,
    access=Access.PARTICIPANT,
    query=EntriesQuery,
    responses={200: Single[Literal["leaderboard"], BoardOut]},
    errors={**LEADERBOARD_NOT_FOUND, 429: ("rate_limit_exceeded",)},
)
def blocks_get_leaderboard(leaderboard_id: str, query: EntriesQuery) -> tuple[dict[str, Any], int]:
    take_family_unit(Family.LEADERBOARD_READS)
    with runtime().session_factory() as session:
        reader = _board(session, leaderboard_id, query.period)
        entries, _ = reader.page(query.limit, 0)
        prizes = leaderboard_prizes(session, reader.board.id)
    attributes = BoardOut(
        name=reader.board.name,
        period=period_label(reader.board, reader.period_start),
        entries=[_entry(entry, prizes) for entry in entries],
        updated_at=utcnow(),
    )
    return one("leaderboard", reader.board.id, attributes), 200


class RankOut(Kebab):
    user_id: str
    leaderboard_id: str
    rank: int | None = Field(description="null: no score in this period")
    score: int
    percentile: float | None = Field(description="Share of the other ranked users below")
    users_above: int
    users_below: int
    distance_to_next_rank: int = Field(description="Points to the entry above (0 when first)")
    updated_at: datetime


def _rank(user_id: str, board_id: str, standing: dict[str, Any], total: int) -> RankOut:
    rank, score, above = standing["rank"], standing["score"], standing["above"]
    ranked = rank is not None
    below = total - rank if ranked else 0
    others = total - 1
    return RankOut(
        user_id=user_id,
        leaderboard_id=board_id,
        rank=rank,
        score=score,
        percentile=(round(100 * below / others, 2) if others else 100.0) if ranked else None,
        users_above=rank - 1 if ranked else total,
        users_below=below,
        distance_to_next_rank=above["score"] - score if above else 0,
        updated_at=utcnow(),
    )


@endpoint(
    bp,
    "GET",
    "/leaderboards/<leaderboard_id>/rank/<user_id>",
    summary="A user's rank on a leaderboard in one period",
    tag=TAG,
    access=Access.PARTICIPANT,
    query=BoardQuery,
    responses={200: UnnamedSingle[Literal["user-leaderboard-rank"], RankOut]},
    errors={**LEADERBOARD_NOT_FOUND, 429: ("rate_limit_exceeded",)},
)
def blocks_get_rank(
    leaderboard_id: str, user_id: str, query: BoardQuery
) -> tuple[dict[str, Any], int]:
    check_participant_id(user_id)
    take_family_unit(Family.LEADERBOARD_READS)
    with runtime().session_factory() as session:
        reader = _board(session, leaderboard_id, query.period)
        standing = reader.standing(user_id)
        _, total = reader.page(0, 0)
    attributes = _rank(user_id, reader.board.id, standing, total)
    return {"data": {"type": "user-leaderboard-rank", "attributes": attributes}}, 200
