"""Awarding points, set-wise: one award or thousands cost the same handful of statements.

For a set of awards: lock every participant in one statement (the one lock order, see
app.ledger), read the tier ladder and active multipliers once, compute balances in Python
in item order, then write all ledger entries and outbox events with one COPY each and all
balances with one statement. Items for the same participant apply in order, each seeing the
balance, tier and multiplier the previous one left, exactly as if run one by one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, String, Uuid, bindparam, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.ledger import LockedBalance, lock_balances
from app.models import LedgerEntry, OutboxEvent, Participant
from app.outbox import POINTS_AWARDED, TIER_UPGRADED, mark_events_recorded
from app.points.items import AwardItem
from app.points.multipliers import ActiveMultiplier, active_multipliers
from app.points.pgcopy import COPY_NULL, copy_field, copy_lines
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
OUTBOX_COLUMNS = ("id", "tenant_id", "env", "type", "payload")


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


@dataclass(frozen=True, slots=True)
class Credit:
    """One award as applied: `amount` is what was credited, after multipliers."""

    transaction_id: uuid.UUID
    participant_id: str
    amount: int
    base_amount: int
    new_balance: int
    tier_upgrade: TierUpgrade | None

    def as_body(self) -> dict[str, Any]:
        return {
            "transaction_id": str(self.transaction_id),
            "participant_id": self.participant_id,
            "amount": self.amount,
            "new_balance": self.new_balance,
            "tier_upgrade": self.tier_upgrade.as_body() if self.tier_upgrade else None,
        }


class _Standing:
    """A locked participant's running state while a set of awards is computed."""

    __slots__ = (
        "applied_field",
        "balance",
        "boosts",
        "external_id",
        "factor",
        "participant_pk",
        "participant_pk_field",
        "tier",
        "tier_code",
        "total_earned",
        "total_spent",
        "upgrade_at",
    )

    def __init__(
        self, locked: LockedBalance, ladder: TierLadder, boosts: list[ActiveMultiplier]
    ) -> None:
        self.participant_pk = locked.id
        self.participant_pk_field = str(locked.id)
        self.external_id = locked.external_id
        self.balance = locked.balance
        self.total_earned = locked.total_earned
        self.total_spent = locked.total_spent
        self.boosts = boosts
        self._place(ladder.current(locked.tier_code, locked.total_earned), ladder)

    def _place(self, tier: TierRung | None, ladder: TierLadder) -> None:
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
        for boost in self.boosts:
            factor *= boost.multiplier
            applied.append(boost.as_applied())
        self.factor = factor
        # Serialized once, shared by this participant's entries until its tier changes.
        self.applied_field = copy_field(json.dumps(applied)) if applied else COPY_NULL

    def credit(self, base_amount: int) -> int:
        # Round down: int() truncates, and the product is never negative.
        credited = base_amount if self.factor == ONE else int(base_amount * self.factor)
        self.balance += credited
        self.total_earned += credited
        return credited

    def climb(self, ladder: TierLadder) -> TierUpgrade | None:
        """Move up to the tier the lifetime points now reach, reporting the upgrade."""
        if self.upgrade_at is None or self.total_earned < self.upgrade_at:
            return None
        reached = ladder.qualifying(self.total_earned)
        previous = self.tier
        if reached is None or (previous is not None and reached.level <= previous.level):
            return None
        self._place(reached, ladder)
        return TierUpgrade(
            code=reached.code,
            name=reached.name,
            level=reached.level,
            previous_code=previous.code if previous else None,
            previous_level=previous.level if previous else None,
        )


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
    if not items:
        return []
    now = utcnow()
    locked = lock_balances(session, tenant_id, env, (item.participant_id for item in items))
    ladder = load_ladder(session, tenant_id, env)
    boosts = active_multipliers(session, [row.id for row in locked.values()], now)
    standings = {
        external_id: _Standing(row, ladder, boosts.get(row.id, []))
        for external_id, row in locked.items()
    }
    credits: list[Credit] = []
    ledger_lines: list[str] = []
    event_lines: list[str] = []
    # Fields that are the same on every line, formatted once.
    tenant_env = f"{tenant_id}\t{copy_field(env)}"
    operation_fields = (
        [str(item_operation_id) for item_operation_id in item_operation_ids]
        if item_operation_ids is not None
        else [str(operation_id) if operation_id is not None else COPY_NULL] * len(items)
    )
    created_at_field = now.isoformat()
    for item, operation_field in zip(items, operation_fields, strict=True):
        standing = standings[item.participant_id]
        applied_field = standing.applied_field
        credited = standing.credit(item.amount)
        upgrade = standing.climb(ladder)
        credit = Credit(
            uuid.uuid4(), item.participant_id, credited, item.amount, standing.balance, upgrade
        )
        credits.append(credit)
        metadata_json = json.dumps(item.metadata) if item.metadata is not None else None
        ledger_lines.append(
            f"{credit.transaction_id}\t{tenant_env}\t{standing.participant_pk_field}"
            f"\t{AWARD_ENTRY_TYPE}\t{credited}\t{item.amount}\t{applied_field}"
            f"\t{copy_field(item.reason)}\t{copy_field(metadata_json)}\t{standing.balance}"
            f"\t{operation_field}\t{created_at_field}\n"
        )
        event_lines.append(_event_line(tenant_env, POINTS_AWARDED, _awarded(credit, item)))
        if upgrade is not None:
            upgraded = _upgraded(credit, upgrade, standing.total_earned)
            event_lines.append(_event_line(tenant_env, TIER_UPGRADED, upgraded))
    copy_lines(session, LedgerEntry.__tablename__, LEDGER_COLUMNS, ledger_lines)
    _write_balances(session, tenant_id, env, standings.values(), now)
    copy_lines(session, OutboxEvent.__tablename__, OUTBOX_COLUMNS, event_lines)
    mark_events_recorded(session)
    return credits


