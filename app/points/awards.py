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
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.engagement.pipeline import engagement_reacts
from app.infra.pgcopy import (
    COPY_NULL,
    array_literal,
    copy_field,
    copy_lines,
    plain_array_literal,
)
from app.ledger import lock_balance_rows
from app.models import LedgerEntry, OutboxEvent, PointLot
from app.outbox import POINTS_AWARDED, TIER_UPGRADED, mark_events_recorded
from app.points.items import AwardItem
from app.points.program import program_facts
from app.points.standings import (
    Credit,
    Placements,
    Standing,
    decide_awards,
    load_standings,
    upgraded_payload,
)

AWARD_ENTRY_TYPE = "award"

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
    "action",
    "available_at",
    "expires_at",
    "metadata",
    "balance_after",
    "operation_id",
    "created_at",
)
LOT_COLUMNS = (
    "participant_pk",
    "amount",
    "remaining",
    "pending",
    "available_at",
    "expires_at",
    "created_at",
)
OUTBOX_COLUMNS = ("id", "dispatched_at", "tenant_id", "env", "type", "payload")

# One award as the set-wise pass takes it: (participant_id, base amount, reason, metadata
# already serialized as JSON or None, action, available_at, expires_at), validated and its
# lot terms resolved beforehand (app.points.items, app.points.lots).
AwardRow = tuple[
    str, int, "str | None", "str | None", "str | None", "datetime | None", "datetime | None"
]


@dataclass
class AwardTotals:
    awarded: int = 0
    points_credited: int = 0


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


