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
3. write (`write_changes`): every ledger line, event and balance with one statement;
4. only when the referral program's completion action is among the batch's: complete
   the pending referrals of the participants who did it, in one more statement
   (app.referrals.completion), their payments recorded as awards to run after.

A refused deduction writes nothing: deciding comes before any write, and a participant
only deducted from is never created.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.engagement.leaderboard_cache import push_after_commit
from app.engagement.pipeline import (
    ENGAGEMENT_DEFINITIONS,
    ActionWrite,
    BadgeEarned,
    BadgeGrant,
    ChallengeJoin,
    Engagement,
    EngagementWrite,
    Report,
    StreakRecord,
    definitions_params,
    engagement_of,
    load_participant_state,
    write_engagement,
)
from app.errors import DomainError
from app.infra.pgcopy import fetch_tuples, plain_array_literal
from app.ledger import LockedRow, insufficient_points, lock_changing_rows
from app.models import Operation
from app.operations import publish_after_commit
from app.outbox import (
    ANY_SUBSCRIBED,
    BADGE_AWARDED,
    CHALLENGE_COMPLETED,
    LEADERBOARD_RANK_CHANGED,
    POINTS_AWARDED,
    POINTS_DEDUCTED,
    STREAK_BROKEN,
    STREAK_MILESTONE,
    TIER_UPGRADED,
    mark_events_recorded,
)
from app.points.awards import AWARD_ENTRY_TYPE, cyclic_gc_paused, uuid4_texts
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
    TierUpgrade,
    awarded_payload,
    place_standings,
    upgraded_payload,
)
from app.points.tiers import TierLadder, TierRung, qualifying_points
from app.referrals.completion import complete_referrals
from app.referrals.decisions import completions
from app.referrals.program import COMPLETION_ACTION_AMONG

DEDUCT_ENTRY_TYPE = "deduct"
EVENT_TYPES = (
    POINTS_AWARDED,
    TIER_UPGRADED,
    POINTS_DEDUCTED,
    BADGE_AWARDED,
    STREAK_MILESTONE,
    STREAK_BROKEN,
    CHALLENGE_COMPLETED,
    LEADERBOARD_RANK_CHANGED,
)


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
    rule_id: str | None = None  # the earning rule a credit of an action is from


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


def _last_upgrade(applied: Sequence[Applied]) -> TierUpgrade | None:
    upgrades = [
        each.outcome.tier_upgrade
        for each in applied
        if isinstance(each.outcome, Credit) and each.outcome.tier_upgrade is not None
    ]
    if not upgrades:
        return None
    first, last = upgrades[0], upgrades[-1]
    return TierUpgrade(
        last.code,
        last.name,
        last.level,
        first.previous_code,
        first.previous_level,
        first.previous_name,
    )


@dataclass(frozen=True, slots=True)
class ActionApplied:
    """An action as applied: the points its rules credited, and what else it caused."""

    write: ActionWrite
    action_id: str
    credits: tuple[Applied, ...]  # its rules', in rule order
    report: Report
    new_balance: int
    tier_upgrade: TierUpgrade | None

    def as_body(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "participant_id": self.write.participant_id,
            "action": self.write.action,
            "occurred_at": self.write.occurred_at.isoformat(),
            "points_awarded": [
                {
                    "rule_id": each.write.rule_id,
                    "points": each.outcome.amount,
                    "transaction_id": each.outcome.transaction_id,
                }
                for each in self.credits
            ],
            "badges_awarded": [badge.as_body() for badge in self.report.badges],
            "streaks": [
                {
                    "streak_type": streak["streak_type"],
                    "current_count": streak["current_count"],
                    "milestone_reached": streak["milestone_reached"],
                }
                for streak in self.report.streaks
            ],
            "challenges": self.report.challenges,
            "tier_upgrade": self.tier_upgrade.as_body() if self.tier_upgrade else None,
            "new_balance": self.new_balance,
        }


@dataclass(frozen=True, slots=True)
class EngagementApplied:
    """A badge awarded by hand, a streak recorded, or a challenge joined: its answer, and
    what it caused in turn (a badge's or milestone's points, the badges they reached)."""

    write: BadgeGrant | StreakRecord | ChallengeJoin
    answer: dict[str, Any]
    report: Report
    new_balance: int
    tier_upgrade: TierUpgrade | None

    def as_body(self) -> dict[str, Any]:
        body = {"participant_id": self.write.participant_id, **self.answer}
        if isinstance(self.write, ChallengeJoin):
            return body
        badges = self.report.badges
        if isinstance(self.write, BadgeGrant):
            granted, *badges = badges
            body |= {
                "badge_id": granted.badge.id,
                "name": granted.badge.name,
                "awarded_at": granted.awarded_at.isoformat(),
                "points_awarded": granted.points,
                "transaction_id": granted.transaction_id,
            }
        return body | {
            "badges_awarded": [badge.as_body() for badge in badges],
            "tier_upgrade": self.tier_upgrade.as_body() if self.tier_upgrade else None,
            "new_balance": self.new_balance,
        }


