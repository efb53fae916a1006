"""The lots' clock: expiring what is past `expires_at` and releasing what is past
`available_at`, in batches, from a periodic worker task.

Each batch is one transaction on the write path's pattern: pick the due lots (a plain
read), lock their participants in the one lock order (app.ledger), read their due lots
again under those locks, decide (pure: `decide_expiries`, `decide_releases`), then write
every ledger line, event, lot and balance set-wise. Reading again under lock is what
makes a sweep safe beside everything else: a deduction that spent a lot first leaves
nothing of it to expire, two sweeps never expire one lot twice, and a sweep killed
mid-batch rolls back whole, so the next run finds the same lots still due. Nothing is
remembered between runs but the lots themselves.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.infra.pgcopy import COPY_NULL, copy_field, copy_lines, fetch_tuples, plain_array_literal
from app.ledger import lock_changing_rows
from app.models import LedgerEntry, OutboxEvent
from app.outbox import (
    POINTS_EXPIRED,
    POINTS_RELEASED,
    TIER_UPGRADED,
    endpoint_subscribes,
    events_to_dispatch,
    mark_events_recorded,
)
from app.points.awards import LEDGER_COLUMNS, OUTBOX_COLUMNS, uuid4_texts, write_balances
from app.points.standings import Placements, Standing, load_standings, upgraded_payload

EXPIRE_ENTRY_TYPE = "expire"
# A release line shows the points that became available; the ledger counted them when
# they were awarded, so its amount is not counted again (app.points.verify).
RELEASE_ENTRY_TYPE = "release"
SWEEP_BATCH_LOTS = 5_000


@dataclass(frozen=True, slots=True)
class DueLot:
    """A lot a sweep found due, read under its participant's lock."""

    lot_id: str
    participant_id: str
    remaining: int
    due_at: datetime  # its expires_at (expiry) or available_at (release)


@dataclass(frozen=True, slots=True)
class LotEvent:
    """What one due lot becomes: a ledger line and its events."""

    lot: DueLot
    transaction_id: str
    entry_type: str
    amount: int  # signed, as the ledger line carries it
    new_balance: int
    events: tuple[tuple[str, dict[str, Any]], ...]


def decide_expiries(
    due: Iterable[DueLot], standings: dict[str, Standing], transaction_ids: Iterable[str]
) -> list[LotEvent]:
    """Each due lot's remaining points expire, in order. Pure."""
    decided = []
    for lot, transaction_id in zip(due, transaction_ids, strict=False):
        standing = standings[lot.participant_id]
        standing.expire(lot.remaining)
        payload = {
            "participant_id": lot.participant_id,
            "transaction_id": transaction_id,
            "amount": lot.remaining,
            "new_balance": standing.balance,
            "expired_at": lot.due_at.isoformat(),
        }
        decided.append(
            LotEvent(
                lot,
                transaction_id,
                EXPIRE_ENTRY_TYPE,
                -lot.remaining,
                standing.balance,
                ((POINTS_EXPIRED, payload),),
            )
        )
    return decided


def decide_releases(
    due: Iterable[DueLot],
    standings: dict[str, Standing],
    placements: Placements,
    transaction_ids: Iterable[str],
) -> list[LotEvent]:
    """Each due pending lot becomes available, in order: its points count from now on,
    and may lift the participant to a higher tier. Pure."""
    decided = []
    for lot, transaction_id in zip(due, transaction_ids, strict=False):
        standing = standings[lot.participant_id]
        upgrade = standing.release(lot.remaining, placements)
        events: list[tuple[str, dict[str, Any]]] = [
            (
                POINTS_RELEASED,
                {
                    "participant_id": lot.participant_id,
                    "transaction_id": transaction_id,
                    "amount": lot.remaining,
                    "new_balance": standing.balance,
                    "released_at": lot.due_at.isoformat(),
                },
            )
        ]
        if upgrade is not None:
            events.append(
                (
                    TIER_UPGRADED,
                    upgraded_payload(
                        lot.participant_id, transaction_id, upgrade, standing.total_earned
                    ),
                )
            )
        decided.append(
            LotEvent(
                lot,
                transaction_id,
                RELEASE_ENTRY_TYPE,
                lot.remaining,
                standing.balance,
                tuple(events),
            )
        )
    return decided


@dataclass(frozen=True, slots=True)
class _Sweep:
    """One of the two sweeps: which lots are due, and what they become."""

    name: str
    # Due lots of any tenant, oldest due first: their participants' (tenant, env, id).
    find_due: str
    # The due lots of locked participants (keys in %(pks)s), in their application order.
    read_due: str
    # Marks the swept lots (ids in %(lot_ids)s).
    mark_swept: str
    event_types: tuple[str, ...]