def uuid4_texts(count: int) -> list[str]:
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
    """Credit every item (already validated), in order; one Credit per item. Its lot
    terms count from now.

    `item_operation_ids` (parallel to `items`) records, per ledger line, the operation it
    came from when several operations are credited together.
    """
    now = utcnow()
    awards: list[AwardRow] = [
        (
            item.participant_id,
            item.amount,
            item.reason,
            json.dumps(item.metadata) if item.metadata is not None else None,
            item.action,
            *(item.terms.resolve(now) if item.terms is not None else (None, None)),
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
    if COPY_NULL not in operation_fields and engagement_reacts(
        session, tenant_id, env, {award[4] for award in awards if award[4] is not None}
    ):
        return _apply_through_pipeline(session, tenant_id, env, awards, operation_fields, credits)
    now = utcnow()
    locked = lock_balance_rows(session, tenant_id, env, (award[0] for award in awards))
    # Asked before the events are written: with no endpoint to send them to, they are
    # stored already dispatched (app.outbox).
    program = program_facts(session, tenant_id, env, (POINTS_AWARDED, TIER_UPGRADED))
    placements, standings = load_standings(
        session, tenant_id, env, locked, now, program.tier_window_days
    )
    award_pass = AwardPass(
        tenant_id,
        env,
        now,
        standings,
        placements,
        credits,
        program.subscribed,
        program.default_expiry_days,
    )
    # Streamed: PostgreSQL inserts each block of lines while the next one is computed.
    copy_lines(
        session,
        LedgerEntry.__tablename__,
        LEDGER_COLUMNS,
        award_pass.ledger_lines(awards, operation_fields),
    )
    write_balances(session, tenant_id, env, standings.values(), now)
    copy_lines(session, OutboxEvent.__tablename__, OUTBOX_COLUMNS, award_pass.event_lines)
    if award_pass.lot_lines:
        copy_lines(session, PointLot.__tablename__, LOT_COLUMNS, award_pass.lot_lines)
    mark_events_recorded(session, subscribed=program.subscribed)
    return award_pass.totals


def _apply_through_pipeline(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    awards: Sequence[AwardRow],
    operation_fields: Sequence[str],
    credits: list[Credit] | None,
) -> AwardTotals:
    """Awards of a program whose engagement counts credits (badges, challenges,
    leaderboards, streaks of their actions): through the action pipeline, which decides
    those with the credits, rather than the award pass, which knows only points."""
    # Imported here: the everyday write builds on this module's ledger format.
    from app.points.balance_changes import Applied, BalanceWrite, apply_changes

    writes = [
        BalanceWrite(
            uuid.UUID(operation_field),
            participant_id,
            amount,
            debit=False,
            reason=reason,
            metadata=json.loads(metadata) if metadata is not None else None,
            action=action,
            available_at=available_at,
            expires_at=expires_at,
        )
        for (
            participant_id,
            amount,
            reason,
            metadata,
            action,
            available_at,
            expires_at,
        ), operation_field in zip(awards, operation_fields, strict=True)
    ]
    totals = AwardTotals()
    for decision in apply_changes(session, tenant_id, env, writes):
        assert isinstance(decision, Applied) and isinstance(decision.outcome, Credit)
        totals.awarded += 1
        totals.points_credited += decision.outcome.amount
        if credits is not None:
            credits.append(decision.outcome)
    return totals


class AwardPass:
    """The award pass's writer: formats each decided award (app.points.standings
    .decide_awards) as its ledger line and its events, as COPY text."""

    def __init__(
        self,
        tenant_id: uuid.UUID,
        env: str,
        now: datetime,
        standings: dict[str, Standing],
        placements: Placements,
        credits: list[Credit] | None,
        subscribed: bool,
        default_expiry_days: int | None = None,
    ) -> None:
        self.tenant_env = f"{tenant_id}\t{copy_field(env)}"
        self.created_at_field = now.isoformat()
        # An event line's fields after its id, up to its type (OUTBOX_COLUMNS).
        dispatched_at_field = COPY_NULL if subscribed else self.created_at_field
        self.event_head = f"\t{dispatched_at_field}\t{self.tenant_env}\t"
        self.standings = standings
        self.placements = placements
        self.credits = credits
        self.default_expiry_days = default_expiry_days
        self.now = now
        self.event_lines: list[str] = []
        # Lines of the lots of the awards that expire or are pending (LOT_COLUMNS).
        self.lot_lines: list[str] = []
        self.totals = AwardTotals()

    def ledger_lines(
        self, awards: Sequence[AwardRow], operation_fields: Sequence[str]
    ) -> Iterator[str]:
        """Each award's ledger line, in order; its events go to `event_lines` meanwhile."""
        credits, event_lines, lot_lines = self.credits, self.event_lines, self.lot_lines
        ids = uuid4_texts(2 * len(awards))  # a transaction id, then an event id, per award
        decisions = decide_awards(
            awards, self.standings, self.placements, ids[0::2], self.now, self.default_expiry_days
        )
        # Fields that are the same on every line, formatted once.
        tenant_env = self.tenant_env
        ledger_prefix = f"\t{tenant_env}\t"
        ledger_type = f"\t{AWARD_ENTRY_TYPE}\t"
        event_head = self.event_head
        event_prefix = f"{event_head}{POINTS_AWARDED}\t"
        created_at_field = self.created_at_field
        # reason -> (its COPY field, its JSON inside a COPY field)
        reasons: dict[str | None, tuple[str, str]] = {None: (COPY_NULL, "null")}
        actions: dict[str | None, str] = {None: COPY_NULL}
        no_terms = f"\t{COPY_NULL}\t{COPY_NULL}"  # available_at, expires_at: at once, never
        # (available_at, expires_at) -> their COPY fields: a request's awards share them.
        terms_texts: dict[tuple[datetime | None, datetime | None], str] = {}
        points = 0
        for index, (decision, award) in enumerate(zip(decisions, awards, strict=True)):
            (
                transaction_id, participant_id, credited, base_amount, balance, upgrade,
                standing, applied_field, qualifying, available_at, expires_at,
            ) = decision  # fmt: skip
            points += credited
            reason, metadata_json = award[2], award[3]
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
                upgraded = upgraded_payload(participant_id, transaction_id, upgrade, qualifying)
                event_lines.append(_event_line(event_head, TIER_UPGRADED, upgraded))
            if credits is not None:
                credits.append(
                    Credit(
                        transaction_id,
                        participant_id,
                        credited,
                        base_amount,
                        balance,
                        upgrade,
                        available_at,
                        expires_at,
                    )
                )
            terms_fields = no_terms
            if available_at is not None or expires_at is not None:
                known = terms_texts.get((available_at, expires_at))
                if known is None:
                    known = terms_texts[(available_at, expires_at)] = (
                        f"\t{COPY_NULL if available_at is None else available_at.isoformat()}"
                        f"\t{COPY_NULL if expires_at is None else expires_at.isoformat()}"
                    )
                terms_fields = known
                if credited > 0:
                    lot_lines.append(
                        f"{standing.pk}\t{credited}\t{credited}"
                        f"\t{'f' if available_at is None else 't'}{terms_fields}"
                        f"\t{created_at_field}\n"
                    )
            action = award[4]
            action_field = actions.get(action)
            if action_field is None:
                action_field = actions[action] = copy_field(action)
            yield (
                f"{transaction_id}{ledger_prefix}{standing.pk}{ledger_type}{credited}"
                f"\t{base_amount}\t{applied_field}\t{reason_fields[0]}\t{action_field}"
                f"{terms_fields}\t{metadata_field}\t{balance}\t{operation_fields[index]}"
                f"\t{created_at_field}\n"
            )
        self.totals = AwardTotals(len(awards), points)


def _event_line(event_head: str, event_type: str, payload: dict[str, Any]) -> str:
    return f"{uuid.uuid4()}{event_head}{event_type}\t{copy_field(json.dumps(payload))}\n"


# An upsert on the primary key rather than UPDATE ... FROM: it always probes the key once
# per row, where the join may be planned as a scan of every participant. The rows exist and
# are locked by this transaction, so the insert half never happens; the proposed rows still
# carry consistent totals, as CHECK constraints apply to them. The values travel as array
# literals (see app.infra.pgcopy).
_WRITE_BALANCES = text(
    """
    INSERT INTO participants AS p (
        id, tenant_id, env, external_id, balance, total_earned, total_spent, total_expired,
        pending, tier_code, updated_at
    )
    SELECT incoming.pk, :tenant_id, :env, incoming.external_id, incoming.balance,
           incoming.total_earned, incoming.total_spent, incoming.total_expired,
           incoming.pending, incoming.tier_code, :now
    FROM unnest(
        CAST(:pks AS uuid[]), CAST(:external_ids AS text[]), CAST(:balances AS bigint[]),
        CAST(:earned AS bigint[]), CAST(:spent AS bigint[]), CAST(:expired AS bigint[]),
        CAST(:pending AS bigint[]), CAST(:tier_codes AS text[])
    ) AS incoming(
        pk, external_id, balance, total_earned, total_spent, total_expired, pending, tier_code
    )
    ON CONFLICT (id) DO UPDATE SET
        balance = excluded.balance,
        total_earned = excluded.total_earned,
        total_spent = excluded.total_spent,
        total_expired = excluded.total_expired,
        pending = excluded.pending,
        tier_code = excluded.tier_code,
        tier_since = CASE WHEN p.tier_code IS DISTINCT FROM excluded.tier_code
                          THEN excluded.updated_at ELSE p.tier_since END,
        tier_expires_at = CASE WHEN p.tier_code IS DISTINCT FROM excluded.tier_code
                               THEN NULL ELSE p.tier_expires_at END,
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
    """Every participant's new balance, totals, pending points and tier in one statement."""
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
            "expired": plain_array_literal([str(s.total_expired) for s in standings]),
            "pending": plain_array_literal([str(s.pending) for s in standings]),
            "tier_codes": array_literal([s.tier_code for s in standings]),
        },
    )
