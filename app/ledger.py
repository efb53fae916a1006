"""Participants' balances and the append-only points ledger.

Every balance change locks the participant row first (SELECT ... FOR UPDATE), so changes
for one participant are serialized in the database whatever process makes them. Several
participants are locked in one statement ordered by external id: one lock order, so two
transactions touching the same participants cannot deadlock. The table's CHECK
constraints (balance >= 0, balance = earned - spent) back the rules up.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import NamedTuple

from sqlalchemy.orm import Session

from app.errors import DomainError
from app.infra.pgcopy import array_literal, fetch_tuples


def insufficient_points(available: int, requested: int) -> DomainError:
    return DomainError(
        "insufficient_points",
        f"Insufficient points. Available: {available}, requested: {requested}",
        400,
    )


class LockedRow(NamedTuple):
    """A locked participant's balance as plain values (its key as text, as set-wise
    writers put it in their statements)."""

    pk: str
    external_id: str
    balance: int
    total_earned: int
    total_spent: int
    tier_code: str | None
    total_expired: int
    pending: int
    tier_locked: bool = False  # a tier set by hand, locked: no automatic change
    # Whether it has available lots (app.points.lots): asked only by writers that may
    # spend; one that has none spends open points alone, and its lots are not read.
    holds_lots: bool = False


# A LATERAL subquery per id: the plan is always one index probe per id, taken in array
# order (the nested loop walks the array), whatever the table statistics and whether the
# statement runs with a custom or a generic (prepared) plan. `external_id = ANY(...)` with
# ORDER BY can degrade to a filter over the tenant's every participant.
_LOCKED_COLUMNS = """
    SELECT CAST(p.id AS text), p.external_id, p.balance, p.total_earned, p.total_spent,
           p.tier_code, p.total_expired, p.pending, coalesce(p.tier_locked_until > now(), false)
"""
_LOCKING = """
    FROM unnest(CAST(%(external_ids)s AS text[])) AS wanted(external_id)
    CROSS JOIN LATERAL (
        SELECT * FROM participants
        WHERE tenant_id = %(tenant_id)s AND env = %(env)s AND external_id = wanted.external_id
        FOR UPDATE
    ) AS p
"""
_LOCK_EXISTING = _LOCKED_COLUMNS + _LOCKING
_LOCK_SPENDERS = (
    _LOCKED_COLUMNS
    + """,
           EXISTS (SELECT FROM point_lots WHERE participant_pk = p.id AND NOT pending)
    """
    + _LOCKING
)
_CREATE_MISSING = """
    INSERT INTO participants AS p
        (id, tenant_id, env, external_id, balance, total_earned, total_spent)
    SELECT gen_random_uuid(), %(tenant_id)s, %(env)s, wanted.external_id, 0, 0, 0
    FROM unnest(CAST(%(external_ids)s AS text[])) AS wanted(external_id)
    ON CONFLICT (tenant_id, env, external_id) DO NOTHING
    RETURNING CAST(p.id AS text), p.external_id, p.balance, p.total_earned, p.total_spent,
              p.tier_code, p.total_expired, p.pending, false
"""


def lock_balance_rows(
    session: Session, tenant_id: uuid.UUID, env: str, external_ids: Iterable[str]
) -> dict[str, LockedRow]:
    """Lock (creating where missing) participants as plain rows: the set-wise writers' lock.

    Usually every participant exists, so the lock is tried first, in a savepoint. If some
    are missing, the savepoint is rolled back (releasing the locks it took) and the slow
    path runs in the one lock order: create the missing ones in
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
        return {row[1]: LockedRow(*row) for row in found}
    if attempt is not None:
        attempt.rollback()
    known = {row[1] for row in found}
    missing = [external_id for external_id in ordered if external_id not in known]
    created = fetch_tuples(
        session, _CREATE_MISSING, {**where, "external_ids": array_literal(missing)}
    )
    locked = {row[1]: LockedRow(*row) for row in created}
    others = [external_id for external_id in ordered if external_id not in locked]
    if others:
        rows = fetch_tuples(
            session, _LOCK_EXISTING, {**where, "external_ids": array_literal(others)}
        )
        locked.update((row[1], LockedRow(*row)) for row in rows)
    return locked


def create_participants(
    session: Session, tenant_id: uuid.UUID, env: str, external_ids: Iterable[str]
) -> None:
    """Create the participants missing among `external_ids`, locking none. The insert may
    wait on another transaction's insert of the same new participant: call it holding no
    participant lock, nor any lock a participant-locking write may wait for."""
    ordered = sorted(set(external_ids))
    if ordered:
        fetch_tuples(
            session,
            _CREATE_MISSING,
            {"tenant_id": tenant_id, "env": env, "external_ids": array_literal(ordered)},
        )


def lock_changing_rows(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    *,
    create: Iterable[str],
    existing: Iterable[str],
    spending: bool = False,
) -> dict[str, LockedRow]:
    """Lock, in the one lock order, the participants a batch will write to: those in
    `create` are created where missing (they are credited, or get a multiplier), those
    only in `existing` are not (a debit from nobody is refused and must write nothing),
    so they may be absent from the answer.

    Two statements and no savepoint, for the small batches of everyday writes: the missing
    participants are created before any participant lock is taken (an insert may wait on
    another transaction's insert of the same new participant, and holding no participant
    lock then cannot deadlock), then every participant is locked in external-id order.
    With `spending` (the batch may spend points), each row also says whether it has lots
    (LockedRow.holds_lots).
    """
    where = {"tenant_id": tenant_id, "env": env}
    creating = sorted(set(create))
    create_participants(session, tenant_id, env, creating)
    ordered = sorted({*creating, *existing})
    if not ordered:
        return {}
    statement = _LOCK_SPENDERS if spending else _LOCK_EXISTING
    rows = fetch_tuples(session, statement, {**where, "external_ids": array_literal(ordered)})
    return {row[1]: LockedRow(*row) for row in rows}