EXPIRY = _Sweep(
    name="expiry",
    find_due="""
        SELECT DISTINCT p.tenant_id, p.env, p.external_id
        FROM (
            SELECT participant_pk FROM point_lots
            WHERE remaining > 0 AND NOT pending AND expires_at <= %(now)s
            ORDER BY expires_at
            LIMIT %(limit)s
        ) AS due
        JOIN participants p ON p.id = due.participant_pk
    """,
    read_due="""
        SELECT CAST(id AS text), CAST(participant_pk AS text), remaining, expires_at
        FROM point_lots
        WHERE participant_pk = ANY(CAST(%(pks)s AS uuid[])) AND remaining > 0 AND NOT pending
          AND expires_at <= %(now)s
        ORDER BY participant_pk, expires_at, seq
    """,
    mark_swept="""
        UPDATE point_lots SET remaining = 0 WHERE id = ANY(CAST(%(lot_ids)s AS uuid[]))
    """,
    event_types=(POINTS_EXPIRED,),
)
RELEASE = _Sweep(
    name="release",
    find_due="""
        SELECT DISTINCT p.tenant_id, p.env, p.external_id
        FROM (
            SELECT participant_pk FROM point_lots
            WHERE pending AND available_at <= %(now)s
            ORDER BY available_at
            LIMIT %(limit)s
        ) AS due
        JOIN participants p ON p.id = due.participant_pk
    """,
    read_due="""
        SELECT CAST(id AS text), CAST(participant_pk AS text), remaining, available_at
        FROM point_lots
        WHERE participant_pk = ANY(CAST(%(pks)s AS uuid[])) AND pending
          AND available_at <= %(now)s
        ORDER BY participant_pk, available_at, seq
    """,
    mark_swept="""
        UPDATE point_lots SET pending = false WHERE id = ANY(CAST(%(lot_ids)s AS uuid[]))
    """,
    event_types=(POINTS_RELEASED, TIER_UPGRADED),
)


def sweep_batch(
    session: Session, sweep: _Sweep, now: datetime, limit: int = SWEEP_BATCH_LOTS
) -> int:
    """Sweep up to about `limit` due lots in this transaction; how many were swept."""
    found = fetch_tuples(session, sweep.find_due, {"now": now, "limit": limit})
    by_program: dict[tuple[uuid.UUID, str], list[str]] = {}
    for tenant_id, env, external_id in found:
        by_program.setdefault((tenant_id, env), []).append(external_id)
    swept = 0
    # One program after another, each in the one lock order: a writer never locks two
    # tenants' participants, so this order cannot cross theirs.
    for (tenant_id, env), external_ids in sorted(by_program.items(), key=lambda item: str(item[0])):
        swept += _sweep_program(session, sweep, tenant_id, env, external_ids, now)
    return swept


def _sweep_program(
    session: Session,
    sweep: _Sweep,
    tenant_id: uuid.UUID,
    env: str,
    external_ids: list[str],
    now: datetime,
) -> int:
    locked = lock_changing_rows(session, tenant_id, env, create=(), existing=external_ids)
    by_pk = {row.pk: external_id for external_id, row in locked.items()}
    rows = fetch_tuples(session, sweep.read_due, {"pks": plain_array_literal(by_pk), "now": now})
    if not rows:
        return 0
    due = [
        DueLot(lot_id, by_pk[participant_pk], int(remaining), due_at)
        for lot_id, participant_pk, remaining, due_at in rows
    ]
    placements, standings = load_standings(session, tenant_id, env, locked, now)
    ids = uuid4_texts(len(due))
    if sweep is EXPIRY:
        decided = decide_expiries(due, standings, ids)
    else:
        decided = decide_releases(due, standings, placements, ids)
    subscribed = endpoint_subscribes(session, tenant_id, env, sweep.event_types)
    _write(session, sweep, tenant_id, env, decided, standings, now, subscribed=subscribed)
    return len(decided)


def _write(
    session: Session,
    sweep: _Sweep,
    tenant_id: uuid.UUID,
    env: str,
    decided: list[LotEvent],
    standings: dict[str, Standing],
    now: datetime,
    *,
    subscribed: bool,
) -> None:
    tenant_env = f"{tenant_id}\t{copy_field(env)}"
    created_at = now.isoformat()
    event_head = f"\t{COPY_NULL if subscribed else created_at}\t{tenant_env}\t"
    ledger_lines = []
    event_lines = []
    for each in decided:
        standing = standings[each.lot.participant_id]
        ledger_lines.append(
            f"{each.transaction_id}\t{tenant_env}\t{standing.pk}\t{each.entry_type}"
            f"\t{each.amount}\t{each.amount}\t{COPY_NULL}\t{COPY_NULL}\t{COPY_NULL}"
            f"\t{COPY_NULL}\t{each.new_balance}\t{COPY_NULL}\t{created_at}\n"
        )
        for event_type, payload in each.events:
            event_lines.append(
                f"{uuid.uuid4()}{event_head}{event_type}\t{copy_field(json.dumps(payload))}\n"
            )
    copy_lines(session, LedgerEntry.__tablename__, LEDGER_COLUMNS, ledger_lines)
    session.connection().exec_driver_sql(
        sweep.mark_swept, {"lot_ids": plain_array_literal(each.lot.lot_id for each in decided)}
    )
    changed = {each.lot.participant_id for each in decided}
    write_balances(session, tenant_id, env, [standings[pid] for pid in sorted(changed)], now)
    copy_lines(session, OutboxEvent.__tablename__, OUTBOX_COLUMNS, event_lines)
    mark_events_recorded(session, subscribed=subscribed)


@dataclass
class SweepReport:
    released: int = 0
    expired: int = 0
    # Whether an event was recorded that an endpoint subscribes to: wake the dispatcher.
    to_dispatch: bool = False


def sweep_lots(
    session_factory: sessionmaker[Session],
    *,
    now: Callable[[], datetime] = utcnow,
    limit: int = SWEEP_BATCH_LOTS,
) -> SweepReport:
    """Release, then expire, every lot due when it starts, a batch per transaction.
    Releases go first: a lot released and expired in one run expires available points."""
    started = now()
    report = SweepReport()
    for sweep in (RELEASE, EXPIRY):
        while True:
            with session_factory.begin() as session:
                swept = sweep_batch(session, sweep, started, limit)
                report.to_dispatch = report.to_dispatch or events_to_dispatch(session)
            if sweep is RELEASE:
                report.released += swept
            else:
                report.expired += swept
            if swept == 0:
                break
    return report
