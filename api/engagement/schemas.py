"""Request and response models of the earning-rule and badge admin endpoints.

The JSON columns (a rule's conditions, multipliers and caps, a badge's criteria) are
checked here key by key and stored in exactly the shapes app.engagement.rules reads:
the keys sent, numbers as JSON numbers, dates as "YYYY-MM-DD".
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfoNotFoundError

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, model_validator

from api.schemas import QueryModel, RequestModel
from app.engagement.formula import FORMULA_MAX_CHARS, compile_formula
from app.engagement.rules import RULE_POINTS_MAX, zone
from app.points.items import ACTION_MAX_CHARS, AWARD_AMOUNT_MAX

# Caps and badge thresholds: far above any real count, and within the bigint counters
# they are compared with (rule usage, badge progress).
COUNT_MAX = 10**15
DATED_FACTORS_MAX = 100
TIMEZONE_MAX_CHARS = 64  # the column's width


def _no_default_in_schema(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _optional(description: str | None = None, **constraints: Any) -> Any:
    """A field that may be left out: a PATCH field not sent keeps its value, an object's key
    not sent is not stored. Unless its type allows it, null is refused (the None default is
    never validated), and the document shows no default."""
    return Field(
        default=None,
        description=description,
        json_schema_extra=_no_default_in_schema,
        **constraints,
    )


def _formula_compiles(text: str) -> str:
    # FormulaError is a ValueError: its message becomes the field's error.
    compile_formula(text)
    return text


def _known_zone(name: str) -> str:
    # The rules load their zone with the same function, so any name taken here loads there.
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError("must be an IANA time zone name, such as Europe/Paris") from None
    return name


def _in_utc(moment: datetime) -> datetime:
    # As the database gives it back: a created rule reads the same as when fetched.
    return moment.astimezone(UTC)


def _web_address(url: str) -> str:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    if not host:
        raise ValueError("must be an http(s) URL with a host")
    return url


Name = Annotated[str, Field(min_length=1, max_length=200)]
ActionName = Annotated[str, Field(min_length=1, max_length=ACTION_MAX_CHARS)]
FormulaText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=FORMULA_MAX_CHARS,
        description="Points for an action: numbers, the action's numeric properties by name, "
        "+ - * / ( ), min(), max(), floor(), round(); floored, never below 0. Example: "
        "floor(amount / 10)",
    ),
    AfterValidator(_formula_compiles),
]
Timezone = Annotated[
    str,
    Field(
        min_length=1,
        max_length=TIMEZONE_MAX_CHARS,
        description="IANA time zone of the rule's days (weekend, holidays, dated factors, "
        "per-day cap)",
    ),
    AfterValidator(_known_zone),
]
Instant = Annotated[AwareDatetime, AfterValidator(_in_utc)]
MaxPoints = Annotated[int, Field(ge=0, le=RULE_POINTS_MAX)]
# Whole numbers stay whole in the stored JSON; neither kind may be NaN or infinite.
NonNegativeNumber = Annotated[int, Field(ge=0)] | Annotated[float, Field(ge=0, allow_inf_nan=False)]
Factor = Annotated[int, Field(gt=0)] | Annotated[float, Field(gt=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1, le=COUNT_MAX)]
PropertyValue = str | bool | int | Annotated[float, Field(allow_inf_nan=False)]
Description = Annotated[str, Field(max_length=2000)]
ImageUrl = Annotated[
    str, Field(max_length=2048, pattern=r"^https?://\S+$"), AfterValidator(_web_address)
]
Category = Annotated[str, Field(min_length=1, max_length=100)]
PointsReward = Annotated[
    int, Field(ge=0, le=AWARD_AMOUNT_MAX, description="Points credited when the badge is earned")
]


def _stored(model: BaseModel, names: Iterable[str]) -> dict[str, Any]:
    """The named fields as the definitions are stored: nested objects as JSON with the keys
    sent (the ones left out are not stored), the rest as they are."""
    values: dict[str, Any] = {}
    for name in names:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json", by_alias=True, exclude_unset=True)
        values[name] = value
    return values


class RuleConditions(RequestModel):
    min_amount: NonNegativeNumber = _optional(
        "The action's `amount` property must be a number at least this"
    )
    equals: dict[Annotated[str, Field(min_length=1)], PropertyValue] = _optional(
        "Each named property must equal its value (true equals only a boolean true)"
    )


class DatedFactor(RequestModel):
    # `from` is a Python keyword: the field goes by its alias on the wire.
    first: date = Field(alias="from", description="First day, YYYY-MM-DD (the rule's zone)")
    last: date = Field(alias="to", description="Last day, included")
    factor: Factor

    @model_validator(mode="after")
    def _from_not_after_to(self) -> DatedFactor:
        if self.first > self.last:
            raise ValueError("from must not be after to")
        return self


class RuleMultipliers(RequestModel):
    weekend: Factor = _optional("Factor on Saturdays and Sundays (the rule's zone)")
    holiday: Factor = _optional(
        "Factor on the program's holidays (PATCH /admin/program `holidays`; the rule's zone); "
        "on a holiday that is also a weekend day both apply, multiplied"
    )
    dates: list[DatedFactor] = _optional(
        "Factors on date spans; they multiply with each other and the weekend's and holiday's",
        max_length=DATED_FACTORS_MAX,
    )


class RuleCaps(RequestModel):
    per_day: Count = _optional("Most points the rule credits a participant in a day")
    total: Count = _optional("Most points the rule credits a participant, ever")


_WINDOW_NOTE = "ISO 8601 with a time zone; the rule applies to actions that occurred "


class EarningRuleCreate(RequestModel):
    name: Name
    action: ActionName = Field(description="The action name the rule earns on")
    formula: FormulaText
    conditions: RuleConditions | None = None
    max_points: MaxPoints | None = Field(
        default=None,
        description=f"Most points one action earns from the rule (never above {RULE_POINTS_MAX})",
    )
    multipliers: RuleMultipliers | None = None
    caps: RuleCaps | None = None
    timezone: Timezone = "UTC"
    active: bool = True
    starts_at: Instant | None = Field(default=None, description=_WINDOW_NOTE + "from then")
    ends_at: Instant | None = Field(default=None, description=_WINDOW_NOTE + "before then")

    @model_validator(mode="after")
    def _ends_after_it_starts(self) -> EarningRuleCreate:
        if self.starts_at is not None and self.ends_at is not None:
            if self.ends_at <= self.starts_at:
                raise ValueError("ends_at must be after starts_at")
        return self

    def fields(self) -> dict[str, Any]:
        """Every field, as app.engagement.definitions stores it."""
        return _stored(self, type(self).model_fields)


class EarningRuleUpdate(RequestModel):
    """Fields not sent keep their values; the rule they make is checked as a whole."""

    name: Name = _optional()
    action: ActionName = _optional()
    formula: FormulaText = _optional()
    conditions: RuleConditions | None = _optional("null: no conditions")
    max_points: MaxPoints | None = _optional("null: no limit")
    multipliers: RuleMultipliers | None = _optional("null: no multipliers")
    caps: RuleCaps | None = _optional("null: no caps")
    timezone: Timezone = _optional()
    active: bool = _optional()
    starts_at: Instant | None = _optional("null: from the start")
    ends_at: Instant | None = _optional("null: no end")

    def changes(self) -> dict[str, Any]:
        """The fields sent, as app.engagement.definitions stores them."""
        return _stored(self, self.model_fields_set)


class EarningRuleView(BaseModel):
    rule_id: str
    name: str
    action: str
    formula: str
    conditions: dict[str, Any] | None = Field(description="{min_amount?, equals?}")
    max_points: int | None
    multipliers: dict[str, Any] | None = Field(
        description="{weekend?, holiday?, dates?: [{from, to, factor}]}"
    )
    caps: dict[str, Any] | None = Field(description="{per_day?, total?}")
    timezone: str
    active: bool
    starts_at: datetime | None
    ends_at: datetime | None
    created_at: datetime
    updated_at: datetime | None


class EarningRuleList(BaseModel):
    earning_rules: list[EarningRuleView] = Field(description="Oldest first")


class EarningRulesQuery(QueryModel):
    action: ActionName | None = None
    active: bool | None = None


class ActionCountCriteria(RequestModel):
    type: Literal["action_count"]
    action: ActionName
    count: Count = Field(description="Earned with this many actions of the name")


class PointsEarnedCriteria(RequestModel):
    type: Literal["points_earned"]
    points: Count = Field(description="Earned once this many points were earned")


class StreakCriteria(RequestModel):
    type: Literal["streak"]
    streak_type: str = Field(min_length=1, max_length=100)
    days: Count = Field(description="Earned when a run of the streak reaches this many periods")


class ChallengeCompletedCriteria(RequestModel):
    type: Literal["challenge_completed"]
    challenge_id: uuid.UUID = Field(description="Earned on completing this challenge")


class ManualCriteria(RequestModel):
    type: Literal["manual"]


BadgeCriteria = Annotated[
    ActionCountCriteria
    | PointsEarnedCriteria
    | StreakCriteria
    | ChallengeCompletedCriteria
    | ManualCriteria,
    Field(
        discriminator="type",
        description="How the badge is earned, counted from the badge's creation; a change "
        "keeps the progress counted so far",
    ),
]


class BadgeCreate(RequestModel):
    name: Name
    description: Description | None = None
    image_url: ImageUrl | None = None
    category: Category | None = None
    criteria: BadgeCriteria
    points_reward: PointsReward | None = None
    active: bool = True

    def fields(self) -> dict[str, Any]:
        """Every field, as app.engagement.definitions stores it."""
        return _stored(self, type(self).model_fields)


class BadgeUpdate(RequestModel):
    """Fields not sent keep their values."""

    name: Name = _optional()
    description: Description | None = _optional()
    image_url: ImageUrl | None = _optional()
    category: Category | None = _optional()
    criteria: BadgeCriteria = _optional()
    points_reward: PointsReward | None = _optional()
    active: bool = _optional()

    def changes(self) -> dict[str, Any]:
        """The fields sent, as app.engagement.definitions stores them."""
        return _stored(self, self.model_fields_set)


class BadgeView(BaseModel):
    badge_id: str
    name: str
    description: str | None
    image_url: str | None
    category: str | None
    criteria: dict[str, Any] = Field(
        description='{"type": "action_count", "action", "count"}, '
        '{"type": "points_earned", "points"} or {"type": "manual"}'
    )
    points_reward: int | None
    active: bool = Field(description="false: deactivated, no longer earned")
    created_at: datetime
    updated_at: datetime | None


class BadgeList(BaseModel):
    badges: list[BadgeView] = Field(description="Oldest first")


class BadgesQuery(QueryModel):
    category: Category | None = None
    active: bool | None = None
