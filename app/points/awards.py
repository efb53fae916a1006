"""Awarding points, set-wise: one award or a million cost the same handful of statements
per transaction.

For a set of awards: lock every participant in one statement (the one lock order, see
app.ledger), read the tier ladder and active multipliers once, compute balances in Python
in item order, then write all ledger entries and outbox events with one COPY each and all
balances with one statement. Items for the same participant apply in order, each seeing the
balance, tier and multiplier the previous one left, exactly as if run one by one.

The per-award loop is the hot path of batch and bulk awarding: it formats each ledger line
and event as COPY text directly (ids from one urandom call, JSON by template), and keeps
no ORM object; values that are the same for many awards (a participant's multipliers, a
reason) are formatted once.
"""

from __future__ import annotations

import gc
import json
import os
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.errors import DomainError
from app.ledger import LockedRow, insufficient_points, lock_balance_rows
from app.models import LedgerEntry, OutboxEvent
from app.outbox import POINTS_AWARDED, TIER_UPGRADED, endpoint_subscribes, mark_events_recorded
from app.points.items import AwardItem
from app.points.multipliers import ActiveMultiplier, active_multipliers
from app.points.pgcopy import (
    COPY_NULL,
    array_literal,
    copy_field,
    copy_lines,
    plain_array_literal,
)
from app.points.tiers import TierLadder, TierRung, load_ladder

AWARD_ENTRY_TYPE = "award"
ONE = Decimal(1)

LEDGER_COLUMNS = (
    "id",
    "tenant_id",
    "env",
    "participant_pk",
    "type",
    "amount",
    "base_amount",
    "multipliers",
    "reason",
    "metadata",
    "balance_after",
    "operation_id",
    "created_at",
)
OUTBOX_COLUMNS = ("id", "dispatched_at", "tenant_id", "env", "type", "payload")

# One award as the set-wise pass takes it: (participant_id, base amount, reason, metadata
# already serialized as JSON or None), validated beforehand (app.points.items).
AwardRow = tuple[str, int, "str | None", "str | None"]


@dataclass(frozen=True, slots=True)
class TierUpgrade:
    code: str
    name: str
    level: int
    previous_code: str | None
    previous_level: int | None

    def as_body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "level": self.level,
            "previous_code": self.previous_code,
            "previous_level": self.previous_level,
        }


class Credit(NamedTuple):
    """One award as applied: `amount` is what was credited, after multipliers."""

    transaction_id: str
    participant_id: str
    amount: int
    base_amount: int
    new_balance: int
    tier_upgrade: TierUpgrade | None

    def as_body(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "participant_id": self.participant_id,
            "amount": self.amount,
            "new_balance": self.new_balance,
            "tier_upgrade": self.tier_upgrade.as_body() if self.tier_upgrade else None,
        }


@dataclass
class AwardTotals:
    awarded: int = 0
    points_credited: int = 0


class _Placement:
    """A tier and what it (with a participant's boosts) makes an award worth."""

    __slots__ = ("applied", "applied_field", "factor", "tier", "tier_code", "upgrade_at")

    def __init__(
        self, tier: TierRung | None, ladder: TierLadder, boosts: Sequence[ActiveMultiplier]
    ) -> None:
        self.tier = tier
        self.tier_code = tier.code if tier is not None else None
        self.upgrade_at = ladder.upgrade_threshold(tier)
        factor = ONE
        applied: list[dict[str, Any]] = []
        if tier is not None and tier.multiplier != ONE:
            factor *= tier.multiplier
            applied.append(
                {"source": "tier", "tier_code": tier.code, "multiplier": float(tier.multiplier)}
            )
        for boost in boosts:
            factor *= boost.multiplier
            applied.append(boost.as_applied())
        # None: an award is worth its base amount.
        self.factor: Decimal | None = None if factor == ONE else factor
        # What the ledger records of them (None: nothing applied); serialized once for
        # COPY, shared by the entries of every participant placed alike.
        self.applied = applied or None
        self.applied_field = copy_field(json.dumps(applied)) if applied else COPY_NULL


class Placements:
    """Placements of participants without boosts, one per tier: most share a few."""

    def __init__(self, ladder: TierLadder) -> None:
        self.ladder = ladder
        self._by_tier: dict[str | None, _Placement] = {}

    def of(self, tier: TierRung | None, boosts: Sequence[ActiveMultiplier]) -> _Placement:
        if boosts:
            return _Placement(tier, self.ladder, boosts)
        code = tier.code if tier is not None else None
        placement = self._by_tier.get(code)
        if placement is None:
            placement = self._by_tier[code] = _Placement(tier, self.ladder, boosts)
        return placement


