"""Participants' balances and the append-only points ledger.

Every balance change locks the participant row first (SELECT ... FOR UPDATE), so changes
for one participant are serialized in the database whatever process makes them. Several
participants are locked in one statement ordered by external id: one lock order, so two
transactions touching the same participants cannot deadlock. The table's CHECK
constraints (balance >= 0, balance = earned - spent) back the rules up.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import String, Uuid, bindparam, func, literal, select, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.selectable import LateralFromClause, TableValuedAlias

from app.clock import utcnow
from app.errors import DomainError
from app.infra.pgcopy import array_literal, fetch_tuples
from app.models import LedgerEntry, Participant


def insufficient_points(available: int, requested: int) -> DomainError:
    return DomainError(
        "insufficient_points",
        f"Insufficient points. Available: {available}, requested: {requested}",
        400,
    )


def _create_missing(session: Session, tenant_id: uuid.UUID, env: str, ordered: list[str]) -> None:
    # The ids travel as one array parameter: a statement of constant shape, compiled once,
    # where a multi-row VALUES list costs a compile per distinct batch size (~1 s at 5,000).
    incoming = (
        func.unnest(bindparam("external_ids", ordered, type_=ARRAY(String)))
        .table_valued("external_id")
        .render_derived(name="incoming")
    )
    session.execute(
        pg_insert(Participant)
        .from_select(
            ["id", "tenant_id", "env", "external_id", "balance", "total_earned", "total_spent"],
            select(
                func.gen_random_uuid(),
                literal(tenant_id, Uuid()),
                literal(env, String()),
                incoming.c.external_id,
                literal(0),
                literal(0),
                literal(0),
            ),
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "env", "external_id"])
    )


def _locked(
    tenant_id: uuid.UUID, env: str, ordered: list[str]
) -> tuple[TableValuedAlias, LateralFromClause]:
    """(ids, locked): `locked` row-locks the participant of each id, taken in `ordered` order.

    A LATERAL subquery per id: the plan is always one index probe per id, taken in array
    order (the nested loop walks the array), whatever the table statistics and whether
    the statement runs with a custom or a generic (prepared) plan. `external_id = ANY(...)`
    with ORDER BY can degrade to a filter over the tenant's every participant.
    """
    wanted = (
        func.unnest(bindparam("locked_ids", ordered, type_=ARRAY(String)))
        .table_valued("external_id")
        .render_derived(name="wanted")
    )
    locked = (
        select(Participant)
        .where(
            Participant.tenant_id == tenant_id,
            Participant.env == env,
            Participant.external_id == wanted.c.external_id,
        )
        .with_for_update()
        .lateral("locked")
    )
    return wanted, locked


def lock_participants(
    session: Session, tenant_id: uuid.UUID, env: str, external_ids: Iterable[str]
) -> dict[str, Participant]:
    """Lock (creating where missing) the participants, in external-id order (code points)."""
    ordered = sorted(set(external_ids))
    if not ordered:
        return {}
    _create_missing(session, tenant_id, env, ordered)
    wanted, locked = _locked(tenant_id, env, ordered)
    rows = session.execute(
        select(aliased(Participant, locked))
        .select_from(wanted)
        .join(locked, true())
        .execution_options(populate_existing=True)
    ).scalars()
    return {participant.external_id: participant for participant in rows}


class LockedBalance(NamedTuple):
    """A locked participant's balance as plain values, for set-wise writers."""

    id: uuid.UUID
    external_id: str
    balance: int
    total_earned: int
    total_spent: int
    tier_code: str | None


def lock_balances(
    session: Session, tenant_id: uuid.UUID, env: str, external_ids: Iterable[str]
) -> dict[str, LockedBalance]:
    """`lock_participants` (same lock order) without ORM objects: thousands per statement.

    `lock_balance_rows` with the keys as UUIDs. The caller writes the new balances itself,
    in one statement for the whole set; the session's identity map is not told, so a later
    ORM read must lock again (lock_participants refreshes what it loads).
    """
    rows = lock_balance_rows(session, tenant_id, env, external_ids)
    return {external_id: _as_balance(row) for external_id, row in rows.items()}


class LockedRow(NamedTuple):
    """`LockedBalance` with the key as text, as set-wise writers put it in COPY lines."""

    pk: str
    external_id: str
    balance: int
    total_earned: int
    total_spent: int
    tier_code: str | None


# The LATERAL form of _locked(): one index probe per id, in array order.
_LOCK_EXISTING = """
    SELECT CAST(p.id AS text), p.external_id, p.balance, p.total_earned, p.total_spent,
           p.tier_code
    FROM unnest(CAST(%(external_ids)s AS text[])) AS wanted(external_id)
    CROSS JOIN LATERAL (
        SELECT * FROM participants
        WHERE tenant_id = %(tenant_id)s AND env = %(env)s AND external_id = wanted.external_id
        FOR UPDATE
    ) AS p
"""
_CREATE_MISSING = """
    INSERT INTO participants AS p
        (id, tenant_id, env, external_id, balance, total_earned, total_spent)
    SELECT gen_random_uuid(), %(tenant_id)s, %(env)s, wanted.external_id, 0, 0, 0
    FROM unnest(CAST(%(external_ids)s AS text[])) AS wanted(external_id)
    ON CONFLICT (tenant_id, env, external_id) DO NOTHING
    RETURNING CAST(p.id AS text), p.external_id, p.balance, p.total_earned, p.total_spent,
              p.tier_code
"""


