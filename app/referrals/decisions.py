"""The referral rules, without I/O: which tracking is refused and why, how codes are
made, which writes of a batch complete a referral, which completion is refused and why,
when a referral expires, and what completion pays."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from app.errors import Conflict, DomainError, NotFound
from app.models.referrals import REFERRAL_COMPLETED, REFERRAL_EXPIRED, REFERRAL_PENDING
from app.referrals.program import ReferralTerms

QUALIFYING_AMOUNT_MAX = Decimal("9999999999999999.99")  # what numeric(18, 2) holds


def referral_program_inactive() -> DomainError:
    return DomainError(
        "referral_program_inactive", "The referral program is not configured or not active"
    )


def referral_invalid() -> DomainError:
    return DomainError("referral_invalid", "No participant has this referral code")


def referral_self() -> DomainError:
    return DomainError("referral_self", "A participant cannot refer themselves")


def referral_already_tracked() -> DomainError:
    return DomainError("referral_already_tracked", "This referee was already referred")


def referral_limit_reached(limit: int) -> DomainError:
    return DomainError(
        "referral_limit_reached", f"The referrer has reached the limit of {limit} referrals"
    )


def referral_not_found() -> NotFound:
    return NotFound("referral_not_found", "Referral not found")


def referral_already_completed() -> Conflict:
    return Conflict("referral_already_completed", "This referral was already completed")


def referral_expired() -> DomainError:
    return DomainError("referral_expired", "This referral expired before it was completed")


def referral_not_qualified(minimum: Decimal) -> DomainError:
    return DomainError(
        "referral_not_qualified",
        f"A completion qualifies with a qualifying_amount of at least {minimum}",
    )


def referral_expires_at(terms: ReferralTerms, tracked_at: datetime) -> datetime | None:
    """When a referral tracked now expires: the program's expiration_days then (a later
    change of the program leaves it alone); None: never."""
    if terms.expiration_days is None:
        return None
    return tracked_at + timedelta(days=terms.expiration_days)


def is_expired(status: str, expires_at: datetime | None, now: datetime) -> bool:
    """Expired: flipped by the sweep already, or pending and past its time (the sweep has
    not come by yet). The SQL spelling is app.referrals.completion.EFFECTIVE_STATUS."""
    if status == REFERRAL_EXPIRED:
        return True
    return status == REFERRAL_PENDING and expires_at is not None and expires_at <= now


def qualifies(terms: ReferralTerms, amount: Decimal | None) -> bool:
    """A completion qualifies without a minimum, or with an amount at least the minimum: a
    completion that shows no amount cannot show it is enough (the completion statement,
    app.referrals.completion._COMPLETE, asks the same)."""
    minimum = terms.min_qualifying_amount
    return minimum is None or (amount is not None and amount >= minimum)


@dataclass(frozen=True, slots=True)
class CompletionFacts:
    """What completing one referral by hand decides against."""

    status: str
    expires_at: datetime | None
    terms: ReferralTerms | None  # None: never configured
    amount: Decimal | None  # the qualifying amount sent
    now: datetime


def completion_refusal(facts: CompletionFacts) -> DomainError | None:
    """Why completing the referral is refused, the first that applies; None: it completes."""
    if facts.status == REFERRAL_COMPLETED:
        return referral_already_completed()
    if is_expired(facts.status, facts.expires_at, facts.now):
        return referral_expired()
    terms = facts.terms
    if terms is None or not terms.active:
        return referral_program_inactive()
    minimum = terms.min_qualifying_amount
    if minimum is not None and not qualifies(terms, facts.amount):
        return referral_not_qualified(minimum)
    return None


def normalized_code(code: str) -> str:
    """Codes are matched without regard to case or surrounding blanks."""
    return code.strip().upper()


@dataclass(frozen=True, slots=True)
class TrackFacts:
    """What tracking decides against, read with the referrer's code row locked."""

    terms: ReferralTerms | None  # None: never configured
    referrer_id: str | None  # the code's owner; None: no such code
    referee_id: str
    referee_referred: bool  # the referee already has a referral (by anyone)
    referrer_count: int  # referrals the referrer has tracked so far


def track_refusal(facts: TrackFacts) -> DomainError | None:
    """Why tracking is refused, the first that applies; None: it is accepted."""
    terms = facts.terms
    if terms is None or not terms.active:
        return referral_program_inactive()
    if facts.referrer_id is None:
        return referral_invalid()
    if facts.referrer_id == facts.referee_id:
        return referral_self()
    if facts.referee_referred:
        return referral_already_tracked()
    limit = terms.max_referrals_per_referrer
    if limit is not None and facts.referrer_count >= limit:
        return referral_limit_reached(limit)
    return None


@dataclass(frozen=True, slots=True)
class Qualifying:
    """What completed a referee's referral: the action, and the order it came with."""

    referee_id: str
    action: str | None
    amount: Decimal | None = None
    order_id: str | None = None

    def as_row(self) -> dict[str, Any]:
        return {
            "referee_id": self.referee_id,
            "qualifying_action": self.action,
            "qualifying_amount": str(self.amount) if self.amount is not None else None,
            "order_id": self.order_id,
        }


def qualifying_of(referee_id: str, action: str, details: Mapping[str, object] | None) -> Qualifying:
    """A completing action or award as the referral records it: its `amount` and
    `order_id` (the action's properties, the award's metadata) when they read as such."""
    details = details or {}
    amount = details.get("amount")
    order_id = details.get("order_id")
    return Qualifying(
        referee_id,
        action,
        money(amount),
        str(order_id)[:255] if isinstance(order_id, str | int) and order_id != "" else None,
    )


def money(value: object) -> Decimal | None:
    """A number (or its text) as an amount of money, to the cent; None if it is none."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() and abs(amount) <= QUALIFYING_AMOUNT_MAX else None


def completions(
    done: Iterable[tuple[str, str | None, Mapping[str, object] | None]], completion_action: str
) -> list[Qualifying]:
    """The referees whose (participant id, action, details) in `done`, in order, include
    the completion action: the first such per referee is what qualified them."""
    qualified: dict[str, Qualifying] = {}
    for participant_id, action, details in done:
        if action == completion_action and participant_id not in qualified:
            qualified[participant_id] = qualifying_of(participant_id, action, details)
    return list(qualified.values())


@dataclass(frozen=True, slots=True)
class Payment:
    """One side's points for a completed referral, as an award the ledger makes."""

    participant_id: str
    points: int
    idempotency_key: str
    reason: str


def payments(
    referral_id: str, referrer_id: str, referee_id: str, referrer_points: int, referee_points: int
) -> list[Payment]:
    """The awards a completed referral pays: each side with points, under a key of its
    own, so a side is paid once whatever records it again."""
    sides = (
        ("referrer", referrer_id, referrer_points, f"Referral of {referee_id}"),
        ("referee", referee_id, referee_points, f"Referred by {referrer_id}"),
    )
    return [
        Payment(participant_id, points, f"referral:{referral_id}:{side}", reason)
        for side, participant_id, points, reason in sides
        if points > 0
    ]