class Standing:
    """A locked participant's running state while a set of awards is computed."""

    __slots__ = (
        "applied",
        "applied_field",
        "balance",
        "boosts",
        "external_id",
        "factor",
        "participant_json",
        "pk",
        "tier",
        "tier_code",
        "total_earned",
        "total_spent",
        "upgrade_at",
    )

    def __init__(
        self, locked: LockedRow, placements: Placements, boosts: list[ActiveMultiplier]
    ) -> None:
        self.pk = locked.pk
        self.external_id = locked.external_id
        # The id as a JSON string inside a COPY field, for the events' payloads.
        self.participant_json = copy_field(json.dumps(locked.external_id))
        self.balance = locked.balance
        self.total_earned = locked.total_earned
        self.total_spent = locked.total_spent
        self.boosts = boosts
        ladder = placements.ladder
        self._place(placements.of(ladder.current(locked.tier_code, locked.total_earned), boosts))

    def _place(self, placement: _Placement) -> None:
        self.tier = placement.tier
        self.tier_code = placement.tier_code
        self.upgrade_at = placement.upgrade_at
        self.factor = placement.factor
        self.applied = placement.applied
        self.applied_field = placement.applied_field

    def credit(self, base_amount: int, placements: Placements) -> tuple[int, TierUpgrade | None]:
        """Credit an award: its base amount times the placement's factor, rounded down (the
        product is never negative, so int() does it); then climb to the tier it reaches.
        Returns the points credited and the upgrade, if any. Read `applied` before:
        the multipliers that applied are those of the tier the award started in."""
        factor = self.factor
        credited = base_amount if factor is None else int(base_amount * factor)
        self.balance += credited
        earned = self.total_earned = self.total_earned + credited
        if self.upgrade_at is not None and earned >= self.upgrade_at:
            return credited, self.climb(placements)
        return credited, None

    def debit(self, amount: int) -> DomainError | None:
        """Spend `amount`, or refuse (and change nothing) when the balance is short."""
        if self.balance < amount:
            return insufficient_points(self.balance, amount)
        self.balance -= amount
        self.total_spent += amount
        return None

    def climb(self, placements: Placements) -> TierUpgrade | None:
        """Move up to the tier the lifetime points now reach, reporting the upgrade."""
        if self.upgrade_at is None or self.total_earned < self.upgrade_at:
            return None
        reached = placements.ladder.qualifying(self.total_earned)
        previous = self.tier
        if reached is None or (previous is not None and reached.level <= previous.level):
            return None
        self._place(placements.of(reached, self.boosts))
        return TierUpgrade(
            code=reached.code,
            name=reached.name,
            level=reached.level,
            previous_code=previous.code if previous else None,
            previous_level=previous.level if previous else None,
        )


def load_standings(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    locked: dict[str, LockedRow],
    now: datetime,
) -> tuple[Placements, dict[str, Standing]]:
    """What deciding awards needs of locked participants: the tenant's tier ladder, and
    each participant's standing (balance, tier, active multipliers) by external id."""
    boosts = active_multipliers(session, [row.pk for row in locked.values()], now)
    return place_standings(load_ladder(session, tenant_id, env), locked, boosts)


def place_standings(
    ladder: TierLadder,
    locked: dict[str, LockedRow],
    boosts: Mapping[uuid.UUID, list[ActiveMultiplier]],
) -> tuple[Placements, dict[str, Standing]]:
    """Each locked participant's standing on `ladder` with its active multipliers."""
    placements = Placements(ladder)
    by_pk = {str(pk): active for pk, active in boosts.items()}
    standings = {
        external_id: Standing(row, placements, by_pk.get(row.pk, []))
        for external_id, row in locked.items()
    }
    return placements, standings


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: for set-wise passes over thousands of rows.

    They allocate several objects per row, all alive until the pass ends and none in a
    cycle, so the collections their allocations trigger (measured: a quarter of the pass's
    CPU in a worker) scan the process's heap and free nothing.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


_UUID_VARIANTS = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _uuid4_texts(count: int) -> list[str]:
    """`count` random (version 4) UUIDs as text, from one urandom call."""
    hexes = os.urandom(16 * count).hex()
    return [
        f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_UUID_VARIANTS[h[16]]}{h[17:20]}-{h[20:]}"
        for h in (hexes[start : start + 32] for start in range(0, 32 * count, 32))
    ]


