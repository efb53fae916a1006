"""The everyday write: single awards and deductions of many participants, applied together.

A shop awards points after each order, one request at a time, each for a different
participant. Run one by one, every such write paid a broker task and a transaction of its
own. Instead, the single awards and deductions of a tenant share a few drain lanes (see
app.points.kinds): a drain takes every queued one of its lane, in the order they were
accepted, and applies them in one transaction:

1. read under lock: the participants, in the one lock order (app.ledger), with the tier
   ladder and their active multipliers;
2. decide (`decide_changes`, pure): each write in order against the running balances, so
   a participant's writes apply exactly as if run one by one (a deduction sees the award
   accepted before it; an award's multipliers and tier climb are those it would get alone);
3. write (`write_changes`): the ledger lines and events with one COPY each, every balance
   with one statement.

A refused deduction writes nothing: deciding comes before any write, and a participant
only deducted from is never created.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.errors import DomainError
from app.ledger import insufficient_points, lock_changing_rows
from app.models import LedgerEntry, Operation, OutboxEvent
from app.outbox import (
    POINTS_AWARDED,
    POINTS_DEDUCTED,
    TIER_UPGRADED,
    endpoint_subscribes,
    mark_events_recorded,
)
from app.points.awards import (
    AWARD_ENTRY_TYPE,
    LEDGER_COLUMNS,
    OUTBOX_COLUMNS,
    Credit,
    Placements,
    Standing,
    awarded_payload,
    load_standings,
    upgraded_payload,
    write_balances,
)
from app.points.pgcopy import COPY_NULL, copy_field, copy_lines

DEDUCT_ENTRY_TYPE = "deduct"
EVENT_TYPES = (POINTS_AWARDED, TIER_UPGRADED, POINTS_DEDUCTED)


@dataclass(frozen=True, slots=True)
class BalanceWrite:
    """One accepted award (`debit` False) or deduction, as its operation's payload says."""

    operation_id: uuid.UUID
    participant_id: str
    amount: int  # positive; a deduction's is taken off the balance
    debit: bool
    reason: str | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Debit:
    transaction_id: str
    participant_id: str
    amount: int
    new_balance: int

    def as_body(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "participant_id": self.participant_id,
            "amount": self.amount,
            "new_balance": self.new_balance,
        }


@dataclass(frozen=True, slots=True)
class Applied:
    """A write that was decided: the ledger line and events it makes."""

    write: BalanceWrite
    participant_pk: str
    outcome: Credit | Debit
    # The multipliers that applied, as a COPY field (COPY_NULL when none or a debit).
    multipliers_field: str
    events: tuple[tuple[str, dict[str, Any]], ...]

    def as_body(self) -> dict[str, Any]:
        return self.outcome.as_body()


Decision = Applied | DomainError


def decide_changes(
    writes: Sequence[BalanceWrite],
    standings: dict[str, Standing],
    placements: Placements,
    transaction_ids: Iterator[str],
) -> list[Decision]:
    """Each write's decision, in order, against the running standings (changed in place).

    `standings` holds every participant that exists (or was created for an award); one
    missing has nothing to spend. Pure: no I/O; `transaction_ids` supplies the ledger ids.
    """
    decisions: list[Decision] = []
    for write in writes:
        standing = standings.get(write.participant_id)
        if standing is None:
            decisions.append(insufficient_points(0, write.amount))
            continue
        if write.debit:
            refusal = standing.debit(write.amount)
            if refusal is not None:
                decisions.append(refusal)
                continue
            debit = Debit(
                next(transaction_ids), write.participant_id, write.amount, standing.balance
            )
            deducted = {**debit.as_body(), "reason": write.reason, "metadata": write.metadata}
            decisions.append(
                Applied(write, standing.pk, debit, COPY_NULL, ((POINTS_DEDUCTED, deducted),))
            )
            continue
        multipliers_field = standing.applied_field
        credited, upgrade = standing.credit(write.amount, placements)
        credit = Credit(
            next(transaction_ids),
            write.participant_id,
            credited,
            write.amount,
            standing.balance,
            upgrade,
        )
        events: list[tuple[str, dict[str, Any]]] = [
            (POINTS_AWARDED, awarded_payload(credit, write.reason, write.metadata))
        ]
        if upgrade is not None:
            events.append(
                (
                    TIER_UPGRADED,
                    upgraded_payload(
                        write.participant_id, credit.transaction_id, upgrade, standing.total_earned
                    ),
                )
            )
        decisions.append(Applied(write, standing.pk, credit, multipliers_field, tuple(events)))
    return decisions


