"""The everyday write: single awards and deductions of many participants, applied together.

A shop awards points after each order, one request at a time, each for a different
participant. Run one by one, every such write paid a broker task and a transaction of its
own. Instead, the single awards and deductions of a tenant share a few drain lanes (see
app.points.kinds): a drain takes every queued one of its lane, in the order they were
accepted, and applies them in one transaction:

1. read under lock: the participants, in the one lock order (app.ledger); then, in one
   round trip, the tier ladder, their active multipliers and whether an endpoint
   subscribes to the events;
2. decide (`decide_changes`, pure): each write in order against the running balances, so
   a participant's writes apply exactly as if run one by one (a deduction sees the award
   accepted before it; an award's multipliers and tier climb are those it would get alone);
3. write (`write_changes`): every ledger line, event and balance with one statement.

A refused deduction writes nothing: deciding comes before any write, and a participant
only deducted from is never created.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.errors import DomainError
from app.infra.pgcopy import fetch_tuples, plain_array_literal
from app.ledger import LockedRow, insufficient_points, lock_changing_rows
from app.models import Operation
from app.outbox import (
    ANY_SUBSCRIBED,
    POINTS_AWARDED,
    POINTS_DEDUCTED,
    TIER_UPGRADED,
    mark_events_recorded,
)
from app.points.awards import AWARD_ENTRY_TYPE
from app.points.lots import (
    LOT_BOOKS,
    WRITE_LOTS,
    LotTerms,
    NewLot,
    lot_books,
    lot_books_params,
    lot_dates,
    spenders_with_lots,
    write_lots_params,
)
from app.points.multipliers import ActiveMultiplier
from app.points.program import PROGRAM_SETTINGS, program_settings_of
from app.points.standings import (
    Credit,
    Debit,
    Placements,
    Standing,
    awarded_payload,
    place_standings,
    upgraded_payload,
)
from app.points.tiers import TierLadder, TierRung, qualifying_points

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
    action: str | None = None
    # An award's lot terms as accepted (app.points.lots): None for at once, for never.
    available_at: datetime | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Applied:
    """A write that was decided: the ledger line and events it makes."""

    write: BalanceWrite
    participant_pk: str
    outcome: Credit | Debit
    # The multipliers that applied, as the ledger records them (None: none, or a debit).
    multipliers: list[dict[str, Any]] | None
    events: tuple[tuple[str, dict[str, Any]], ...]
    lot: NewLot | None = None  # the lot a credit that expires or is pending creates

    def as_body(self) -> dict[str, Any]:
        return self.outcome.as_body()


Decision = Applied | DomainError


def decide_changes(
    writes: Sequence[BalanceWrite],
    standings: dict[str, Standing],
    placements: Placements,
    transaction_ids: Iterator[str],
    now: datetime,
    default_expiry_days: int | None = None,
) -> list[Decision]:
    """Each write's decision, in order, against the running standings (changed in place).

    `standings` holds every participant that exists (or was created for an award), with
    its lots for one the batch debits; one missing has nothing to spend. Pure: no I/O;
    `transaction_ids` supplies the ledger ids, `now` is when the batch applies.
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
                Applied(write, standing.pk, debit, None, ((POINTS_DEDUCTED, deducted),))
            )
            continue
        available_at, expires_at = lot_dates(
            write.available_at, write.expires_at, now, default_expiry_days
        )
        multipliers = standing.applied
        pending = available_at is not None
        credited, upgrade = standing.credit(write.amount, placements, pending=pending)
        transaction_id = next(transaction_ids)
        lot = None
        if (pending or expires_at is not None) and credited > 0:
            lot = NewLot(standing.pk, credited, available_at, expires_at)
        if not pending and standing.lots is not None:
            standing.lots.credit(credited, lot)
        credit = Credit(
            transaction_id,
            write.participant_id,
            credited,
            write.amount,
            standing.balance,
            upgrade,
            available_at,
            expires_at,
        )
        events: list[tuple[str, dict[str, Any]]] = [
            (POINTS_AWARDED, awarded_payload(credit, write.reason, write.metadata))
        ]
        if upgrade is not None:
            events.append(
                (
                    TIER_UPGRADED,
                    upgraded_payload(
                        write.participant_id, credit.transaction_id, upgrade, standing.qualifying
                    ),
                )
            )
        decisions.append(Applied(write, standing.pk, credit, multipliers, tuple(events), lot))
    return decisions


# The tenant's tier ladder, the participants' multipliers in force, whether any webhook
# endpoint subscribes to the events this batch may record, the program's default expiry
# and, for a batch that debits, the lots of the participants it may debit: one round
# trip. The lists travel as JSON text, read with Decimal numbers.
_READ_CONTEXT_HEAD = (
    """
    SELECT
        (SELECT coalesce(json_agg(json_build_array(
                    code, name, level, points_required, points_multiplier)), '[]')::text
         FROM tiers WHERE tenant_id = %(tenant_id)s AND env = %(env)s AND is_active),
        (SELECT coalesce(json_agg(json_build_array(
                    participant_pk, id, multiplier, claim_id, starts_at, expires_at)
                    ORDER BY starts_at, id), '[]')::text
         FROM participant_multipliers
         WHERE participant_pk = ANY(CAST(%(pks)s AS uuid[])) AND starts_at <= %(now)s
           AND (expires_at IS NULL OR expires_at > %(now)s)),
        """  # noqa: S608 (constant fragments, no input)
    + PROGRAM_SETTINGS
    + ","
    + ANY_SUBSCRIBED
)
_READ_CONTEXT = _READ_CONTEXT_HEAD + ", '[]'"
_READ_CONTEXT_SPENDING = _READ_CONTEXT_HEAD + "," + LOT_BOOKS


