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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.infra.pgcopy import COPY_NULL, copy_field, copy_lines, fetch_tuples, plain_array_literal
from app.ledger import lock_changing_rows
from app.models import LedgerEntry, OutboxEvent
from app.outbox import (
    POINTS_EXPIRED,
    POINTS_RELEASED,
    TIER_UPGRADED,
    events_to_dispatch,
    mark_events_recorded,
)
from app.points.awards import LEDGER_COLUMNS, OUTBOX_COLUMNS, uuid4_texts, write_balances
from app.points.program import program_facts
from app.points.standings import (
    Placements,
    Standing,
    TierUpgrade,
    load_standings,
    upgraded_payload,
)

EXPIRE_ENTRY_TYPE = "expire"
# A release line shows the points that became available; the ledger counted them when
# they were awarded, so its amount is not counted again (app.points.verify).
RELEASE_ENTRY_TYPE = "release"
SWEEP_BATCH_LOTS = 20_000


class Shard(NamedTuple):
    """The participants whose key hashes to `position` modulo `total`: sweeps of
    different shards take disjoint participants, so they run side by side without waiting
    on each other's locks."""

    position: int
    total: int


WHOLE = Shard(0, 1)


def drain_in_batches(
    session_factory: sessionmaker[Session], batch: Callable[[Session], int], limit: int
) -> int:
    """Run `batch` (which handles up to `limit` due rows) a transaction at a time until one
    handles fewer; how many it handled in all."""
    handled = 0
    while True:
        with session_factory.begin() as session:
            done = batch(session)
        handled += done
        if done < limit:
            return handled


def shard_filter(column: str) -> str:
    """The SQL condition that `column` (a participant key) is in the statement's shard
    (parameters `shard` and `shards`)."""
    return f"abs(hashtext(CAST({column} AS text))) %% %(shards)s = %(shard)s"


class DueLot(NamedTuple):
    """A lot a sweep found due, read under its participant's lock."""

    seq: int
    participant_id: str
    remaining: int
    due_at: datetime  # its expires_at (expiry) or available_at (release)


# One due lot as decided, as a plain tuple (a sweep decides a million): the ledger line's
# transaction id, the lot, the line's signed amount, the balance after it, and the tier
# upgrade its release brings (None for an expiry).
LotDecision = tuple[str, DueLot, int, int, "TierUpgrade | None"]


def decide_expiries(
    due: Iterable[DueLot], standings: dict[str, Standing], transaction_ids: Iterable[str]
) -> Iterator[LotDecision]:
    """Each due lot's remaining points expire, in order. Pure, and lazy."""
    for lot, transaction_id in zip(due, transaction_ids, strict=True):
        standing = standings[lot.participant_id]
        standing.expire(lot.remaining)
        yield transaction_id, lot, -lot.remaining, standing.balance, None


def decide_releases(
    due: Iterable[DueLot],
    standings: dict[str, Standing],
    placements: Placements,
    transaction_ids: Iterable[str],
) -> Iterator[LotDecision]:
    """Each due pending lot becomes available, in order: its points count from now on,
    and may lift the participant to a higher tier. Pure, and lazy."""
    for lot, transaction_id in zip(due, transaction_ids, strict=True):
        standing = standings[lot.participant_id]
        upgrade = standing.release(lot.remaining, placements)
        yield transaction_id, lot, lot.remaining, standing.balance, upgrade


def expired_payload(decision: LotDecision) -> dict[str, Any]:
    """The points.expired event's payload (the sweep formats the same JSON by hand)."""
    transaction_id, lot, amount, new_balance, _ = decision
    return {
        "participant_id": lot.participant_id,
        "transaction_id": transaction_id,
        "amount": -amount,
        "new_balance": new_balance,
        "expired_at": lot.due_at.isoformat(),
    }


def released_payload(decision: LotDecision) -> dict[str, Any]:
    """The points.released event's payload (the sweep formats the same JSON by hand)."""
    transaction_id, lot, amount, new_balance, _ = decision
    return {
        "participant_id": lot.participant_id,
        "transaction_id": transaction_id,
        "amount": amount,
        "new_balance": new_balance,
        "released_at": lot.due_at.isoformat(),
    }


