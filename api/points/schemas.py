"""Request and response models of the Points and Tiers APIs."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from api.schemas import QueryModel, RequestModel, kept_when_absent
from app.clock import utcnow
from app.points.items import (
    ACTION_MAX_CHARS,
    AWARD_AMOUNT_MAX,
    AWARD_AMOUNT_MIN,
    PARTICIPANT_ID_MAX_CHARS,
    REASON_MAX_CHARS,
    AwardItem,
    item_fields,
)
from app.points.lots import EXPIRES_IN_DAYS_MAX, PENDING_DAYS_MAX, LotTerms
from app.points.program import (
    EXPIRING_SOON_DAYS_MAX,
    EXPIRING_SOON_DAYS_MIN,
    HOLIDAYS_MAX,
    POINTS_EXPIRY_DAYS_MAX,
    POINTS_EXPIRY_DAYS_MIN,
    TIER_WINDOW_DAYS_MAX,
    TIER_WINDOW_DAYS_MIN,
    stored_holidays,
)
from app.points.queries import ENTRY_TYPE_MAX_CHARS, Direction, TransactionFilter
from app.points.tier_status import TIER_REASON_MAX_CHARS

ParticipantId = Annotated[
    str,
    Field(min_length=1, max_length=PARTICIPANT_ID_MAX_CHARS),
]
# Strict: "100", 100.0 and true are not amounts.
Amount = Annotated[int, Field(strict=True, ge=AWARD_AMOUNT_MIN, le=AWARD_AMOUNT_MAX)]
Reason = Annotated[
    str | None,
    Field(default=None, max_length=REASON_MAX_CHARS),
]
IdempotencyKey = Annotated[
    str | None,
    Field(default=None, description="Same as the Idempotency-Key header; prevents duplicates"),
]
Metadata = Annotated[
    dict[str, Any] | None,
    Field(default=None, description="Custom data"),
]

BATCH_MAX_AWARDS = 100


Action = Annotated[
    str | None,
    Field(
        default=None,
        min_length=1,
        max_length=ACTION_MAX_CHARS,
        description="What the participant did to earn the points (filters the history)",
    ),
]


_NO_TERMS_ASKED = (None, None, None, None)


class AwardRequest(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"participant_id": "user_42", "amount": 250, "reason": "Order #1042"},
                {"participant_id": "user_42", "amount": 40, "action": "purchase"},
            ]
        }
    )
    participant_id: ParticipantId
    amount: Amount
    reason: Reason
    metadata: Metadata
    idempotency_key: IdempotencyKey
    action: Action
    expires_in_days: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=EXPIRES_IN_DAYS_MAX,
        description="The points expire this many days after the award (or use expires_at; "
        "neither: the program's points_expiry_days, counted from availability, or never)",
    )
    expires_at: AwareDatetime | None = Field(
        default=None, description="When the points expire (in the future)"
    )
    pending_days: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=PENDING_DAYS_MAX,
        description="The points are pending (not spendable) this many days (or available_at)",
    )
    available_at: AwareDatetime | None = Field(
        default=None, description="When pending points become available (in the future)"
    )

    @model_validator(mode="after")
    def _lot_terms_agree(self) -> AwardRequest:
        terms = self.lot_terms()
        problem = terms.problem(utcnow()) if terms is not None else None
        if problem is not None:
            raise ValueError(problem)
        return self

    def lot_terms(self) -> LotTerms | None:
        """The terms asked for; None for none (the everyday award: checked for nothing)."""
        terms = (self.expires_in_days, self.expires_at, self.pending_days, self.available_at)
        return None if terms == _NO_TERMS_ASKED else LotTerms(*terms)

    def payload(self) -> dict[str, Any]:
        """The operation's payload: the award as asked, as a batch item's would be."""
        return item_fields(
            AwardItem(
                self.participant_id,
                self.amount,
                self.reason,
                self.metadata,
                self.action,
                self.lot_terms(),
            )
        )


class DeductRequest(RequestModel):
    participant_id: ParticipantId
    amount: Amount
    reason: Reason
    metadata: Metadata
    idempotency_key: IdempotencyKey


class AwardBatchRequest(RequestModel):
    checked_per_item = frozenset({"awards"})

    awards: list[Any] = Field(
        min_length=1,
        max_length=BATCH_MAX_AWARDS,
        description=(
            "1 to 100 objects {participant_id, amount, reason?, metadata?, action?, "
            "expires_in_days? | expires_at?, pending_days? | available_at?}. Each is checked "
            "on its own: a bad one gets an error in `results` and the others are still "
            "awarded."
        ),
    )
    idempotency_key: IdempotencyKey


class TierUpgradeBody(BaseModel):
    code: str
    name: str
    level: int
    previous_code: str | None
    previous_level: int | None


class AwardResponse(BaseModel):
    transaction_id: str
    participant_id: str
    amount: int = Field(description="Points credited, after tier and reward multipliers")
    new_balance: int = Field(description="The available balance (pending points excluded)")
    tier_upgrade: TierUpgradeBody | None
    available_at: datetime | None = Field(
        default=None, description="When the points become available; null: at once"
    )
    expires_at: datetime | None = Field(
        default=None, description="When the points expire; null: never"
    )


class DeductResponse(BaseModel):
    transaction_id: str
    participant_id: str
    amount: int
    new_balance: int


class BatchItemError(BaseModel):
    code: str
    detail: str


class BatchAwardResult(BaseModel):
    participant_id: str | None
    transaction_id: str | None
    amount: int | None
    new_balance: int | None
    tier_upgrade: TierUpgradeBody | None = None
    available_at: datetime | None = None
    expires_at: datetime | None = None
    error: BatchItemError | None


class AwardBatchResponse(BaseModel):
    processed: int = Field(description="Awards applied")
    failed: int = Field(description="Awards rejected, each with its error in results")
    results: list[BatchAwardResult] = Field(description="One per award, in request order")


class CurrentTier(BaseModel):
    code: str
    name: str
    level: int
    points_multiplier: float


class NextTier(BaseModel):
    code: str
    name: str
    level: int
    points_required: int


class TierStanding(BaseModel):
    current: CurrentTier | None
    next: NextTier | None
    qualifying_points: int = Field(
        description="Points earned ever (lifetime basis) or in the program's window (rolling)"
    )
    points_to_next: int | None


class ActiveMultiplierView(BaseModel):
    multiplier: float
    starts_at: datetime
    expires_at: datetime | None
    claim_id: str | None


class PointsBalance(BaseModel):
    participant_id: str
    balance: int = Field(description="Available points: what can be spent")
    pending: int = Field(description="Awarded, not yet available")
    total_earned: int = Field(description="Points that became available, ever")
    total_spent: int
    total_expired: int
    lifetime_value: int = Field(description="Points earned, ever (pending excluded)")
    expiring_soon: int = Field(
        description="Unspent points expiring within the program's expiring_soon_days"
    )
    expiring_soon_date: datetime | None = Field(description="The soonest of those expiries")
    updated_at: datetime | None
    tier: TierStanding
    multipliers: list[ActiveMultiplierView]
    effective_multiplier: float = Field(description="Tier multiplier times active multipliers")


class TransactionView(BaseModel):
    transaction_id: str
    type: str = Field(description="award, deduct, claim, expire, release, ...")
    direction: Direction = Field(
        description="credit: points in (a positive amount, or a release); debit: points out"
    )
    amount: int = Field(description="Signed: credits positive, debits negative")
    base_amount: int = Field(description="Before multipliers")
    multipliers: list[dict[str, Any]] | None
    reason: str | None
    action: str | None = Field(description="What the participant did to earn an award")
    balance_after: int
    created_at: datetime
    expires_at: datetime | None = Field(
        description="Credits: when the points expire; null for never, and for debits"
    )
    available_at: datetime | None = Field(
        description="Credits: when pending points become spendable; null when they were "
        "spendable at once, and for debits"
    )
    metadata: dict[str, Any] | None


class TransactionsPage(BaseModel):
    transactions: list[TransactionView]
    total: int = Field(description="Transactions matching the filters")
    page: int
    page_size: int


_ZONE_NOTE = "ISO 8601 with a time zone (Z, or +hh:mm with + sent as %2B)"


def _iso_8601(value: Any) -> Any:
    """Query strings parsed as ISO 8601 only: pydantic would also read "1700000000" as
    Unix time, which the document does not promise."""
    if not isinstance(value, str):
        return value
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an ISO 8601 date-time with a time zone") from None


# A naive result (no zone given) is then refused by AwareDatetime.
IsoInstant = Annotated[AwareDatetime, BeforeValidator(_iso_8601)]


class TransactionsQuery(QueryModel):
    page: int = Field(default=1, ge=1, le=1_000_000)
    page_size: int = Field(default=20, ge=1, le=100)
    direction: Direction | None = None
    type: str | None = Field(
        default=None,
        min_length=1,
        max_length=ENTRY_TYPE_MAX_CHARS,
        description="Ledger entry type: award, deduct, claim, expire, release, ...",
    )
    action: str | None = Field(default=None, min_length=1, max_length=ACTION_MAX_CHARS)
    # `from` is a Python keyword: the field goes by its alias on the wire.
    created_from: IsoInstant | None = Field(
        default=None, alias="from", description=f"Created at or after; {_ZONE_NOTE}"
    )
    created_before: IsoInstant | None = Field(
        default=None, alias="to", description=f"Created before (exclusive); {_ZONE_NOTE}"
    )

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size

    def ledger_filter(self) -> TransactionFilter:
        """The ledger query's filter (the API's history and the console's ledger)."""
        return TransactionFilter(
            direction=self.direction,
            entry_type=self.type,
            action=self.action,
            created_from=self.created_from,
            created_before=self.created_before,
        )


