"""Reads of balances and ledger history, served straight from PostgreSQL."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.models import LedgerEntry, Participant
from app.points.multipliers import active_multipliers
from app.points.tiers import load_ladder


def _participant_pk(
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
        ).where(
            Participant.tenant_id == tenant_id,
            Participant.env == env,
            Participant.external_id == participant_id,
        )
    ).first()
    participant_pk, balance, total_earned, total_spent, tier_code = row or (None, 0, 0, 0, None)
    ladder = load_ladder(session, tenant_id, env)
    current = ladder.current(tier_code, total_earned)
    following = ladder.next_above(current)
    multipliers = (
        active_multipliers(session, [participant_pk], utcnow()).get(participant_pk, [])
        if participant_pk is not None
        else []
    )
    effective = current.multiplier if current is not None else Decimal(1)
    for active in multipliers:
        effective *= active.multiplier
    return {
        "participant_id": participant_id,
        "balance": balance,
        "total_earned": total_earned,
        "total_spent": total_spent,
        "tier": {
            "current": {**current.reference(), "points_multiplier": float(current.multiplier)}
            if current is not None
            else None,
            "next": {**following.reference(), "points_required": following.points_required}
            if following is not None
            else None,
            "qualifying_points": total_earned,
            "points_to_next": max(0, following.points_required - total_earned)
            if following is not None
            else None,
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


def transactions_page(
    session: Session, tenant_id: uuid.UUID, env: str, participant_id: str, offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of a participant's ledger, newest first, and the entry count."""
    participant_pk = _participant_pk(session, tenant_id, env, participant_id)
    if participant_pk is None:
        return [], 0
    total = session.execute(
        select(func.count()).where(LedgerEntry.participant_pk == participant_pk)
    ).scalar_one()
    entries = session.execute(
        select(
            LedgerEntry.id,
            LedgerEntry.type,
            LedgerEntry.amount,
            LedgerEntry.base_amount,
            LedgerEntry.multipliers,
            LedgerEntry.reason,
            LedgerEntry.balance_after,
            LedgerEntry.created_at,
            LedgerEntry.metadata_,
        )
        .where(LedgerEntry.participant_pk == participant_pk)
        # seq, not created_at: entries are numbered under the participant's lock, in the
        # order they were applied; created_at is each transaction's start time.
        .order_by(LedgerEntry.seq.desc())
        .offset(offset)
        .limit(limit)
    )
    return [
        {
            "transaction_id": str(entry.id),
            "type": entry.type,
            "amount": entry.amount,
            "base_amount": entry.base_amount,
            "multipliers": entry.multipliers,
            "reason": entry.reason,
            "balance_after": entry.balance_after,
            "created_at": entry.created_at,
            "metadata": entry.metadata_,
        }
        for entry in entries
    ], total
