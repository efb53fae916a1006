"""Request and response models of actions and participants' badges."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_validator,
)

from api.points.schemas import BatchItemError, IdempotencyKey, ParticipantId, TierUpgradeBody
from api.schemas import QueryModel, RequestModel
from app.clock import utcnow
from app.engagement.actions import PROPERTIES_MAX_BYTES, check_occurred_at, check_properties
from app.points.items import ACTION_MAX_CHARS, InvalidItem

BATCH_MAX_ACTIONS = 100

PropertyValue = StrictBool | StrictInt | StrictFloat | str


class ActionRequest(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "participant_id": "user_42",
                    "action": "purchase",
                    "properties": {"amount": 59.9, "channel": "web"},
                }
            ]
        }
    )
    participant_id: ParticipantId
    action: str = Field(min_length=1, max_length=ACTION_MAX_CHARS, description="e.g. purchase")
    properties: dict[str, PropertyValue] | None = Field(
        default=None,
        description=f"A flat object of numbers, strings and booleans, at most "
        f"{PROPERTIES_MAX_BYTES} bytes as JSON; earning rules read its numbers",
    )
    occurred_at: AwareDatetime | None = Field(
        default=None,
        description="When it happened (not in the future); default: when it was accepted. "
        "It counts in the streak, challenge and rule periods of this moment",
    )
    idempotency_key: IdempotencyKey

    @model_validator(mode="after")
    def _checked_like_batch_items(self) -> ActionRequest:
        try:
            check_properties(self.properties)
            check_occurred_at(self.occurred_at, utcnow())
        except InvalidItem as problem:
            raise ValueError(str(problem)) from None
        return self

    def payload(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "participant_id": self.participant_id,
            "action": self.action,
            "properties": self.properties or {},
        }
        if self.occurred_at is not None:
            fields["occurred_at"] = self.occurred_at.isoformat()
        return fields


class ActionBatchRequest(RequestModel):
    checked_per_item = frozenset({"actions"})

    actions: list[Any] = Field(
        min_length=1,
        max_length=BATCH_MAX_ACTIONS,
        description="1 to 100 objects {participant_id, action, properties?, occurred_at?}. "
        "Each is checked on its own: a bad one gets an error in `results` and the others are "
        "still applied.",
    )
    idempotency_key: IdempotencyKey


class RulePoints(BaseModel):
    rule_id: str | None
    points: int = Field(description="Points credited, after tier and reward multipliers")
    transaction_id: str


class BadgeAwardedBody(BaseModel):
    badge_id: str
    name: str
    points: int | None = Field(description="The badge's points reward as credited, if any")
    transaction_id: str | None


class ActionResponse(BaseModel):
    action_id: str
    participant_id: str
    action: str
    occurred_at: datetime
    points_awarded: list[RulePoints] = Field(description="One per earning rule that paid")
    badges_awarded: list[BadgeAwardedBody]
    streaks: list[dict[str, Any]]
    challenges: list[dict[str, Any]]
    tier_upgrade: TierUpgradeBody | None
    new_balance: int


class BatchActionResult(BaseModel):
    action_id: str | None
    participant_id: str | None
    action: str | None
    occurred_at: datetime | None = None
    points_awarded: list[RulePoints] = Field(default_factory=list)
    badges_awarded: list[BadgeAwardedBody] = Field(default_factory=list)
    streaks: list[dict[str, Any]] = Field(default_factory=list)
    challenges: list[dict[str, Any]] = Field(default_factory=list)
    tier_upgrade: TierUpgradeBody | None = None
    new_balance: int | None = None
    error: BatchItemError | None


class ActionBatchResponse(BaseModel):
    processed: int
    failed: int
    results: list[BatchActionResult] = Field(description="One per action, in request order")


class BadgeAwardRequest(RequestModel):
    participant_id: ParticipantId
    badge_id: str = Field(min_length=1, max_length=64)
    idempotency_key: IdempotencyKey


class BadgeAwardResponse(BaseModel):
    participant_id: str
    badge_id: str
    name: str
    awarded_at: datetime
    points_awarded: int | None = Field(description="The badge's points reward, if any")
    transaction_id: str | None
    badges_awarded: list[BadgeAwardedBody] = Field(
        description="Further badges the reward's points reached"
    )
    tier_upgrade: TierUpgradeBody | None
    new_balance: int


class EarnedBadge(BaseModel):
    badge_id: str
    name: str
    description: str | None
    image_url: str | None
    category: str | None
    awarded_at: datetime
    source: str = Field(description="criteria or manual")


class EarnedBadges(BaseModel):
    participant_id: str
    badges: list[EarnedBadge]


class BadgeProgressView(BaseModel):
    participant_id: str
    badge_id: str
    name: str
    current: int
    target: int
    progress_percentage: float
    earned: bool
    awarded_at: datetime | None


class StreakRecordRequest(RequestModel):
    participant_id: ParticipantId
    streak_type: str = Field(min_length=1, max_length=100)
    idempotency_key: IdempotencyKey


class StreakRecordResponse(BaseModel):
    participant_id: str
    streak_type: str
    previous_count: int
    current_count: int
    longest_count: int
    counted: bool = Field(description="False: this period was already counted")
    milestone_reached: int | None = Field(description="The milestone (days) this reached")
    bonus_points: int = Field(description="Points the milestone credited")
    next_deadline: datetime | None = Field(
        description="When the streak breaks unless extended: the end of the next period, "
        "plus the grace hours"
    )
    badges_awarded: list[BadgeAwardedBody]
    tier_upgrade: TierUpgradeBody | None
    new_balance: int


class MilestoneView(BaseModel):
    days: int
    points: int


class StreakView(BaseModel):
    streak_type: str
    name: str
    period: str
    current_count: int
    longest_count: int
    last_activity_at: datetime | None
    next_deadline: datetime | None
    next_milestone: MilestoneView | None
    milestones_reached: list[int] = Field(description="Milestones paid in the current run")


class ParticipantStreaks(BaseModel):
    participant_id: str
    streaks: list[StreakView]


class ParticipantStreak(StreakView):
    participant_id: str


class ChallengeJoinRequest(RequestModel):
    participant_id: ParticipantId
    idempotency_key: IdempotencyKey


class ChallengeJoinResponse(BaseModel):
    participant_id: str
    challenge_id: str
    enrolled_at: datetime
    current: int
    target: int
    completed: bool


class ChallengeProgressView(BaseModel):
    challenge_id: str
    current: int
    target: int
    progress_percentage: float
    completed: bool
    completed_at: datetime | None
    enrolled: bool
    time_remaining_seconds: int | None = Field(description="Until the challenge ends; null: never")


class ParticipantChallenge(ChallengeProgressView):
    participant_id: str


class ChallengeSummary(BaseModel):
    challenge_id: str
    name: str
    description: str | None
    type: str
    action: str | None
    target: int
    reward: dict[str, Any] | None
    starts_at: datetime | None
    ends_at: datetime | None
    requires_enrollment: bool
    active: bool
    running: bool = Field(description="Active, started and not ended")
    participants_count: int
    completions_count: int
    progress: ChallengeProgressView | None = Field(
        default=None, description="The participant's, when participant_id is given"
    )


class ChallengeList(BaseModel):
    challenges: list[ChallengeSummary]


class ChallengesQuery(QueryModel):
    participant_id: str | None = Field(default=None, min_length=1, max_length=255)
    active: bool | None = Field(default=None, description="true: only challenges running now")


def _calendar_date(value: Any) -> Any:
    """Query strings read as YYYY-MM-DD only: pydantic would also read "0" as a Unix time."""
    if not isinstance(value, str):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a date, YYYY-MM-DD") from None


PeriodStart = Annotated[date | None, BeforeValidator(_calendar_date)]


class LeaderboardQuery(QueryModel):
    period_start: PeriodStart = Field(
        default=None,
        description="The first day of the period (YYYY-MM-DD: a Monday for weekly, the 1st "
        "for monthly); default: the current period in the leaderboard's time zone",
    )
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=1000)


class LeaderboardPeriodQuery(QueryModel):
    period_start: PeriodStart = Field(default=None, description="As for the leaderboard")


class LeaderboardEntry(BaseModel):
    rank: int = Field(description="Competition style: ties share a rank (1, 1, 3)")
    participant_id: str
    score: int


class LeaderboardPage(BaseModel):
    leaderboard_id: str
    name: str
    metric: str
    period: str
    period_start: date
    total: int = Field(description="Entries in this period, up to the leaderboard's size")
    entries: list[LeaderboardEntry] = Field(
        description="Best first; ties by who reached the score first"
    )


class LeaderboardStanding(BaseModel):
    leaderboard_id: str
    period_start: date
    participant_id: str
    rank: int | None = Field(description="null: no score in this period")
    score: int
    above: LeaderboardEntry | None
    below: LeaderboardEntry | None