@dataclass(frozen=True, slots=True)
class _Sweep:
    """One of the two sweeps: which lots are due, and what they become."""

    name: str
    # Due lots of any tenant, oldest due first: their participants' (tenant, env, id).
    find_due: str
    # The due lots of locked participants (keys in %(pks)s), in their application order.
    read_due: str
    # Marks the lots read_due read as swept.
    mark_swept: str
    event_types: tuple[str, ...]
    entry_type: str
    event_type: str
    due_field: str  # the event payload's field for the lot's due_at


EXPIRY = _Sweep(
    name="expiry",
    find_due="""
        SELECT DISTINCT p.tenant_id, p.env, p.external_id
        FROM (
            SELECT participant_pk FROM point_lots
            WHERE NOT pending AND expires_at <= %(now)s AND """  # noqa: S608 (constant fragments, no input)
    + shard_filter("participant_pk")
    + """
            ORDER BY expires_at
            LIMIT %(limit)s
        ) AS due
        JOIN participants p ON p.id = due.participant_pk
    """,
    read_due="""
        SELECT seq, CAST(participant_pk AS text), remaining, expires_at
        FROM point_lots
        WHERE participant_pk = ANY(CAST(%(pks)s AS uuid[])) AND NOT pending
          AND expires_at <= %(now)s
        ORDER BY participant_pk, expires_at, seq
    """,
    # The lots read_due read (the same predicate, under the same participant locks): an
    # expired lot has nothing left.
    mark_swept="""
        DELETE FROM point_lots
        WHERE participant_pk = ANY(CAST(%(pks)s AS uuid[])) AND NOT pending
          AND expires_at <= %(now)s
    """,
    event_types=(POINTS_EXPIRED,),
    entry_type=EXPIRE_ENTRY_TYPE,
    event_type=POINTS_EXPIRED,
    due_field="expired_at",
)
RELEASE = _Sweep(
    name="release",
    find_due="""
        SELECT DISTINCT p.tenant_id, p.env, p.external_id
        FROM (
            SELECT participant_pk FROM point_lots
            WHERE pending AND available_at <= %(now)s AND """  # noqa: S608 (constant fragments, no input)
    + shard_filter("participant_pk")
    + """
            ORDER BY available_at
            LIMIT %(limit)s
        ) AS due
        JOIN participants p ON p.id = due.participant_pk
    """,
    read_due="""
        SELECT seq, CAST(participant_pk AS text), remaining, available_at
        FROM point_lots
        WHERE participant_pk = ANY(CAST(%(pks)s AS uuid[])) AND pending
          AND available_at <= %(now)s
        ORDER BY participant_pk, available_at, seq
    """,
    # A released lot that never expires joins the open points: no lot any more.
    mark_swept="""
        WITH opened AS (
            DELETE FROM point_lots
            WHERE participant_pk = ANY(CAST(%(pks)s AS uuid[])) AND pending
              AND available_at <= %(now)s AND expires_at IS NULL
        )
        UPDATE point_lots SET pending = false
        WHERE participant_pk = ANY(CAST(%(pks)s AS uuid[])) AND pending
          AND available_at <= %(now)s AND expires_at IS NOT NULL
    """,
    event_types=(POINTS_RELEASED, TIER_UPGRADED),
    entry_type=RELEASE_ENTRY_TYPE,
    event_type=POINTS_RELEASED,
    due_field="released_at",
)


def sweep_batch(
    session: Session,
    sweep: _Sweep,
    now: datetime,
    limit: int = SWEEP_BATCH_LOTS,
    shard: Shard = WHOLE,
) -> int:
    """Sweep up to about `limit` due lots (of the participants in `shard`) in this
    transaction; how many were swept."""
    found = fetch_tuples(
        session,
        sweep.find_due,
        {"now": now, "limit": limit, "shard": shard.position, "shards": shard.total},
    )
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
    due_pks = plain_array_literal(by_pk)
    rows = fetch_tuples(session, sweep.read_due, {"pks": due_pks, "now": now})
    if not rows:
        return 0
    due = [
        DueLot(int(seq), by_pk[participant_pk], int(remaining), due_at)
        for seq, participant_pk, remaining, due_at in rows
    ]
    program = program_facts(session, tenant_id, env, sweep.event_types)
    placements, standings = load_standings(
        session, tenant_id, env, locked, now, program.tier_window_days
    )
    subscribed = program.subscribed
    ids = uuid4_texts(2 * len(due))  # a transaction id, then an event id, per lot
    if sweep is EXPIRY:
        decided = decide_expiries(due, standings, ids[0::2])
    else:
        decided = decide_releases(due, standings, placements, ids[0::2])
    lot_pass = _LotPass(sweep, tenant_id, env, now, standings, ids[1::2], subscribed)
    # Streamed: PostgreSQL inserts each block of lines while the next one is decided.
    copy_lines(session, LedgerEntry.__tablename__, LEDGER_COLUMNS, lot_pass.ledger_lines(decided))
    session.connection().exec_driver_sql(sweep.mark_swept, {"pks": due_pks, "now": now})
    changed = sorted({lot.participant_id for lot in due})
    write_balances(session, tenant_id, env, [standings[pid] for pid in changed], now)
    copy_lines(session, OutboxEvent.__tablename__, OUTBOX_COLUMNS, lot_pass.event_lines)
    mark_events_recorded(session, subscribed=subscribed)
    return len(due)


