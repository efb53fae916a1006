"""Request and response models of the admin's streaks, challenges and leaderboards."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, model_validator

from api.engagement.action_schemas import MilestoneView
from api.schemas import QueryModel, RequestModel, kept_when_absent
from app.engagement.program_definitions import (
    LEADERBOARD_FIXED_FIELDS,
    STREAK_TYPE_CHARS,
    is_time_zone,
)
from app.points.items import ACTION_MAX_CHARS, AWARD_AMOUNT_MAX

STREAK_MILESTONES_MAX = 50
# A century of days: further is no goal anyone reaches.
MILESTONE_DAYS_MAX = 36_500
GRACE_PERIOD_HOURS_MAX = 168
# The column is a bigint; points challenges count credits of at most AWARD_AMOUNT_MAX.
CHALLENGE_TARGET_MAX = 10**15
DESCRIPTION_MAX_CHARS = 2000
LEADERBOARD_SIZE_MAX = 1000
NOTIFY_TOP_MAX = 100


def _time_zone(name: str) -> str:
    if not is_time_zone(name):
        raise ValueError("must be an IANA time zone name, e.g. Europe/Paris")
    return name


def _distinct_days(milestones: list[StreakMilestone]) -> list[StreakMilestone]:
    days = [milestone.days for milestone in milestones]
    if len(set(days)) != len(days):
        raise ValueError("each milestone needs its own days")
    return milestones


def _refuse(data: Any, fields: tuple[str, ...], why: str) -> Any:
    """For a before-validator: refuse a body sending any of `fields`, saying `why`. They are
    no fields of the model, so the document lists them nowhere; only the refusal names them."""
    sent = [name for name in fields if isinstance(data, dict) and name in data]
    if sent:
        raise ValueError(f"{', '.join(sent)} {why}")
    return data


StreakType = Annotated[
    str,
    Field(pattern=f"^{STREAK_TYPE_CHARS}$", description="The streak's key, e.g. daily-login"),
]
DefinitionName = Annotated[str, Field(min_length=1, max_length=200)]
ActionName = Annotated[
    str,
    Field(min_length=1, max_length=ACTION_MAX_CHARS, description="The action that counts"),
]
TimeZone = Annotated[
    str,
    Field(min_length=1, max_length=64, description="IANA name; periods are its local ones"),
    AfterValidator(_time_zone),
]
StreakPeriod = Literal["daily", "weekly"]
GraceHours = Annotated[int, Field(strict=True, ge=0, le=GRACE_PERIOD_HOURS_MAX)]
Description = Annotated[str, Field(max_length=DESCRIPTION_MAX_CHARS)]
ChallengeType = Literal["action_count", "points_earned"]
Target = Annotated[int, Field(strict=True, ge=1, le=CHALLENGE_TARGET_MAX)]
LeaderboardMetric = Literal["points_earned", "action_count", "referral_count"]
LeaderboardPeriod = Literal["all_time", "daily", "weekly", "monthly"]
LeaderboardSize = Annotated[int, Field(strict=True, ge=1, le=LEADERBOARD_SIZE_MAX)]
NotifyTop = Annotated[int, Field(strict=True, ge=0, le=NOTIFY_TOP_MAX)]


class StreakMilestone(RequestModel):
    days: int = Field(
        strict=True, ge=1, le=MILESTONE_DAYS_MAX, description="Periods in a run (days or weeks)"
    )
    points: int = Field(strict=True, ge=0, le=AWARD_AMOUNT_MAX, description="Paid once per run")


Milestones = Annotated[
    list[StreakMilestone],
    Field(max_length=STREAK_MILESTONES_MAX, description="Each with its own days; stored by days"),
    AfterValidator(_distinct_days),
]

_PERIOD_NOTE = "daily or weekly (weeks start on Monday)"
_GRACE_NOTE = "Hours after a period's end in which a late action still counts for it"


class StreakCreate(RequestModel):
    streak_type: StreakType
    name: DefinitionName
    action: ActionName
    period: StreakPeriod = Field(default="daily", description=_PERIOD_NOTE)
    timezone: TimeZone = "UTC"
    grace_period_hours: GraceHours = Field(default=0, description=_GRACE_NOTE)
    milestones: Milestones = Field(default_factory=list)
    active: bool = True


class StreakUpdate(RequestModel):
    name: DefinitionName = kept_when_absent("The streak's name")
    action: ActionName = kept_when_absent("The action that extends it")
    period: StreakPeriod = kept_when_absent(_PERIOD_NOTE)
    timezone: TimeZone = kept_when_absent("IANA name; periods are its local ones")
    grace_period_hours: GraceHours = kept_when_absent(_GRACE_NOTE)
    milestones: Milestones = kept_when_absent("The whole list, replacing the stored one")
    active: bool = kept_when_absent("false: actions stop extending it")

    @model_validator(mode="before")
    @classmethod
    def _streak_type_is_the_key(cls, data: Any) -> Any:
        return _refuse(data, ("streak_type",), "cannot change: it is the streak's key")


class StreakDefinition(BaseModel):
    streak_id: str
    streak_type: str
    name: str
    action: str
    period: StreakPeriod
    timezone: str
    grace_period_hours: int
    milestones: list[MilestoneView] = Field(description="By days")
    active: bool
    created_at: datetime
    updated_at: datetime | None


class StreakDefinitionList(BaseModel):
    streaks: list[StreakDefinition]


class PointsChallengeReward(RequestModel):
    type: Literal["points"]
    amount: int = Field(strict=True, ge=1, le=AWARD_AMOUNT_MAX, description="Points credited")


class CatalogChallengeReward(RequestModel):
    type: Literal["reward"]
    reward_id: uuid.UUID = Field(
        description="A reward of the catalog, claimed for the participant on completion"
    )


ChallengeReward = Annotated[
    PointsChallengeReward | CatalogChallengeReward, Field(discriminator="type")
]

_ACTION_NOTE = "The action counted: required for action_count, null for points_earned"
_TARGET_NOTE = "Actions (action_count) or points (points_earned) that complete it"
_REWARD_NOTE = "Paid once on completion; null: none"
_ENROLLMENT_NOTE = "true: only participants who joined are counted"


class ChallengeCreate(RequestModel):
    name: DefinitionName
    description: Description | None = None
    type: ChallengeType
    action: ActionName | None = Field(default=None, description=_ACTION_NOTE)
    target: Target = Field(description=_TARGET_NOTE)
    reward: ChallengeReward | None = Field(default=None, description=_REWARD_NOTE)
    starts_at: AwareDatetime | None = Field(default=None, description="null: at once")
    ends_at: AwareDatetime | None = Field(default=None, description="After starts_at; null: never")
    requires_enrollment: bool = Field(default=False, description=_ENROLLMENT_NOTE)
    active: bool = True


class ChallengeUpdate(RequestModel):
    name: DefinitionName = kept_when_absent("The challenge's name")
    description: Description | None = kept_when_absent("null: none")
    type: ChallengeType = kept_when_absent("action_count or points_earned")
    action: ActionName | None = kept_when_absent(_ACTION_NOTE)
    target: Target = kept_when_absent(_TARGET_NOTE)
    reward: ChallengeReward | None = kept_when_absent(_REWARD_NOTE)
    starts_at: AwareDatetime | None = kept_when_absent("null: at once")
    ends_at: AwareDatetime | None = kept_when_absent("After starts_at; null: never")
    requires_enrollment: bool = kept_when_absent(_ENROLLMENT_NOTE)
    active: bool = kept_when_absent("false: nothing counts toward it any more")


class ChallengeDefinition(BaseModel):
    challenge_id: str
    name: str
    description: str | None
    type: ChallengeType
    action: str | None
    target: int
    reward: ChallengeReward | None
    starts_at: datetime | None
    ends_at: datetime | None
    requires_enrollment: bool
    active: bool
    participants_count: int = Field(description="Participants enrolled or counted")
    completions_count: int
    created_at: datetime
    updated_at: datetime | None


class ChallengeDefinitionList(BaseModel):
    challenges: list[ChallengeDefinition]


_SIZE_NOTE = "How many entries the board shows"
_NOTIFY_TOP_NOTE = "How many of the top are notified (at most size)"
_LEADERBOARD_ACTION_NOTE = "The action counted: required for action_count, absent otherwise"


class LeaderboardCreate(RequestModel):
    name: DefinitionName
    metric: LeaderboardMetric = Field(
        description="What a score counts: points_earned (every credit), action_count (actions "
        "of `action`), referral_count (referrals completed as referrer)"
    )
    action: ActionName | None = Field(default=None, description=_LEADERBOARD_ACTION_NOTE)
    period: LeaderboardPeriod = Field(
        default="all_time", description="The board starts anew each period, in its time zone"
    )
    timezone: TimeZone = "UTC"
    size: LeaderboardSize = Field(default=100, description=_SIZE_NOTE)
    notify_top: NotifyTop = Field(default=10, description=_NOTIFY_TOP_NOTE)
    active: bool = True


class LeaderboardUpdate(RequestModel):
    name: DefinitionName = kept_when_absent("The leaderboard's name")
    size: LeaderboardSize = kept_when_absent(_SIZE_NOTE)
    notify_top: NotifyTop = kept_when_absent(_NOTIFY_TOP_NOTE)
    active: bool = kept_when_absent("false: deactivated")

    @model_validator(mode="before")
    @classmethod
    def _fixed_once_created(cls, data: Any) -> Any:
        return _refuse(
            data, LEADERBOARD_FIXED_FIELDS, "cannot change once a leaderboard is created"
        )


class LeaderboardDefinition(BaseModel):
    leaderboard_id: str
    name: str
    metric: LeaderboardMetric
    action: str | None
    period: LeaderboardPeriod
    timezone: str
    size: int
    notify_top: int
    active: bool
    created_at: datetime
    updated_at: datetime | None


class LeaderboardDefinitionList(BaseModel):
    leaderboards: list[LeaderboardDefinition]


class DefinitionsQuery(QueryModel):
    active: bool | None = Field(
        default=None, description="true: only active definitions; false: only deactivated"
    )