def _ledger_line(applied: Applied, tenant_env: str, created_at: str) -> str:
    outcome, write = applied.outcome, applied.write
    if isinstance(outcome, Debit):
        entry_type, amount, base_amount = DEDUCT_ENTRY_TYPE, -outcome.amount, -outcome.amount
    else:
        entry_type, amount, base_amount = AWARD_ENTRY_TYPE, outcome.amount, outcome.base_amount
    metadata = json.dumps(write.metadata) if write.metadata is not None else None
    return (
        f"{outcome.transaction_id}\t{tenant_env}\t{applied.participant_pk}\t{entry_type}"
        f"\t{amount}\t{base_amount}\t{applied.multipliers_field}\t{copy_field(write.reason)}"
        f"\t{copy_field(metadata)}\t{outcome.new_balance}\t{write.operation_id}\t{created_at}\n"
    )


def write_changes(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    decisions: Sequence[Decision],
    standings: dict[str, Standing],
    now: datetime,
) -> None:
    """Write what was decided: ledger lines, balances of the participants it changed, and
    events (stored already dispatched when no endpoint subscribes, see app.outbox)."""
    applied = [decision for decision in decisions if isinstance(decision, Applied)]
    if not applied:
        return
    tenant_env = f"{tenant_id}\t{copy_field(env)}"
    created_at = now.isoformat()
    copy_lines(
        session,
        LedgerEntry.__tablename__,
        LEDGER_COLUMNS,
        [_ledger_line(each, tenant_env, created_at) for each in applied],
    )
    changed = {each.write.participant_id for each in applied}
    write_balances(session, tenant_id, env, [standings[pid] for pid in sorted(changed)], now)
    subscribed = endpoint_subscribes(session, tenant_id, env, EVENT_TYPES)
    dispatched_at = COPY_NULL if subscribed else created_at
    copy_lines(
        session,
        OutboxEvent.__tablename__,
        OUTBOX_COLUMNS,
        [
            f"{uuid.uuid4()}\t{dispatched_at}\t{tenant_env}\t{event_type}"
            f"\t{copy_field(json.dumps(payload))}\n"
            for each in applied
            for event_type, payload in each.events
        ],
    )
    mark_events_recorded(session, subscribed=subscribed)


def apply_changes(
    session: Session, tenant_id: uuid.UUID, env: str, writes: Sequence[BalanceWrite]
) -> list[Decision]:
    """Read under lock, decide, write: the writes' decisions, in order."""
    now = utcnow()
    locked = lock_changing_rows(
        session,
        tenant_id,
        env,
        create=(write.participant_id for write in writes if not write.debit),
        existing=(write.participant_id for write in writes if write.debit),
    )
    placements, standings = load_standings(session, tenant_id, env, locked, now)
    decisions = decide_changes(writes, standings, placements, _new_ids())
    write_changes(session, tenant_id, env, decisions, standings, now)
    return decisions


def _new_ids() -> Iterator[str]:
    while True:
        yield str(uuid.uuid4())


def balance_write(operation: Operation, *, debit: bool) -> BalanceWrite:
    payload = operation.payload
    return BalanceWrite(
        operation_id=operation.id,
        participant_id=payload["participant_id"],
        amount=payload["amount"],
        debit=debit,
        reason=payload.get("reason"),
        metadata=payload.get("metadata"),
    )
