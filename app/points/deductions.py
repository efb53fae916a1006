"""Deducting points: never below zero, serialized by the participant's row lock."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.ledger import BalanceChange, apply_balance_change, lock_participant
from app.outbox import POINTS_DEDUCTED, record_event

DEDUCT_ENTRY_TYPE = "deduct"


@dataclass(frozen=True, slots=True)
class Debit:
    transaction_id: uuid.UUID
    participant_id: str
    amount: int
    new_balance: int

    def as_body(self) -> dict[str, Any]:
        return {
            "transaction_id": str(self.transaction_id),
            "participant_id": self.participant_id,
            "amount": self.amount,
            "new_balance": self.new_balance,
        }


def deduct_points(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    participant_id: str,
    amount: int,
    *,
    reason: str | None = None,
    metadata: dict[str, Any] | None = None,
    operation_id: uuid.UUID | None = None,
) -> Debit:
    """Debit `amount`; raises insufficient_points (400) when the balance is short.

    An unknown participant has a zero balance: the deduction fails, and the caller's
    rollback also removes the participant row the lock created.
    """
    participant = lock_participant(session, tenant_id, env, participant_id)
    entry = apply_balance_change(
        session,
        participant,
        BalanceChange(
            amount=-amount,
            type=DEDUCT_ENTRY_TYPE,
            reason=reason,
            metadata=metadata,
            operation_id=operation_id,
        ),
    )
    debit = Debit(entry.id, participant_id, amount, participant.balance)
    record_event(
        session,
        tenant_id,
        env,
        POINTS_DEDUCTED,
        {**debit.as_body(), "reason": reason, "metadata": metadata},
    )
    return debit