TierCode = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
TierName = Annotated[str, Field(min_length=1, max_length=200)]
TierLevel = Annotated[int, Field(strict=True, ge=0, le=1000)]
PointsRequired = Annotated[int, Field(strict=True, ge=0, le=10**15)]
Multiplier = Annotated[Decimal, Field(gt=0, le=1000, decimal_places=3)]
Benefits = Annotated[
    list[Annotated[str, Field(max_length=500)]],
    Field(max_length=50),
]
Color = Annotated[str, Field(pattern=r"^#(?:[0-9A-Fa-f]{3}|[0-9A-Fa-f]{6}|[0-9A-Fa-f]{8})$")]


class TierCreate(RequestModel):
    code: TierCode
    name: TierName
    level: TierLevel
    points_required: PointsRequired = Field(description="Lifetime points (total_earned)")
    points_multiplier: Multiplier = Field(
        default=Decimal(1), description="Applied to awards while in this tier"
    )
    benefits: Benefits = Field(default_factory=list)
    color: Color | None = None
    is_active: bool = True


class TierUpdate(RequestModel):
    name: TierName | None = None
    level: TierLevel | None = None
    points_required: PointsRequired | None = None
    points_multiplier: Multiplier | None = None
    benefits: Benefits | None = None
    color: Color | None = None
    is_active: bool | None = None

    @model_validator(mode="after")
    def _required_fields_are_not_cleared(self) -> TierUpdate:
        for name in ("name", "level", "points_required", "points_multiplier", "is_active"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class TierView(BaseModel):
    code: str
    name: str
    level: int
    points_required: int
    points_multiplier: float
    benefits: list[str]
    color: str | None
    is_active: bool
    created_at: datetime
    updated_at: datetime | None


class TierList(BaseModel):
    tiers: list[TierView]


PointsExpiryDays = Annotated[
    int, Field(strict=True, ge=POINTS_EXPIRY_DAYS_MIN, le=POINTS_EXPIRY_DAYS_MAX)
]
ExpiringSoonDays = Annotated[
    int, Field(strict=True, ge=EXPIRING_SOON_DAYS_MIN, le=EXPIRING_SOON_DAYS_MAX)
]
_POINTS_EXPIRY_NOTE = "Days until awarded points expire when the award names no expiry; null: never"
_EXPIRING_SOON_NOTE = "A balance's expiring_soon counts points expiring within this many days"


_TIER_QUALIFICATION_NOTE = (
    'How tiers qualify: {"basis": "lifetime"} (points earned ever) or {"basis": "rolling", '
    '"window_days": N} (points earned in the last N days; a sweep moves a participant down '
    "when its points leave the window)"
)


class TierQualification(RequestModel):
    basis: Literal["lifetime", "rolling"]
    window_days: int | None = Field(
        default=None, strict=True, ge=TIER_WINDOW_DAYS_MIN, le=TIER_WINDOW_DAYS_MAX
    )

    @model_validator(mode="after")
    def _window_goes_with_rolling(self) -> TierQualification:
        if self.basis == "rolling" and self.window_days is None:
            raise ValueError("a rolling basis needs window_days")
        if self.basis == "lifetime" and self.window_days is not None:
            raise ValueError("a lifetime basis takes no window_days")
        return self


_HOLIDAYS_NOTE = (
    f"The program's holidays, YYYY-MM-DD (at most {HOLIDAYS_MAX}; kept sorted, each once): "
    "the days earning rules' `holiday` multipliers apply, in each rule's time zone"
)
Holidays = Annotated[list[date], Field(max_length=HOLIDAYS_MAX)]


class ProgramUpdate(RequestModel):
    points_expiry_days: PointsExpiryDays | None = kept_when_absent(_POINTS_EXPIRY_NOTE)
    expiring_soon_days: ExpiringSoonDays = kept_when_absent(_EXPIRING_SOON_NOTE)
    tier_qualification: TierQualification = kept_when_absent(_TIER_QUALIFICATION_NOTE)
    holidays: Holidays = kept_when_absent(_HOLIDAYS_NOTE + "; [] clears them")

    def changes(self) -> dict[str, Any]:
        """The program fields sent, as app.points.program stores them."""
        changes = self.model_dump(exclude_unset=True, exclude={"tier_qualification", "holidays"})
        if "tier_qualification" in self.model_fields_set:
            changes["tier_window_days"] = self.tier_qualification.window_days
        if "holidays" in self.model_fields_set:
            changes["holidays"] = stored_holidays(self.holidays)
        return changes


class TierQualificationView(BaseModel):
    basis: Literal["lifetime", "rolling"]
    window_days: int | None


class ProgramView(BaseModel):
    points_expiry_days: int | None = Field(description=_POINTS_EXPIRY_NOTE)
    expiring_soon_days: int = Field(description=_EXPIRING_SOON_NOTE)
    tier_qualification: TierQualificationView = Field(description=_TIER_QUALIFICATION_NOTE)
    holidays: list[date] = Field(description=_HOLIDAYS_NOTE)
    updated_at: datetime | None = Field(description="Last change; null while the defaults hold")


class TierReference(BaseModel):
    code: str
    name: str
    level: int


class ParticipantTierStatus(BaseModel):
    participant_id: str
    current_tier: TierReference | None = Field(description="null below every tier")
    next_tier: NextTier | None = Field(description="null at the top")
    qualifying_points: int = Field(
        description="Points earned ever (lifetime basis) or in the program's window (rolling)"
    )
    points_to_next_tier: int | None
    progress_percentage: float = Field(
        description="qualifying_points / next tier's points_required x 100, two decimals; "
        "100 at the top"
    )
    tier_since: datetime | None
    tier_expires_at: datetime | None = Field(
        description="Rolling basis: when the tier lapses unless new points come (null: "
        "lifetime basis, no tier, or a tier that never lapses)"
    )
    points_to_maintain: int | None = Field(
        description="Rolling basis: points still to earn in the window to keep the tier "
        "(null: lifetime basis or no tier)"
    )
    tier_locked_until: datetime | None = Field(description="A tier set by hand is kept until")


class ParticipantTierUpdate(RequestModel):
    tier_code: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=TIER_REASON_MAX_CHARS)
    locked_until: AwareDatetime | None = Field(
        default=None, description="Awards do not move the tier until then (in the future)"
    )

    @model_validator(mode="after")
    def _locked_until_is_ahead(self) -> ParticipantTierUpdate:
        if self.locked_until is not None and self.locked_until <= utcnow():
            raise ValueError("locked_until must be in the future")
        return self
