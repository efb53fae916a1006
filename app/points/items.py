"""One award request, and the per-item validation batch and bulk awards share.

A batch or bulk upload answers each bad item with its own error instead of rejecting the
whole request, so items are checked here one by one rather than by the request schema.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.clock import utcnow
from app.points.lots import LOT_TERM_FIELDS, LotTerms
from app.text import holds_nul, unknown_fields_message

# The kind of one award's operation (app.points.kinds), whose payload is `item_fields`:
# here, so that writers recording awards of their own (app.referrals) need not import
# the kinds, which import them.
AWARD_KIND = "points.award"
PARTICIPANT_ID_MAX_CHARS = 255
AWARD_AMOUNT_MIN = 1
AWARD_AMOUNT_MAX = 1_000_000
REASON_MAX_CHARS = 500
ACTION_MAX_CHARS = 100
AWARD_ITEM_FIELDS = frozenset(
    {"participant_id", "amount", "reason", "metadata", "action", *LOT_TERM_FIELDS}
)


@dataclass(frozen=True, slots=True)
class AwardItem:
    participant_id: str
    amount: int  # the base amount, before multipliers
    reason: str | None = None
    metadata: dict[str, Any] | None = None
    action: str | None = None
    terms: LotTerms | None = None  # when its points become available and expire


class InvalidItem(ValueError):
    """Why one batch item or bulk row cannot be awarded; the message is shown to the client."""


def check_participant_id(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidItem("participant_id must be a non-empty string")
    if len(value) > PARTICIPANT_ID_MAX_CHARS:
        raise InvalidItem(f"participant_id must be at most {PARTICIPANT_ID_MAX_CHARS} characters")
    if holds_nul(value):
        raise InvalidItem("participant_id must not contain NUL characters")
    return value


def check_amount(value: object) -> int:
    # bool is an int subclass; True is not an amount.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidItem("amount must be an integer")
    if not AWARD_AMOUNT_MIN <= value <= AWARD_AMOUNT_MAX:
        raise InvalidItem(f"amount must be between {AWARD_AMOUNT_MIN} and {AWARD_AMOUNT_MAX}")
    return value


def check_reason(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidItem("reason must be a string")
    if len(value) > REASON_MAX_CHARS:
        raise InvalidItem(f"reason must be at most {REASON_MAX_CHARS} characters")
    if holds_nul(value):
        raise InvalidItem("reason must not contain NUL characters")
    return value


def check_action(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidItem("action must be a non-empty string")
    if len(value) > ACTION_MAX_CHARS:
        raise InvalidItem(f"action must be at most {ACTION_MAX_CHARS} characters")
    if holds_nul(value):
        raise InvalidItem("action must not contain NUL characters")
    return value


def _days(name: str, value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidItem(f"{name} must be an integer")
    return value


def _moment(name: str, value: object) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise InvalidItem(f"{name} must be an ISO 8601 date-time")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidItem(f"{name} must be an ISO 8601 date-time") from None


def check_lot_terms(fields: dict[str, Any], now: datetime) -> LotTerms | None:
    """An item's lot terms, checked at `now` (accepting it), or InvalidItem."""
    if fields.keys().isdisjoint(LOT_TERM_FIELDS):
        return None
    asked = tuple(fields.get(name) for name in LOT_TERM_FIELDS)
    try:
        hash(asked)
    except TypeError:  # a list or an object where a number or a date belongs
        return _checked_terms.__wrapped__(*asked, now=now)
    return _checked_terms(*asked, now=now)


# typed: 1 and true are different answers (true is not a number of days).
@functools.lru_cache(maxsize=64, typed=True)
def _checked_terms(
    expires_in_days: object,
    expires_at: object,
    pending_days: object,
    available_at: object,
    *,
    now: datetime,
) -> LotTerms:
    """Cached: a batch's or upload's items usually carry the same terms, checked once per
    request (`now` is the request's)."""
    terms = LotTerms(
        _days("expires_in_days", expires_in_days),
        _moment("expires_at", expires_at),
        _days("pending_days", pending_days),
        _moment("available_at", available_at),
    )
    problem = terms.problem(now)
    if problem is not None:
        raise InvalidItem(problem)
    return terms


def parse_award_item(raw: object, now: datetime | None = None) -> AwardItem:
    """A batch item (a JSON object) as an AwardItem, or InvalidItem saying what is wrong;
    its lot terms resolved at `now` (when it is accepted)."""
    if not isinstance(raw, dict):
        raise InvalidItem("each award must be an object")
    unknown = set(raw) - AWARD_ITEM_FIELDS
    if unknown:
        raise InvalidItem(unknown_fields_message(unknown))
    metadata = raw.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidItem("metadata must be an object")
    if metadata is not None and holds_nul(metadata):
        raise InvalidItem("metadata must not contain NUL characters")
    terms = check_lot_terms(raw, now or utcnow())
    return AwardItem(
        participant_id=check_participant_id(raw.get("participant_id")),
        amount=check_amount(raw.get("amount")),
        reason=check_reason(raw.get("reason")),
        metadata=metadata,
        action=check_action(raw.get("action")),
        terms=terms,
    )


def item_fields(item: AwardItem) -> dict[str, Any]:
    """An accepted item as an operation payload carries it; lot terms and action only
    when given."""
    fields: dict[str, Any] = {
        "participant_id": item.participant_id,
        "amount": item.amount,
        "reason": item.reason,
        "metadata": item.metadata,
    }
    if item.action is not None:
        fields["action"] = item.action
    if item.terms is not None:
        fields.update(item.terms.as_fields())
    return fields


def batch_entries(raw_items: list[object]) -> list[dict[str, Any]]:
    """Batch items as the operation's payload carries them: each a valid award's fields, or
    {"invalid": why, "participant_id": ...}, in request order.

    Checked before the operation is recorded, so a bad item never reaches the payload
    (some could not even be stored there: jsonb refuses U+0000).
    """
    entries: list[dict[str, Any]] = []
    now = utcnow()
    for raw in raw_items:
        try:
            item = parse_award_item(raw, now)
        except InvalidItem as problem:
            named = raw.get("participant_id") if isinstance(raw, dict) else None
            shown = named if isinstance(named, str) and not holds_nul(named) else None
            entries.append(
                {
                    "invalid": str(problem),
                    "participant_id": shown[:PARTICIPANT_ID_MAX_CHARS] if shown else shown,
                }
            )
        else:
            entries.append(item_fields(item))
    return entries