@dataclass(frozen=True, slots=True)
class Context:
    """What a batch decides against, read under lock."""

    placements: Placements
    standings: dict[str, Standing]  # by external id
    subscribed: bool  # an endpoint subscribes to the events
    default_expiry_days: int | None  # the program's


def _read_context(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    locked: dict[str, LockedRow],
    spending: dict[str, int],
    now: datetime,
) -> Context:
    """The locked participants' standings (with lots for those in `spending`: points the
    batch may take from each, by external id), and the tenant's constants."""
    spending_by_pk = spenders_with_lots(spending, locked)
    [(tiers, multipliers, settings, subscribed, lot_texts)] = fetch_tuples(
        session,
        _READ_CONTEXT_SPENDING if spending_by_pk else _READ_CONTEXT,
        {
            "tenant_id": tenant_id,
            "env": env,
            "pks": plain_array_literal(row.pk for row in locked.values()),
            "types": list(EVENT_TYPES),
            **lot_books_params(spending_by_pk, now),
        },
    )
    ladder = TierLadder([TierRung(*rung) for rung in json.loads(tiers, parse_float=Decimal)])
    boosts: dict[uuid.UUID, list[ActiveMultiplier]] = {}
    for pk, multiplier_id, factor, claim_id, starts_at, expires_at in json.loads(
        multipliers, parse_float=Decimal
    ):
        boosts.setdefault(uuid.UUID(pk), []).append(
            ActiveMultiplier(
                uuid.UUID(multiplier_id),
                Decimal(factor),
                uuid.UUID(claim_id) if claim_id else None,
                datetime.fromisoformat(starts_at),
                datetime.fromisoformat(expires_at) if expires_at else None,
            )
        )
    default_expiry_days, tier_window_days = program_settings_of(settings)
    qualifying = (
        qualifying_points(session, (row.pk for row in locked.values()), tier_window_days, now)
        if tier_window_days is not None
        else None
    )
    placements, standings = place_standings(ladder, locked, boosts, qualifying)
    for external_id, book in lot_books(lot_texts, spending, locked).items():
        standings[external_id].lots = book
    return Context(placements, standings, bool(subscribed), default_expiry_days)


# Every ledger line, event, lot and balance of the batch in one statement, from JSON documents
# (one parameter each, whatever the batch size). Lines and events are inserted in decision
# order (the ledger's seq follows a participant's balance); the participants are locked
# by this transaction, found by primary key through the array (see _STORE_ANSWERS in
# app.operation_runs).
_WRITE_CHANGES_HEAD = """
    WITH ledger AS (
        INSERT INTO ledger_entries (
            id, tenant_id, env, participant_pk, type, amount, base_amount, multipliers,
            reason, action, available_at, expires_at, metadata, balance_after, operation_id,
            created_at
        )
        SELECT line.id, %(tenant_id)s, %(env)s, line.participant_pk, line.type, line.amount,
               line.base_amount, line.multipliers, line.reason, line.action, line.available_at,
               line.expires_at, line.metadata, line.balance_after, line.operation_id, %(now)s
        FROM ROWS FROM (jsonb_to_recordset(CAST(%(lines)s AS jsonb)) AS (
                id uuid, participant_pk uuid, type text, amount bigint, base_amount bigint,
                multipliers jsonb, reason text, action text, available_at timestamptz,
                expires_at timestamptz, metadata jsonb, balance_after bigint, operation_id uuid
            )) WITH ORDINALITY AS line(
                id, participant_pk, type, amount, base_amount, multipliers, reason, action,
                available_at, expires_at, metadata, balance_after, operation_id, position
            )
        ORDER BY line.position
    ),
    events AS (
        INSERT INTO outbox_events (id, tenant_id, env, type, payload, dispatched_at)
        SELECT gen_random_uuid(), %(tenant_id)s, %(env)s, event.type, event.payload,
               %(dispatched_at)s
        FROM ROWS FROM (jsonb_to_recordset(CAST(%(events)s AS jsonb)) AS (
                type text, payload jsonb
            )) WITH ORDINALITY AS event(type, payload, position)
        ORDER BY event.position
    )
"""
_WRITE_CHANGES_TAIL = """
    UPDATE participants AS p
    SET balance = b.balance, total_earned = b.total_earned, total_spent = b.total_spent,
        pending = b.pending, tier_code = b.tier_code, updated_at = %(now)s,
        tier_since = CASE WHEN p.tier_code IS DISTINCT FROM b.tier_code THEN %(now)s
                          ELSE p.tier_since END,
        tier_expires_at = CASE WHEN p.tier_code IS DISTINCT FROM b.tier_code THEN NULL
                               ELSE p.tier_expires_at END
    FROM jsonb_to_recordset(CAST(%(balances)s AS jsonb)) AS b(
        pk uuid, balance bigint, total_earned bigint, total_spent bigint, pending bigint,
        tier_code text
    )
    WHERE p.id = ANY(CAST(%(pks)s AS uuid[])) AND p.id = b.pk
"""
_WRITE_CHANGES = _WRITE_CHANGES_HEAD + _WRITE_CHANGES_TAIL
_WRITE_CHANGES_WITH_LOTS = _WRITE_CHANGES_HEAD + "," + WRITE_LOTS + _WRITE_CHANGES_TAIL