Write = BalanceWrite | EngagementWrite
Decision = Applied | ActionApplied | EngagementApplied | DomainError


class Decider:
    """Decides a batch's writes in order against the running standings (changed in
    place), and the engagement they drive. Pure: no I/O; `transaction_ids` supplies the
    ledger ids, `now` is when the batch applies.

    `standings` holds every participant that exists (or was created for a credit or an
    engagement write), with its lots for one the batch debits; one missing has nothing
    to spend. Every decision that writes a ledger line is kept in `applied`, in order.
    """

    def __init__(
        self,
        standings: dict[str, Standing],
        placements: Placements,
        transaction_ids: Iterator[str],
        now: datetime,
        default_expiry_days: int | None = None,
        engagement: Engagement | None = None,
    ) -> None:
        self.standings = standings
        self.placements = placements
        self.transaction_ids = transaction_ids
        self.now = now
        self.default_expiry_days = default_expiry_days
        self.engagement = engagement or Engagement(now=now)
        self.engagement.credit = self._credit_points
        self.applied: list[Applied] = []

    def decide(self, writes: Sequence[Write]) -> list[Decision]:
        return [self._decide(write) for write in writes]

    def _decide(self, write: Write) -> Decision:
        standing = self.standings.get(write.participant_id)
        engagement = self.engagement
        if isinstance(write, BalanceWrite):
            if standing is None:
                return insufficient_points(0, write.amount)
            if write.debit:
                return self._debit(write, standing)
            applied = self._credit(write, standing)
            if not engagement.empty:
                engagement.begin()
                if write.action is not None:
                    engagement.on_action(
                        write.participant_id,
                        standing.pk,
                        write.action,
                        self.now,
                        write.operation_id,
                    )
                engagement.on_points(
                    write.participant_id,
                    standing.pk,
                    applied.outcome.amount,
                    self.now,
                    write.operation_id,
                )
            return applied
        assert standing is not None  # created for it
        first = len(self.applied)
        report = engagement.begin()
        if isinstance(write, ActionWrite):
            return self._apply_action(write, standing, report, first)
        answer: dict[str, Any] | BadgeEarned | DomainError
        if isinstance(write, BadgeGrant):
            answer = engagement.grant_by_hand(write, standing.pk)
            if isinstance(answer, BadgeEarned):
                answer = {}
        elif isinstance(write, StreakRecord):
            answer = engagement.record_streak(write, standing.pk)
        else:
            answer = engagement.join(write, standing.pk)
        if isinstance(answer, DomainError):
            return answer
        return EngagementApplied(
            write, answer, report, standing.balance, _last_upgrade(self.applied[first:])
        )

    def _apply_action(
        self, write: ActionWrite, standing: Standing, report: Report, first: int
    ) -> ActionApplied:
        engagement = self.engagement
        action_id = engagement.record_action(write, standing.pk)
        credits = [
            self._credit(
                BalanceWrite(
                    write.operation_id,
                    write.participant_id,
                    rule_credit.points,
                    debit=False,
                    reason=f"Earning rule: {rule_credit.rule.name}",
                    action=write.action,
                    rule_id=rule_credit.rule.id,
                ),
                standing,
            )
            for rule_credit in engagement.rule_credits(write, standing.pk)
        ]
        engagement.on_action(
            write.participant_id, standing.pk, write.action, write.occurred_at, write.operation_id
        )
        engagement.on_points(
            write.participant_id,
            standing.pk,
            sum(each.outcome.amount for each in credits),
            write.occurred_at,
            write.operation_id,
        )
        return ActionApplied(
            write,
            action_id,
            tuple(credits),
            report,
            standing.balance,
            _last_upgrade(self.applied[first:]),
        )

    def _credit_points(
        self,
        participant_id: str,
        points: int,
        reason: str,
        operation_id: uuid.UUID,
        at: datetime,
    ) -> tuple[str, int]:
        """Points the engagement pays (a badge's, a milestone's, a challenge's), credited
        like an award and counted like any credit (engagement.CreditPoints)."""
        standing = self.standings[participant_id]
        applied = self._credit(
            BalanceWrite(operation_id, participant_id, points, debit=False, reason=reason),
            standing,
        )
        credited = applied.outcome.amount
        self.engagement.on_points(participant_id, standing.pk, credited, at, operation_id)
        return applied.outcome.transaction_id, credited

    def _debit(self, write: BalanceWrite, standing: Standing) -> Applied | DomainError:
        refusal = standing.debit(write.amount)
        if refusal is not None:
            return refusal
        debit = Debit(
            next(self.transaction_ids), write.participant_id, write.amount, standing.balance
        )
        deducted = {**debit.as_body(), "reason": write.reason, "metadata": write.metadata}
        applied = Applied(write, standing.pk, debit, None, ((POINTS_DEDUCTED, deducted),))
        self.applied.append(applied)
        return applied

    def _credit(self, write: BalanceWrite, standing: Standing) -> Applied:
        available_at, expires_at = lot_dates(
            write.available_at, write.expires_at, self.now, self.default_expiry_days
        )
        multipliers = standing.applied
        pending = available_at is not None
        credited, upgrade = standing.credit(write.amount, self.placements, pending=pending)
        transaction_id = next(self.transaction_ids)
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
        applied = Applied(write, standing.pk, credit, multipliers, tuple(events), lot)
        self.applied.append(applied)
        return applied


