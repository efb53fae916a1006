"""Reads of balances and ledger history, served straight from PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import ColumnElement, Row, func, not_, or_, select, text
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.models import LedgerEntry, Participant
from app.points.multipliers import active_multipliers
from app.points.program import load_program
from app.points.tier_status import tier_position


def find_participant_pk(
    session: Session, tenant_id: uuid.UUID, env: str, participant_id: str
) -> uuid.UUID | None:
    return session.execute(
        select(Participant.id).where(
            Participant.tenant_id == tenant_id,
            Participant.env == env,
            Participant.external_id == participant_id,
        )
    ).scalar_one_or_none()


def points_summary(
    session: Session, tenant_id: uuid.UUID, env: str, participant_id: str
) -> dict[str, Any]:
    """Balance, lifetime totals, tier standing and multipliers; zeros for an unknown id."""
    row = session.execute(
        select(
            Participant.id,
            Participant.balance,
            Participant.total_earned,
            Participant.total_spent,
            Participant.tier_code,
            Participant.pending,
            Participant.total_expired,
            Participant.updated_at,
        ).where(
            Participant.tenant_id == tenant_id,
            Participant.env == env,
            Participant.external_id == participant_id,
        )
    ).first()
    (
        participant_pk, balance, total_earned, total_spent, tier_code, pending, total_expired,
        updated_at,
    ) = row or (None, 0, 0, 0, None, 0, 0, None)  # fmt: skip
    now = utcnow()
    program = load_program(session, tenant_id, env)
    expiring_soon, expiring_soon_date = (
        _expiring_soon(session, participant_pk, program.expiring_soon_days, now)
        if participant_pk is not None
        else (0, None)
    )
    # The points the tier goes by: lifetime, or the program's rolling window's.
    position = tier_position(
        session,
        tenant_id,
        env,
        (participant_pk, tier_code, total_earned) if participant_pk is not None else None,
        program.tier_window_days,
        now,
    )
    current, following = position.current, position.following
    multipliers = (
        active_multipliers(session, [participant_pk], now).get(participant_pk, [])
        if participant_pk is not None
        else []
    )
    effective = current.multiplier if current is not None else Decimal(1)
    for active in multipliers:
        effective *= active.multiplier
    return {
        "participant_id": participant_id,
        "balance": balance,
        "pending": pending,
        "total_earned": total_earned,
        "total_spent": total_spent,
        "total_expired": total_expired,
        # Points count once available, as in the vendors' docs: earned - spent - expired
        # = balance.
        "lifetime_value": total_earned,
        "expiring_soon": expiring_soon,
        "expiring_soon_date": expiring_soon_date,
        "updated_at": updated_at,
        "tier": {
            "current": {**current.reference(), "points_multiplier": float(current.multiplier)}
            if current is not None
            else None,
            "next": {**following.reference(), "points_required": following.points_required}
            if following is not None
            else None,
            "qualifying_points": position.qualifying_points,
            "points_to_next": position.points_to_next,
        },
        "multipliers": [
            {
                "multiplier": float(active.multiplier),
                "starts_at": active.starts_at,
                "expires_at": active.expires_at,
                "claim_id": str(active.claim_id) if active.claim_id else None,
            }
            for active in multipliers
        ],
        "effective_multiplier": float(effective),
    }


# Unspent available points expiring within the program's window, and the soonest such
# expiry: the participant's spending index, read from its start.
_EXPIRING_SOON = text(
    """
    SELECT CAST(coalesce(sum(lot.remaining), 0) AS bigint), min(lot.expires_at)
    FROM point_lots AS lot
    WHERE lot.participant_pk = :participant_pk AND NOT lot.pending
      AND lot.expires_at > :now AND lot.expires_at <= :until
    """
)


def _expiring_soon(
    session: Session, participant_pk: uuid.UUID, within_days: int, now: datetime
) -> tuple[int, datetime | None]:
    points, soonest = session.execute(
        _EXPIRING_SOON,
        {
            "participant_pk": participant_pk,
            "now": now,
            "until": now + timedelta(days=within_days),
        },
    ).one()
    return int(points), soonest


# Entries of these types are credits whatever their amount: a release makes pending
# points spendable and shows their amount, though the ledger counted them at the award.
CREDIT_TYPES_WITHOUT_MONEY = ("release",)
ENTRY_TYPE_MAX_CHARS = 32  # ledger_entries.type

Direction = Literal["credit", "debit"]


@dataclass(frozen=True, slots=True)
class TransactionFilter:
    """Which of a participant's ledger entries a history page lists; None: any."""

    direction: Direction | None = None
    entry_type: str | None = None
    action: str | None = None
    created_from: datetime | None = None  # inclusive
    created_before: datetime | None = None  # exclusive


