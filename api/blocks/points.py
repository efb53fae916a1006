"""23blocks Points API: award, deduct, balance and history, over the native points
operations and reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from flask import Blueprint, Response
from pydantic import AwareDatetime, Field

from api.auth import current_principal
from api.blocks.jsonapi import (
    PREFIX,
    Attributes,
    Document,
    Kebab,
    Many,
    PageMeta,
    PageQuery,
    Single,
    native_model,
    one,
    resource,
)
from api.blocks.limits import Family, take_family_unit
from api.blocks.writes import (
    WRITE_ERRORS,
    WRITE_HEADERS,
    AcceptedDocument,
    dialect_write,
    translates,
)
from api.endpoint import Access, endpoint
from api.points.schemas import (
    Action,
    Amount,
    AwardRequest,
    IsoInstant,
    Metadata,
    ParticipantId,
    Reason,
)
from api.runtime import runtime
from api.validation import check_participant_id
from app.points.items import ACTION_MAX_CHARS, AWARD_KIND
from app.points.kinds import DEDUCT_KIND
from app.points.lots import EXPIRES_IN_DAYS_MAX
from app.points.queries import (
    Direction,
    TransactionFilter,
    points_summary,
    transaction_created_at,
    transactions_page,
)

bp = Blueprint("blocks_points", __name__, url_prefix=PREFIX)

TAG = "23blocks: points"
POINTS_WRITE_ERRORS = {**WRITE_ERRORS, 429: ("rate_limit_exceeded",)}


class AwardAttributes(Attributes):
    user_id: ParticipantId
    amount: Amount
    action: Action
    description: Reason
    metadata: Metadata
    expires_in_days: int | None = Field(default=None, strict=True, ge=1, le=EXPIRES_IN_DAYS_MAX)
    expires_at: AwareDatetime | None = Field(
        default=None, description="When the points expire (or expires-in-days)"
    )


class DeductAttributes(Attributes):
    user_id: ParticipantId
    amount: Amount
    reason: Reason = Field(default=None, description="Why, as a code (reward_redemption, ...)")
    description: Reason
    reference_id: Reason = Field(default=None, description="Your reference, kept in metadata")
    metadata: Metadata


AwardDocument = Document[Literal["points-award"], AwardAttributes]
DeductDocument = Document[Literal["points-deduction"], DeductAttributes]


class TransactionAttributes(Kebab):
    user_id: str
    amount: int = Field(description="Points moved; `type` says which way")
    type: Direction
    action: str | None
    balance_after: int
    description: str | None
    metadata: dict[str, Any] | None
    expires_at: datetime | None
    created_at: datetime


Transaction = Single[Literal["points-transaction"], TransactionAttributes]


def _transaction_created_at(transaction_id: str) -> datetime:
    with runtime().session_factory() as session:
        return transaction_created_at(session, current_principal().tenant_id, transaction_id)


def _transaction(result: dict[str, Any], payload: dict[str, Any], credit: bool) -> dict[str, Any]:
    attributes = TransactionAttributes(
        user_id=result["participant_id"],
        amount=abs(result["amount"]),
        type="credit" if credit else "debit",
        action=payload.get("action"),
        balance_after=result["new_balance"],
        description=payload.get("reason"),
        metadata=payload.get("metadata"),
        expires_at=result.get("expires_at"),
        created_at=_transaction_created_at(result["transaction_id"]),
    )
    return one("points-transaction", result["transaction_id"], attributes)


@translates(AWARD_KIND)
def _award_document(result: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    return _transaction(result, payload, credit=True)


@translates(DEDUCT_KIND)
def _deduct_document(result: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    return _transaction(result, payload, credit=False)


@endpoint(
    bp,
    "POST",
    "/points/award",
    summary="Award points to a user (201 with the points transaction)",
    tag=TAG,
    access=Access.PARTICIPANT,
    body=AwardDocument,
    responses={201: Transaction, 202: AcceptedDocument},
    errors=POINTS_WRITE_ERRORS,
    headers=WRITE_HEADERS,
    write=True,
)
def blocks_award_points(body: AwardDocument) -> Response:
    attributes = body.attributes
    take_family_unit(Family.POINTS, attributes.user_id)
    award = native_model(
        AwardRequest,
        {"participant_id": "user-id", "reason": "description"},
        participant_id=attributes.user_id,
        amount=attributes.amount,
        reason=attributes.description,
        metadata=attributes.metadata,
        action=attributes.action,
        expires_in_days=attributes.expires_in_days,
        expires_at=attributes.expires_at,
    )
    return dialect_write(AWARD_KIND, award.payload())


@endpoint(
    bp,
    "POST",
    "/points/deduct",
    summary="Deduct points from a user (201 with the points transaction)",
    tag=TAG,
    access=Access.PARTICIPANT,
    body=DeductDocument,
    responses={201: Transaction, 202: AcceptedDocument},
    errors={**POINTS_WRITE_ERRORS, 400: (*WRITE_ERRORS[400], "insufficient_points")},
    headers=WRITE_HEADERS,
    write=True,
)
def blocks_deduct_points(body: DeductDocument) -> Response:
    attributes = body.attributes
    take_family_unit(Family.POINTS, attributes.user_id)
    metadata = dict(attributes.metadata or {})
    for name in ("reason", "reference_id"):
        value = getattr(attributes, name)
        if value is not None:
            metadata[name.replace("_", "-")] = value
    payload = {
        "participant_id": attributes.user_id,
        "amount": attributes.amount,
        "reason": attributes.description or attributes.reason,
        "metadata": metadata or None,
    }
    return dialect_write(DEDUCT_KIND, payload)


class BalanceAttributes(Kebab):
    user_id: str
    total_earned: int
    total_spent: int
    total_expired: int
    available: int
    pending: int
    expiring_soon: int
    expiring_soon_date: datetime | None
    lifetime_value: int
    updated_at: datetime | None


@endpoint(
    bp,
    "GET",
    "/points/balance/<user_id>",
    summary="A user's points balance",
    tag=TAG,
    access=Access.PARTICIPANT,
    responses={200: Single[Literal["points-balance"], BalanceAttributes]},
)
def blocks_get_balance(user_id: str) -> tuple[dict[str, Any], int]:
    check_participant_id(user_id)
    principal = current_principal()
    with runtime().session_factory() as session:
        summary = points_summary(session, principal.tenant_id, principal.env, user_id)
    attributes = BalanceAttributes(
        user_id=user_id,
        total_earned=summary["total_earned"],
        total_spent=summary["total_spent"],
        total_expired=summary["total_expired"],
        available=summary["balance"],
        pending=summary["pending"],
        expiring_soon=summary["expiring_soon"],
        expiring_soon_date=summary["expiring_soon_date"],
        lifetime_value=summary["lifetime_value"],
        updated_at=summary["updated_at"],
    )
    return one("points-balance", f"balance-{user_id}", attributes), 200


class HistoryQuery(PageQuery):
    filter_type: Direction | None = Field(default=None, alias="filter[type]")
    filter_action: str | None = Field(
        default=None, alias="filter[action]", min_length=1, max_length=ACTION_MAX_CHARS
    )
    filter_from: IsoInstant | None = Field(
        default=None, alias="filter[from]", description="Created at or after (ISO 8601)"
    )
    filter_to: IsoInstant | None = Field(
        default=None, alias="filter[to]", description="Created before (ISO 8601)"
    )


class HistoryEntry(Kebab):
    amount: int
    type: Direction
    action: str | None
    balance_after: int
    description: str | None
    metadata: dict[str, Any] | None
    expires_at: datetime | None
    created_at: datetime


@endpoint(
    bp,
    "GET",
    "/points/history/<user_id>",
    summary="A user's points transactions, newest first",
    tag=TAG,
    access=Access.PARTICIPANT,
    query=HistoryQuery,
    responses={200: Many[Literal["points-transaction"], HistoryEntry, PageMeta]},
)
def blocks_get_history(user_id: str, query: HistoryQuery) -> tuple[dict[str, Any], int]:
    check_participant_id(user_id)
    principal = current_principal()
    with runtime().session_factory() as session:
        entries, total = transactions_page(
            session,
            principal.tenant_id,
            principal.env,
            user_id,
            query.offset,
            query.page_size,
            TransactionFilter(
                direction=query.filter_type,
                action=query.filter_action,
                created_from=query.filter_from,
                created_before=query.filter_to,
            ),
        )
    data = [
        resource(
            "points-transaction",
            entry["transaction_id"],
            HistoryEntry(
                amount=abs(entry["amount"]),
                type=entry["direction"],
                action=entry["action"],
                balance_after=entry["balance_after"],
                description=entry["reason"],
                metadata=entry["metadata"],
                expires_at=entry["expires_at"],
                created_at=entry["created_at"],
            ),
        )
        for entry in entries
    ]
    meta = PageMeta(**query.meta_counts(total))
    return {"data": data, "meta": meta}, 200