def decide_changes(
    writes: Sequence[BalanceWrite],
    standings: dict[str, Standing],
    placements: Placements,
    transaction_ids: Iterator[str],
    now: datetime,
    default_expiry_days: int | None = None,
) -> list[Decision]:
    """Awards' and deductions' decisions, in order (a Decider without engagement)."""
    return Decider(standings, placements, transaction_ids, now, default_expiry_days).decide(writes)


# The tenant's tier ladder, the participants' multipliers in force, whether any webhook
# endpoint subscribes to the events this batch may record, the program's default expiry,
# the engagement definitions, the referral program's completion action if the batch has
# it and, for a batch that debits, the lots of the participants it may debit: one round
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
    + ","
    + ENGAGEMENT_DEFINITIONS
    + ", ("
    + COMPLETION_ACTION_AMONG
    + ")"
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
    # The rules of the batch's actions and the badges it may grant (read with the
    # participants' state only when something in them counts).
    engagement: Engagement
    # The referral program's completion action, when it is active and among the batch's.
    referral_action: str | None


def _read_context(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    locked: dict[str, LockedRow],
    spending: dict[str, int],
    now: datetime,
    writes: Sequence[Write],
) -> Context:
    """The locked participants' standings (with lots for those in `spending`: points the
    batch may take from each, by external id), the tenant's constants, and the engagement
    the batch's writes drive."""
    spending_by_pk = spenders_with_lots(spending, locked)
    [read] = fetch_tuples(
        session,
        _READ_CONTEXT_SPENDING if spending_by_pk else _READ_CONTEXT,
        {
            "tenant_id": tenant_id,
            "env": env,
            "pks": plain_array_literal(row.pk for row in locked.values()),
            "types": list(EVENT_TYPES),
            **lot_books_params(spending_by_pk, now),
            **definitions_params(
                rule_actions=(w.action for w in writes if isinstance(w, ActionWrite)),
                counted_actions=(
                    w.action
                    for w in writes
                    if isinstance(w, ActionWrite | BalanceWrite) and w.action is not None
                ),
                badge_ids=(w.badge_id for w in writes if isinstance(w, BadgeGrant)),
                streak_types=(w.streak_type for w in writes if isinstance(w, StreakRecord)),
                challenge_ids=(w.challenge_id for w in writes if isinstance(w, ChallengeJoin)),
                window_from=min(
                    (w.occurred_at for w in writes if isinstance(w, ActionWrite)), default=now
                ),
            ),
        },
    )
    tiers, multipliers, settings, subscribed, definitions, referral_action, lot_texts = read
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
    engagement = engagement_of(definitions, now)
    drives = not engagement.empty or any(not isinstance(w, BalanceWrite) for w in writes)
    if drives and locked:
        load_participant_state(
            session,
            engagement,
            (row.pk for row in locked.values()),
            {now, *(write.occurred_at for write in writes if isinstance(write, ActionWrite))},
        )
    return Context(
        placements, standings, bool(subscribed), default_expiry_days, engagement, referral_action
    )


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
            rule_id, created_at
        )
        SELECT line.id, %(tenant_id)s, %(env)s, line.participant_pk, line.type, line.amount,
               line.base_amount, line.multipliers, line.reason, line.action, line.available_at,
               line.expires_at, line.metadata, line.balance_after, line.operation_id,
               line.rule_id, %(now)s
        FROM ROWS FROM (jsonb_to_recordset(CAST(%(lines)s AS jsonb)) AS (
                id uuid, participant_pk uuid, type text, amount bigint, base_amount bigint,
                multipliers jsonb, reason text, action text, available_at timestamptz,
                expires_at timestamptz, metadata jsonb, balance_after bigint, operation_id uuid,
                rule_id uuid
            )) WITH ORDINALITY AS line(
                id, participant_pk, type, amount, base_amount, multipliers, reason, action,
                available_at, expires_at, metadata, balance_after, operation_id, rule_id,
                position
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
        "rule_id": write.rule_id,
    }