# One definition of a credit serves the filter and each entry's `direction`, so an entry
# listed under direction=debit always says "debit". Its complement is amount < 0: no
# writer records a zero amount (a claim is debited only when it costs points).
_IS_CREDIT = or_(LedgerEntry.amount > 0, LedgerEntry.type.in_(CREDIT_TYPES_WITHOUT_MONEY))


def _matching(participant_pk: uuid.UUID, wanted: TransactionFilter) -> list[ColumnElement[bool]]:
    conditions = [LedgerEntry.participant_pk == participant_pk]
    if wanted.direction is not None:
        conditions.append(_IS_CREDIT if wanted.direction == "credit" else not_(_IS_CREDIT))
    if wanted.entry_type is not None:
        conditions.append(LedgerEntry.type == wanted.entry_type)
    if wanted.action is not None:
        conditions.append(LedgerEntry.action == wanted.action)
    if wanted.created_from is not None:
        conditions.append(LedgerEntry.created_at >= wanted.created_from)
    if wanted.created_before is not None:
        conditions.append(LedgerEntry.created_at < wanted.created_before)
    return conditions


def transactions_page(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    participant_id: str,
    offset: int,
    limit: int,
    wanted: TransactionFilter = TransactionFilter(),  # frozen: safe to share
) -> tuple[list[dict[str, Any]], int]:
    """One page of a participant's ledger entries that match `wanted`, newest first, and
    how many match."""
    participant_pk = find_participant_pk(session, tenant_id, env, participant_id)
    if participant_pk is None:
        return [], 0
    conditions = _matching(participant_pk, wanted)
    total = session.execute(select(func.count()).where(*conditions)).scalar_one()
    entries = session.execute(
        select(
            LedgerEntry.id,
            LedgerEntry.type,
            _IS_CREDIT.label("is_credit"),
            LedgerEntry.amount,
            LedgerEntry.base_amount,
            LedgerEntry.multipliers,
            LedgerEntry.reason,
            LedgerEntry.action,
            LedgerEntry.balance_after,
            LedgerEntry.created_at,
            LedgerEntry.expires_at,
            LedgerEntry.available_at,
            LedgerEntry.metadata_,
        )
        .where(*conditions)
        # seq, not created_at: entries are numbered under the participant's lock, in the
        # order they were applied; created_at is each transaction's start time.
        .order_by(LedgerEntry.seq.desc())
        .offset(offset)
        .limit(limit)
    )
    return [_transaction(entry) for entry in entries], total


def _transaction(entry: Row[Any]) -> dict[str, Any]:
    return {
        "transaction_id": str(entry.id),
        "type": entry.type,
        "direction": "credit" if entry.is_credit else "debit",
        "amount": entry.amount,
        "base_amount": entry.base_amount,
        "multipliers": entry.multipliers,
        "reason": entry.reason,
        "action": entry.action,
        "balance_after": entry.balance_after,
        "created_at": entry.created_at,
        # An award's terms (null: available at once, never expires); only credits have any.
        "expires_at": entry.expires_at if entry.is_credit else None,
        "available_at": entry.available_at if entry.is_credit else None,
        "metadata": entry.metadata_,
    }


def transaction_created_at(session: Session, tenant_id: uuid.UUID, transaction_id: str) -> datetime:
    """When a ledger entry of the tenant's was written."""
    return session.execute(
        select(LedgerEntry.created_at).where(
            LedgerEntry.id == uuid.UUID(transaction_id), LedgerEntry.tenant_id == tenant_id
        )
    ).scalar_one()