def _ledger_line(applied: Applied) -> dict[str, Any]:
    outcome, write = applied.outcome, applied.write
    available_at = expires_at = None
    if isinstance(outcome, Debit):
        entry_type, amount, base_amount = DEDUCT_ENTRY_TYPE, -outcome.amount, -outcome.amount
    else:
        entry_type, amount, base_amount = AWARD_ENTRY_TYPE, outcome.amount, outcome.base_amount
        available_at, expires_at = outcome.available_at, outcome.expires_at
    return {
        "available_at": available_at.isoformat() if available_at else None,
        "expires_at": expires_at.isoformat() if expires_at else None,
        "id": outcome.transaction_id,
        "participant_pk": applied.participant_pk,
        "type": entry_type,
        "amount": amount,
        "base_amount": base_amount,
        "multipliers": applied.multipliers,
        "reason": write.reason,
        "action": write.action,
        "metadata": write.metadata,
        "balance_after": outcome.new_balance,
        "operation_id": str(write.operation_id),
    }


def write_changes(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    decisions: Sequence[Decision],
    standings: dict[str, Standing],
    now: datetime,
    *,
    subscribed: bool,
) -> None:
    """Write what was decided: ledger lines, balances of the participants it changed, and
    events, in one statement. `subscribed` False (no endpoint subscribes to the events,
    asked in this transaction) stores the events already dispatched (see app.outbox)."""
    applied = [decision for decision in decisions if isinstance(decision, Applied)]
    if not applied:
        return
    changed = [standings[pid] for pid in sorted({each.write.participant_id for each in applied})]
    lot_changes = write_lots_params(
        (each.lot for each in applied if each.lot is not None),
        (each.lots for each in changed if each.lots is not None),
    )
    session.connection().exec_driver_sql(
        _WRITE_CHANGES_WITH_LOTS if lot_changes else _WRITE_CHANGES,
        {
            "tenant_id": tenant_id,
            "env": env,
            "now": now,
            "dispatched_at": None if subscribed else now,
            "lines": json.dumps([_ledger_line(each) for each in applied]),
            "events": json.dumps(
                [
                    {"type": event_type, "payload": payload}
                    for each in applied
                    for event_type, payload in each.events
                ]
            ),
            "balances": json.dumps(
                [
                    {
                        "pk": each.pk,
                        "balance": each.balance,
                        "total_earned": each.total_earned,
                        "total_spent": each.total_spent,
                        "pending": each.pending,
                        "tier_code": each.tier_code,
                    }
                    for each in changed
                ]
            ),
            "pks": plain_array_literal(each.pk for each in changed),
            **lot_changes,
        },
    )
    mark_events_recorded(session, subscribed=subscribed)


def apply_changes(
    session: Session, tenant_id: uuid.UUID, env: str, writes: Sequence[BalanceWrite]
) -> list[Decision]:
    """Read under lock, decide, write: the writes' decisions, in order."""
    now = utcnow()
    spending: dict[str, int] = {}
    for write in writes:
        if write.debit:
            spending[write.participant_id] = spending.get(write.participant_id, 0) + write.amount
    locked = lock_changing_rows(
        session,
        tenant_id,
        env,
        create=(write.participant_id for write in writes if not write.debit),
        existing=spending,
        spending=bool(spending),
    )
    context = _read_context(session, tenant_id, env, locked, spending, now)
    decisions = decide_changes(
        writes,
        context.standings,
        context.placements,
        _new_ids(),
        now,
        context.default_expiry_days,
    )
    write_changes(
        session,
        tenant_id,
        env,
        decisions,
        context.standings,
        now,
        subscribed=context.subscribed,
    )
    return decisions


def _new_ids() -> Iterator[str]:
    while True:
        yield str(uuid.uuid4())


def balance_write(operation: Operation, *, debit: bool) -> BalanceWrite:
    payload = operation.payload
    terms = LotTerms.of(payload)
    available_at, expires_at = (
        terms.resolve(operation.created_at) if terms is not None else (None, None)
    )
    return BalanceWrite(
        operation_id=operation.id,
        participant_id=payload["participant_id"],
        amount=payload["amount"],
        debit=debit,
        reason=payload.get("reason"),
        metadata=payload.get("metadata"),
        action=payload.get("action"),
        available_at=available_at,
        expires_at=expires_at,
    )