def lock_balance_rows(
    session: Session, tenant_id: uuid.UUID, env: str, external_ids: Iterable[str]
) -> dict[str, LockedRow]:
    """Lock (creating where missing) participants as plain rows: the set-wise writers' lock.

    Usually every participant exists, so the lock is tried first, in a savepoint. If some
    are missing, the savepoint is rolled back (releasing the locks it took) and the slow
    path runs in the one lock order of `lock_participants`: create the missing ones in
    external-id order (a row this transaction inserts is its own until commit), then lock
    the others in that order. Taking locks and then waiting on another transaction's
    insert of a new participant could deadlock; never holding a lock while creating
    cannot. Rows come without the ORM (see fetch_tuples): thousands per call.
    """
    ordered = sorted(set(external_ids))
    if not ordered:
        return {}
    where = {"tenant_id": tenant_id, "env": env}
    # One participant needs no savepoint: missing, it was not locked either.
    attempt = session.begin_nested() if len(ordered) > 1 else None
    try:
        found = fetch_tuples(
            session, _LOCK_EXISTING, {**where, "external_ids": array_literal(ordered)}
        )
    except BaseException:
        if attempt is not None:
            attempt.rollback()
        raise
    if len(found) == len(ordered):
        if attempt is not None:
            attempt.commit()
        return {row[1]: LockedRow._make(row) for row in found}
    if attempt is not None:
        attempt.rollback()
    known = {row[1] for row in found}
    missing = [external_id for external_id in ordered if external_id not in known]
    created = fetch_tuples(
        session, _CREATE_MISSING, {**where, "external_ids": array_literal(missing)}
    )
    locked = {row[1]: LockedRow._make(row) for row in created}
    others = [external_id for external_id in ordered if external_id not in locked]
    if others:
        rows = fetch_tuples(
            session, _LOCK_EXISTING, {**where, "external_ids": array_literal(others)}
        )
        locked.update((row[1], LockedRow._make(row)) for row in rows)
    return locked


def lock_changing_rows(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    *,
    create: Iterable[str],
    existing: Iterable[str],
) -> dict[str, LockedRow]:
    """Lock, in the one lock order, the participants a batch will write to: those in
    `create` are created where missing (they are credited, or get a multiplier), those
    only in `existing` are not (a debit from nobody is refused and must write nothing),
    so they may be absent from the answer.

    Two statements and no savepoint, for the small batches of everyday writes: the missing
    participants are created before any participant lock is taken (an insert may wait on
    another transaction's insert of the same new participant, and holding no participant
    lock then cannot deadlock), then every participant is locked in external-id order.
    """
    where = {"tenant_id": tenant_id, "env": env}
    creating = sorted(set(create))
    if creating:
        fetch_tuples(session, _CREATE_MISSING, {**where, "external_ids": array_literal(creating)})
    ordered = sorted({*creating, *existing})
    if not ordered:
        return {}
    rows = fetch_tuples(session, _LOCK_EXISTING, {**where, "external_ids": array_literal(ordered)})
    return {row[1]: LockedRow._make(row) for row in rows}


def lock_existing_balances(
    session: Session, tenant_id: uuid.UUID, env: str, external_ids: Iterable[str]
) -> dict[str, LockedBalance]:
    """`lock_balances` for writers that only debit: locks the participants that exist, in
    the one lock order, and creates none (missing ones are absent from the answer).

    A participant with no row has nothing to spend, so a debit from it is refused and must
    write nothing. One statement and no savepoint: with nothing inserted, the lock never
    waits on another transaction's new participant, so there is no slow path to fall back to.
    """
    ordered = sorted(set(external_ids))
    if not ordered:
        return {}
    rows = fetch_tuples(
        session,
        _LOCK_EXISTING,
        {"tenant_id": tenant_id, "env": env, "external_ids": array_literal(ordered)},
    )
    return {row[1]: _as_balance(row) for row in rows}


def _as_balance(row: Sequence[Any]) -> LockedBalance:
    """A locked row (LockedRow, or a tuple in its column order) with its key as a UUID."""
    return LockedBalance(uuid.UUID(row[0]), *row[1:])


def lock_participant(
    session: Session, tenant_id: uuid.UUID, env: str, external_id: str
) -> Participant:
    return lock_participants(session, tenant_id, env, [external_id])[external_id]


@dataclass(frozen=True)
class BalanceChange:
    """One ledger line to apply to a locked participant."""

    amount: int  # signed: credits positive, debits negative
    type: str
    base_amount: int | None = None
    multipliers: list[dict[str, Any]] | None = None
    reason: str | None = None
    metadata: dict[str, Any] | None = None
    operation_id: uuid.UUID | None = None
    claim_id: uuid.UUID | None = None


def apply_balance_change(
    session: Session, participant: Participant, change: BalanceChange
) -> LedgerEntry:
    """Apply `change` to a participant locked by this transaction; never below zero."""
    if change.amount < 0 and participant.balance + change.amount < 0:
        raise insufficient_points(participant.balance, -change.amount)
    participant.balance += change.amount
    if change.amount >= 0:
        participant.total_earned += change.amount
    else:
        participant.total_spent -= change.amount
    participant.updated_at = utcnow()
    entry = LedgerEntry(
        id=uuid.uuid4(),
        tenant_id=participant.tenant_id,
        env=participant.env,
        participant_pk=participant.id,
        type=change.type,
        amount=change.amount,
        base_amount=change.base_amount if change.base_amount is not None else change.amount,
        multipliers=change.multipliers,
        reason=change.reason,
        metadata_=change.metadata,
        balance_after=participant.balance,
        operation_id=change.operation_id,
        claim_id=change.claim_id,
        created_at=utcnow(),
    )
    session.add(entry)
    return entry