def award_points(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    items: Sequence[AwardItem],
    *,
    operation_id: uuid.UUID | None,
    item_operation_ids: Sequence[uuid.UUID] | None = None,
) -> list[Credit]:
    """Credit every item (already validated), in order; one Credit per item.

    `item_operation_ids` (parallel to `items`) records, per ledger line, the operation it
    came from when several operations are credited together.
    """
    awards = [
        (
            item.participant_id,
            item.amount,
            item.reason,
            json.dumps(item.metadata) if item.metadata is not None else None,
        )
        for item in items
    ]
    credits: list[Credit] = []
    apply_awards(
        session,
        tenant_id,
        env,
        awards,
        operation_fields=_operation_fields(len(items), operation_id, item_operation_ids),
        credits=credits,
    )
    return credits


def _operation_fields(
    count: int, operation_id: uuid.UUID | None, item_operation_ids: Sequence[uuid.UUID] | None
) -> list[str]:
    if item_operation_ids is not None:
        return [str(item_operation_id) for item_operation_id in item_operation_ids]
    return [str(operation_id) if operation_id is not None else COPY_NULL] * count


def apply_awards(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    awards: Sequence[AwardRow],
    *,
    operation_fields: Sequence[str],
    credits: list[Credit] | None = None,
) -> AwardTotals:
    """Credit every award, in order: `award_points` without AwardItems, for bulk callers.

    `operation_fields` (parallel to `awards`) is each ledger line's operation id as COPY
    text (COPY_NULL for none). A Credit per award is appended to `credits` if given.
    """
    with cyclic_gc_paused():
        return _apply_awards(session, tenant_id, env, awards, operation_fields, credits)


def _apply_awards(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    awards: Sequence[AwardRow],
    operation_fields: Sequence[str],
    credits: list[Credit] | None,
) -> AwardTotals:
    if not awards:
        return AwardTotals()
    now = utcnow()
    locked = lock_balance_rows(session, tenant_id, env, (award[0] for award in awards))
    placements, standings = load_standings(session, tenant_id, env, locked, now)
    # Asked before the events are written: with no endpoint to send them to, they are
    # stored already dispatched (app.outbox).
    subscribed = endpoint_subscribes(session, tenant_id, env, (POINTS_AWARDED, TIER_UPGRADED))
    award_pass = _AwardPass(tenant_id, env, now, standings, placements, credits, subscribed)
    # Streamed: PostgreSQL inserts each block of lines while the next one is computed.
    copy_lines(
        session,
        LedgerEntry.__tablename__,
        LEDGER_COLUMNS,
        award_pass.ledger_lines(awards, operation_fields),
    )
    write_balances(session, tenant_id, env, standings.values(), now)
    copy_lines(session, OutboxEvent.__tablename__, OUTBOX_COLUMNS, award_pass.event_lines)
    mark_events_recorded(session, subscribed=subscribed)
    return award_pass.totals


class _AwardPass:
    """The per-award loop: computes each credit, formats its ledger line and its events."""

    def __init__(
        self,
        tenant_id: uuid.UUID,
        env: str,
        now: datetime,
        standings: dict[str, Standing],
        placements: Placements,
        credits: list[Credit] | None,
        subscribed: bool,
    ) -> None:
        self.tenant_env = f"{tenant_id}\t{copy_field(env)}"
        self.created_at_field = now.isoformat()
        # An event line's fields after its id, up to its type (OUTBOX_COLUMNS).
        dispatched_at_field = COPY_NULL if subscribed else self.created_at_field
        self.event_head = f"\t{dispatched_at_field}\t{self.tenant_env}\t"
        self.standings = standings
        self.placements = placements
        self.credits = credits
        self.event_lines: list[str] = []
        self.totals = AwardTotals()

    def ledger_lines(
        self, awards: Sequence[AwardRow], operation_fields: Sequence[str]
    ) -> Iterator[str]:
        """Each award's ledger line, in order; its events go to `event_lines` meanwhile."""
        standings, placements, credits = self.standings, self.placements, self.credits
        event_lines = self.event_lines
        ids = _uuid4_texts(2 * len(awards))  # a transaction id, then an event id, per award
        # Fields that are the same on every line, formatted once.
        tenant_env = self.tenant_env
        ledger_prefix = f"\t{tenant_env}\t"
        ledger_type = f"\t{AWARD_ENTRY_TYPE}\t"
        event_head = self.event_head
        event_prefix = f"{event_head}{POINTS_AWARDED}\t"
        created_at_field = self.created_at_field
        # reason -> (its COPY field, its JSON inside a COPY field)
        reasons: dict[str | None, tuple[str, str]] = {None: (COPY_NULL, "null")}
        points = 0
        for index, (participant_id, base_amount, reason, metadata_json) in enumerate(awards):
            standing = standings[participant_id]
            applied_field = standing.applied_field
            credited, upgrade = standing.credit(base_amount, placements)
            points += credited
            balance = standing.balance
            transaction_id = ids[2 * index]
            reason_fields = reasons.get(reason)
            if reason_fields is None:
                reason_fields = (copy_field(reason), copy_field(json.dumps(reason)))
                reasons[reason] = reason_fields
            metadata_field = COPY_NULL if metadata_json is None else copy_field(metadata_json)
            # json.dumps(awarded_payload(...)), by hand (a test holds the two equal).
            event_lines.append(
                f'{ids[2 * index + 1]}{event_prefix}{{"participant_id": '
                f'{standing.participant_json}, "transaction_id": "{transaction_id}"'
                f', "amount": {credited}, "base_amount": {base_amount}'
                f', "new_balance": {balance}, "reason": {reason_fields[1]}'
                f', "metadata": {"null" if metadata_json is None else metadata_field}}}\n'
            )
            if upgrade is not None:
                upgraded = upgraded_payload(
                    participant_id, transaction_id, upgrade, standing.total_earned
                )
                event_lines.append(_event_line(event_head, TIER_UPGRADED, upgraded))
            if credits is not None:
                credits.append(
                    Credit(transaction_id, participant_id, credited, base_amount, balance, upgrade)
                )
            yield (
                f"{transaction_id}{ledger_prefix}{standing.pk}{ledger_type}{credited}"
                f"\t{base_amount}\t{applied_field}\t{reason_fields[0]}\t{metadata_field}"
                f"\t{balance}\t{operation_fields[index]}\t{created_at_field}\n"
            )
        self.totals = AwardTotals(len(awards), points)