def _event_line(tenant_env: str, event_type: str, payload: dict[str, Any]) -> str:
    return f"{uuid.uuid4()}\t{tenant_env}\t{event_type}\t{copy_field(json.dumps(payload))}\n"


def _awarded(credit: Credit, item: AwardItem) -> dict[str, Any]:
    return {
        "participant_id": credit.participant_id,
        "transaction_id": str(credit.transaction_id),
        "amount": credit.amount,
        "base_amount": credit.base_amount,
        "new_balance": credit.new_balance,
        "reason": item.reason,
        "metadata": item.metadata,
    }


def _upgraded(credit: Credit, upgrade: TierUpgrade, total_earned: int) -> dict[str, Any]:
    previous = (
        {"code": upgrade.previous_code, "level": upgrade.previous_level}
        if upgrade.previous_code is not None
        else None
    )
    return {
        "participant_id": credit.participant_id,
        "transaction_id": str(credit.transaction_id),
        "previous_tier": previous,
        "new_tier": {"code": upgrade.code, "name": upgrade.name, "level": upgrade.level},
        "qualifying_points": total_earned,
    }


def _write_balances(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    standings: Collection[_Standing],
    now: datetime,
) -> None:
    """Every participant's new balance, lifetime points and tier in one statement.

    An upsert on the primary key rather than UPDATE ... FROM: it always probes the key
    once per row, where the join may be planned as a scan of every participant. The rows
    exist and are locked by this transaction, so the insert half never happens; the
    proposed rows still carry consistent totals, as CHECK constraints apply to them.
    """
    standings = list(standings)
    incoming = (
        func.unnest(
            bindparam("pks", [s.participant_pk for s in standings], type_=ARRAY(Uuid())),
            bindparam("external_ids", [s.external_id for s in standings], type_=ARRAY(String())),
            bindparam("balances", [s.balance for s in standings], type_=ARRAY(BigInteger())),
            bindparam("earned", [s.total_earned for s in standings], type_=ARRAY(BigInteger())),
            bindparam("spent", [s.total_spent for s in standings], type_=ARRAY(BigInteger())),
            bindparam("tier_codes", [s.tier_code for s in standings], type_=ARRAY(String())),
        )
        .table_valued("pk", "external_id", "balance", "total_earned", "total_spent", "tier_code")
        .render_derived(name="incoming")
    )
    upsert = pg_insert(Participant).from_select(
        [
            "id",
            "tenant_id",
            "env",
            "external_id",
            "balance",
            "total_earned",
            "total_spent",
            "tier_code",
            "updated_at",
        ],
        select(
            incoming.c.pk,
            literal(tenant_id, Uuid()),
            literal(env, String()),
            incoming.c.external_id,
            incoming.c.balance,
            incoming.c.total_earned,
            incoming.c.total_spent,
            incoming.c.tier_code,
            literal(now, DateTime(timezone=True)),
        ),
    )
    session.execute(
        upsert.on_conflict_do_update(
            index_elements=["id"],
            set_={
                "balance": upsert.excluded.balance,
                "total_earned": upsert.excluded.total_earned,
                "tier_code": upsert.excluded.tier_code,
                "updated_at": upsert.excluded.updated_at,
            },
        )
    )