def write_changes(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    applied: Sequence[Applied],
    standings: dict[str, Standing],
    now: datetime,
    *,
    subscribed: bool,
    more_events: Sequence[tuple[str, dict[str, Any]]] = (),
) -> None:
    """Write what was decided: ledger lines, balances of the participants it changed, and
    events (the ledger lines' and `more_events`), in one statement. `subscribed` False (no
    endpoint subscribes to the events, asked in this transaction) stores the events
    already dispatched (see app.outbox)."""
    if not applied and not more_events:
        return
    changed = [standings[pid] for pid in sorted({each.write.participant_id for each in applied})]
    lot_changes = write_lots_params(
        (each.lot for each in applied if each.lot is not None),
        (each.lots for each in changed if each.lots is not None),
    )
    events = [
        {"type": event_type, "payload": payload}
        for each in applied
        for event_type, payload in each.events
    ]
    events.extend({"type": event_type, "payload": payload} for event_type, payload in more_events)
    session.connection().exec_driver_sql(
        _WRITE_CHANGES_WITH_LOTS if lot_changes else _WRITE_CHANGES,
        {
            "tenant_id": tenant_id,
            "env": env,
            "now": now,
            "dispatched_at": None if subscribed else now,
            "lines": json.dumps([_ledger_line(each) for each in applied]),
            "events": json.dumps(events),
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
    session: Session, tenant_id: uuid.UUID, env: str, writes: Sequence[Write]
) -> list[Decision]:
    """Read under lock, decide, write: the writes' decisions, in order."""
    # A batch of actions allocates several objects per write, none in a cycle: collections
    # would scan the heap for nothing (see cyclic_gc_paused).
    with cyclic_gc_paused():
        return _apply_changes(session, tenant_id, env, writes)


def _apply_changes(
    session: Session, tenant_id: uuid.UUID, env: str, writes: Sequence[Write]
) -> list[Decision]:
    now = utcnow()
    spending: dict[str, int] = {}
    for write in writes:
        if isinstance(write, BalanceWrite) and write.debit:
            spending[write.participant_id] = spending.get(write.participant_id, 0) + write.amount
    locked = lock_changing_rows(
        session,
        tenant_id,
        env,
        create=(
            write.participant_id
            for write in writes
            if not (isinstance(write, BalanceWrite) and write.debit)
        ),
        existing=spending,
        spending=bool(spending),
    )
    context = _read_context(session, tenant_id, env, locked, spending, now, writes)
    engagement = context.engagement
    decider = Decider(
        context.standings,
        context.placements,
        _new_ids(),
        now,
        context.default_expiry_days,
        engagement,
    )
    decisions = decider.decide(writes)
    push_after_commit(session, engagement.finish())
    write_changes(
        session,
        tenant_id,
        env,
        decider.applied,
        context.standings,
        now,
        subscribed=context.subscribed,
        more_events=engagement.events,
    )
    publish_after_commit(session, write_engagement(session, tenant_id, env, engagement))
    if context.referral_action is not None:
        qualifying = completions(_done(writes), context.referral_action)
        _, payments = complete_referrals(session, tenant_id, env, qualifying, now)
        publish_after_commit(session, payments)
    return decisions


def _done(
    writes: Sequence[Write],
) -> Iterator[tuple[str, str | None, Mapping[str, object] | None]]:
    """What the batch's participants did, as referrals complete on it: their actions
    (with their properties) and the actions awards name (with their metadata); every
    one of them is applied (only deductions are ever refused)."""
    for write in writes:
        if isinstance(write, ActionWrite):
            yield write.participant_id, write.action, write.properties
        elif isinstance(write, BalanceWrite) and not write.debit:
            yield write.participant_id, write.action, write.metadata


def _new_ids() -> Iterator[str]:
    """Random ledger ids, drawn 64 at a time (one urandom call each)."""
    while True:
        yield from uuid4_texts(64)


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