class _LotPass:
    """Formats each decided lot as its ledger line and events, as COPY text."""

    def __init__(
        self,
        sweep: _Sweep,
        tenant_id: uuid.UUID,
        env: str,
        now: datetime,
        standings: dict[str, Standing],
        event_ids: list[str],
        subscribed: bool,
    ) -> None:
        self.sweep = sweep
        self.tenant_env = f"{tenant_id}\t{copy_field(env)}"
        self.created_at = now.isoformat()
        self.event_head = f"\t{COPY_NULL if subscribed else self.created_at}\t{self.tenant_env}\t"
        self.standings = standings
        self.event_ids = event_ids
        self.event_lines: list[str] = []

    def ledger_lines(self, decided: Iterable[LotDecision]) -> Iterator[str]:
        sweep, standings, event_lines, event_ids = (
            self.sweep,
            self.standings,
            self.event_lines,
            self.event_ids,
        )
        ledger_prefix = f"\t{self.tenant_env}\t"
        # The line's fields from multipliers to metadata (LEDGER_COLUMNS), then after
        # balance_after.
        ledger_middle = f"\t{COPY_NULL}" * 6 + "\t"
        ledger_tail = f"\t{COPY_NULL}\t{self.created_at}\n"
        event_prefix = f"{self.event_head}{sweep.event_type}\t"
        upgrade_head = self.event_head
        instants: dict[datetime, str] = {}
        for index, decision in enumerate(decided):
            transaction_id, lot, amount, new_balance, upgrade = decision
            standing = standings[lot.participant_id]
            due_at = instants.get(lot.due_at)
            if due_at is None:
                due_at = instants[lot.due_at] = lot.due_at.isoformat()
            # json.dumps(expired_payload(...)) or of released_payload, by hand (a test
            # holds them equal).
            event_lines.append(
                f'{event_ids[index]}{event_prefix}{{"participant_id": '
                f'{standing.participant_json}, "transaction_id": "{transaction_id}"'
                f', "amount": {lot.remaining}, "new_balance": {new_balance}'
                f', "{sweep.due_field}": "{due_at}"}}\n'
            )
            if upgrade is not None:
                upgraded = upgraded_payload(
                    lot.participant_id, transaction_id, upgrade, standing.qualifying
                )
                event_lines.append(
                    f"{uuid.uuid4()}{upgrade_head}{TIER_UPGRADED}"
                    f"\t{copy_field(json.dumps(upgraded))}\n"
                )
            yield (
                f"{transaction_id}{ledger_prefix}{standing.pk}\t{sweep.entry_type}\t{amount}"
                f"\t{amount}{ledger_middle}{new_balance}{ledger_tail}"
            )


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
    shard: Shard = WHOLE,
) -> SweepReport:
    """Release, then expire, every lot (of the participants in `shard`) due when it
    starts, a batch per transaction. Releases go first: a lot released and expired in one
    run expires available points."""
    started = now()
    report = SweepReport()
    for sweep in (RELEASE, EXPIRY):
        while True:
            with session_factory.begin() as session:
                swept = sweep_batch(session, sweep, started, limit, shard)
                report.to_dispatch = report.to_dispatch or events_to_dispatch(session)
            if sweep is RELEASE:
                report.released += swept
            else:
                report.expired += swept
            if swept == 0:
                break
    return report