def _event_line(event_head: str, event_type: str, payload: dict[str, Any]) -> str:
    return f"{uuid.uuid4()}{event_head}{event_type}\t{copy_field(json.dumps(payload))}\n"


def awarded_payload(
    credit: Credit, reason: str | None, metadata: dict[str, Any] | None
) -> dict[str, Any]:
    """The points.awarded event's payload (the award pass formats the same JSON by hand)."""
    return {
        "participant_id": credit.participant_id,
        "transaction_id": credit.transaction_id,
        "amount": credit.amount,
        "base_amount": credit.base_amount,
        "new_balance": credit.new_balance,
        "reason": reason,
        "metadata": metadata,
    }


def upgraded_payload(
    participant_id: str, transaction_id: str, upgrade: TierUpgrade, total_earned: int
) -> dict[str, Any]:
    previous = (
        {"code": upgrade.previous_code, "level": upgrade.previous_level}
        if upgrade.previous_code is not None
        else None
    )
    return {
        "participant_id": participant_id,
        "transaction_id": transaction_id,
        "previous_tier": previous,
        "new_tier": {"code": upgrade.code, "name": upgrade.name, "level": upgrade.level},
        "qualifying_points": total_earned,
    }


# An upsert on the primary key rather than UPDATE ... FROM: it always probes the key once
# per row, where the join may be planned as a scan of every participant. The rows exist and
# are locked by this transaction, so the insert half never happens; the proposed rows still
# carry consistent totals, as CHECK constraints apply to them. The values travel as array
# literals (see app.points.pgcopy).
_WRITE_BALANCES = text(
    """
    INSERT INTO participants AS p (
        id, tenant_id, env, external_id, balance, total_earned, total_spent, tier_code,
        updated_at
    )
    SELECT incoming.pk, :tenant_id, :env, incoming.external_id, incoming.balance,
           incoming.total_earned, incoming.total_spent, incoming.tier_code, :now
    FROM unnest(
        CAST(:pks AS uuid[]), CAST(:external_ids AS text[]), CAST(:balances AS bigint[]),
        CAST(:earned AS bigint[]), CAST(:spent AS bigint[]), CAST(:tier_codes AS text[])
    ) AS incoming(pk, external_id, balance, total_earned, total_spent, tier_code)
    ON CONFLICT (id) DO UPDATE SET
        balance = excluded.balance,
        total_earned = excluded.total_earned,
        total_spent = excluded.total_spent,
        tier_code = excluded.tier_code,
        updated_at = excluded.updated_at
    """
)


def write_balances(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    standings: Collection[Standing],
    now: datetime,
) -> None:
    """Every participant's new balance, lifetime points and tier in one statement."""
    session.execute(
        _WRITE_BALANCES,
        {
            "tenant_id": tenant_id,
            "env": env,
            "now": now,
            "pks": plain_array_literal([s.pk for s in standings]),
            "external_ids": array_literal([s.external_id for s in standings]),
            "balances": plain_array_literal([str(s.balance) for s in standings]),
            "earned": plain_array_literal([str(s.total_earned) for s in standings]),
            "spent": plain_array_literal([str(s.total_spent) for s in standings]),
            "tier_codes": array_literal([s.tier_code for s in standings]),
        },
    )
