"""The action pipeline's engagement half: what an action (or any credit) drives beyond its
points, decided in the everyday write's transaction (app.points.balance_changes).

Read under lock: the tenant's rules for the batch's action names and its badges come with
the batch's other per-tenant constants; the locked participants' rule usage, badge
progress and badges held in one more round trip, only when a rule has caps or a badge
counts. Decide (`Engagement`, pure): rules' points (credited by the caller, like any
award, through tier and reward multipliers), badge progress, badges reached. Write: the
actions, usage, progress and badges granted in one statement.

A badge is earned at most once per participant: the batch decides under the
participant's row lock against the badges it holds, and participant_badges' key backs it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy.orm import Session

from app.engagement.rules import Rule, RuleCredit, RuleUsage, rule_credits
from app.errors import DomainError, NotFound
from app.infra.pgcopy import fetch_tuples, plain_array_literal
from app.outbox import BADGE_AWARDED

ACTION_COUNT, POINTS_EARNED, MANUAL = "action_count", "points_earned", "manual"
CRITERIA_SOURCE, MANUAL_SOURCE = "criteria", "manual"


@dataclass(frozen=True, slots=True)
class ActionWrite:
    """One accepted action, as its operation's payload says."""

    operation_id: uuid.UUID
    participant_id: str
    action: str
    properties: Mapping[str, object]
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class BadgeGrant:
    """A badge awarded by hand (POST /badges/award)."""

    operation_id: uuid.UUID
    participant_id: str
    badge_id: str


@dataclass(frozen=True, slots=True)
class BadgeDef:
    id: str
    name: str
    kind: str  # ACTION_COUNT, POINTS_EARNED or MANUAL
    action: str | None
    target: int  # the count or points its criteria ask for (0: manual)
    points_reward: int | None
    active: bool

    @classmethod
    def of(cls, row: list[Any]) -> BadgeDef:
        badge_id, name, criteria, points_reward, active = row
        kind = criteria["type"]
        target = criteria.get("count") if kind == ACTION_COUNT else criteria.get("points")
        return cls(
            str(badge_id), name, kind, criteria.get("action"), target or 0, points_reward, active
        )


def badge_not_found() -> NotFound:
    return NotFound("badge_not_found", "Badge not found")


def badge_already_awarded() -> DomainError:
    return DomainError("badge_already_awarded", "The participant already holds this badge", 409)


@dataclass(frozen=True, slots=True)
class BadgeEarned:
    """A badge granted by this batch, and the credit its points reward made (if any)."""

    badge: BadgeDef
    participant_id: str
    awarded_at: datetime
    source: str
    transaction_id: str | None = None
    points: int | None = None

    def as_body(self) -> dict[str, Any]:
        return {
            "badge_id": self.badge.id,
            "name": self.badge.name,
            "points": self.points,
            "transaction_id": self.transaction_id,
        }

    def event(self) -> dict[str, Any]:
        return {
            "participant_id": self.participant_id,
            "badge_id": self.badge.id,
            "name": self.badge.name,
            "source": self.source,
            "awarded_at": self.awarded_at.isoformat(),
            "points_reward": self.points,
            "transaction_id": self.transaction_id,
        }


# A credit the caller makes for a badge's points reward: (participant_id, points, reason,
# operation id) -> (transaction id, points credited).
CreditPoints = Callable[[str, int, str, uuid.UUID], tuple[str, int]]


@dataclass
class Engagement:
    """The engagement definitions and participant state a batch decides against, and the
    rows its decisions add (`Engagement.write`)."""

    rules: dict[str, list[Rule]] = field(default_factory=dict)  # by action name
    badges: dict[str, BadgeDef] = field(default_factory=dict)  # by id
    usage: RuleUsage = field(default_factory=RuleUsage)
    progress: dict[tuple[str, str], int] = field(default_factory=dict)  # (badge, pk)
    held: set[tuple[str, str]] = field(default_factory=set)  # (badge, pk)
    # What the batch decided, to write.
    action_rows: list[dict[str, Any]] = field(default_factory=list)
    progress_changed: set[tuple[str, str]] = field(default_factory=set)
    earned: list[tuple[BadgeEarned, str, uuid.UUID]] = field(default_factory=list)

    @property
    def counting(self) -> bool:
        """Whether any badge counts actions or points (else credits drive nothing)."""
        return any(badge.active and badge.kind != MANUAL for badge in self.badges.values())

    def rule_credits(self, write: ActionWrite, participant_pk: str) -> list[RuleCredit]:
        return rule_credits(
            self.rules.get(write.action, []),
            self.usage,
            participant_pk,
            write.properties,
            write.occurred_at,
        )

    def record_action(self, write: ActionWrite, participant_pk: str) -> str:
        action_id = str(uuid.uuid4())
        self.action_rows.append(
            {
                "id": action_id,
                "participant_pk": participant_pk,
                "action": write.action,
                "properties": dict(write.properties) or None,
                "occurred_at": write.occurred_at.isoformat(),
                "operation_id": str(write.operation_id),
            }
        )
        return action_id

    def count(
        self,
        participant_id: str,
        participant_pk: str,
        *,
        action: str | None = None,
        points: int = 0,
        operation_id: uuid.UUID,
        now: datetime,
        credit: CreditPoints,
    ) -> list[BadgeEarned]:
        """Count an action (by name) or points credited toward the badges that count
        them; returns the badges this reached, each granted (and its reward credited,
        which counts in turn toward points badges)."""
        reached: list[BadgeDef] = []
        for badge in self.badges.values():
            if not badge.active or (badge.id, participant_pk) in self.held:
                continue
            if badge.kind == ACTION_COUNT and action is not None and badge.action == action:
                step = 1
            elif badge.kind == POINTS_EARNED and points > 0:
                step = points
            else:
                continue
            key = (badge.id, participant_pk)
            current = self.progress[key] = self.progress.get(key, 0) + step
            self.progress_changed.add(key)
            if current >= badge.target:
                reached.append(badge)
        earned: list[BadgeEarned] = []
        for badge in reached:
            earned.extend(
                self.grant(
                    badge,
                    participant_id,
                    participant_pk,
                    CRITERIA_SOURCE,
                    operation_id,
                    now,
                    credit,
                )
            )
        return earned

    def grant(
        self,
        badge: BadgeDef,
        participant_id: str,
        participant_pk: str,
        source: str,
        operation_id: uuid.UUID,
        now: datetime,
        credit: CreditPoints,
    ) -> list[BadgeEarned]:
        """Grant `badge` (not held): the badge, then the badges its reward's points reach."""
        self.held.add((badge.id, participant_pk))
        transaction_id = points = None
        if badge.points_reward:
            transaction_id, points = credit(
                participant_id, badge.points_reward, f"Badge: {badge.name}", operation_id
            )
        earned = BadgeEarned(badge, participant_id, now, source, transaction_id, points)
        self.earned.append((earned, participant_pk, operation_id))
        granted = [earned]
        if points:
            granted.extend(
                self.count(
                    participant_id,
                    participant_pk,
                    points=points,
                    operation_id=operation_id,
                    now=now,
                    credit=credit,
                )
            )
        return granted

    def grant_by_hand(
        self,
        grant: BadgeGrant,
        participant_pk: str,
        now: datetime,
        credit: CreditPoints,
    ) -> list[BadgeEarned] | DomainError:
        badge = self.badges.get(grant.badge_id)
        if badge is None or not badge.active:
            return badge_not_found()
        if (badge.id, participant_pk) in self.held:
            return badge_already_awarded()
        return self.grant(
            badge,
            grant.participant_id,
            participant_pk,
            MANUAL_SOURCE,
            grant.operation_id,
            now,
            credit,
        )

    def events(self) -> Iterable[tuple[str, dict[str, Any]]]:
        return ((BADGE_AWARDED, earned.event()) for earned, _, _ in self.earned)

    @property
    def changed(self) -> bool:
        return bool(self.action_rows or self.usage.added or self.progress_changed or self.earned)


# The engagement definitions a batch needs, asked with its other per-tenant constants
# (app.points.balance_changes): the active rules of the batch's action names, oldest
# first; the active badges that count, and the badges granted by hand in the batch.
ENGAGEMENT_DEFINITIONS = """
    (SELECT json_build_array(
        (SELECT coalesce(json_agg(r ORDER BY r.created_at, r.id), '[]')
         FROM earning_rules AS r
         WHERE r.tenant_id = %(tenant_id)s AND r.env = %(env)s AND r.active
           AND r.action = ANY(CAST(%(action_names)s AS text[]))),
        (SELECT coalesce(json_agg(json_build_array(
                    b.id, b.name, b.criteria, b.points_reward, b.active)
                    ORDER BY b.created_at, b.id), '[]')
         FROM badges AS b
         WHERE b.tenant_id = %(tenant_id)s AND b.env = %(env)s
           AND ((b.active AND b.criteria->>'type' <> 'manual')
                OR b.id = ANY(CAST(%(badge_ids)s AS uuid[]))))
    ))::text
"""


def definitions_params(action_names: Iterable[str], badge_ids: Iterable[str]) -> dict[str, str]:
    return {
        "action_names": _text_array(action_names),
        "badge_ids": plain_array_literal(sorted(set(badge_ids))),
    }


def _text_array(values: Iterable[str]) -> str:
    return "{" + ",".join(json.dumps(value) for value in sorted(set(values))) + "}"


def engagement_of(definitions: str) -> Engagement:
    rules_rows, badge_rows = json.loads(definitions)
    engagement = Engagement()
    for row in rules_rows:
        rule = Rule.of(row)
        engagement.rules.setdefault(rule.action, []).append(rule)
    for row in badge_rows:
        badge = BadgeDef.of(row)
        engagement.badges[badge.id] = badge
    return engagement


_PARTICIPANT_STATE = """
    SELECT
        (SELECT coalesce(json_agg(json_build_array(rule_id, participant_pk, total, days)), '[]')
         FROM (
            SELECT rule_id, participant_pk, sum(points) AS total,
                   coalesce(json_object_agg(day, points)
                            FILTER (WHERE day = ANY(CAST(%(days)s AS date[]))), '{}') AS days
            FROM earning_rule_usage
            WHERE rule_id = ANY(CAST(%(rule_ids)s AS uuid[]))
              AND participant_pk = ANY(CAST(%(pks)s AS uuid[]))
            GROUP BY rule_id, participant_pk
         ) AS used)::text,
        (SELECT coalesce(json_agg(json_build_array(badge_id, participant_pk, current)), '[]')
         FROM badge_progress
         WHERE badge_id = ANY(CAST(%(counting_ids)s AS uuid[]))
           AND participant_pk = ANY(CAST(%(pks)s AS uuid[])))::text,
        (SELECT coalesce(json_agg(json_build_array(badge_id, participant_pk)), '[]')
         FROM participant_badges
         WHERE badge_id = ANY(CAST(%(badge_ids)s AS uuid[]))
           AND participant_pk = ANY(CAST(%(pks)s AS uuid[])))::text
"""


def load_participant_state(
    session: Session,
    engagement: Engagement,
    participant_pks: Iterable[str],
    action_days: Iterable[date],
) -> None:
    """The locked participants' usage of the capped rules (totals, and points on the
    batch's days), their progress toward counting badges, and the badges they hold."""
    capped = sorted(
        {
            rule.id
            for rules in engagement.rules.values()
            for rule in rules
            if rule.per_day is not None or rule.total is not None
        }
    )
    badge_ids = sorted(engagement.badges)
    if not capped and not badge_ids:
        return
    counting = sorted(b.id for b in engagement.badges.values() if b.kind != MANUAL)
    [(usage, progress, held)] = fetch_tuples(
        session,
        _PARTICIPANT_STATE,
        {
            "rule_ids": plain_array_literal(capped),
            "counting_ids": plain_array_literal(counting),
            "badge_ids": plain_array_literal(badge_ids),
            "pks": plain_array_literal(participant_pks),
            "days": plain_array_literal(sorted({day.isoformat() for day in action_days})),
        },
    )
    for rule_id, pk, total, days in json.loads(usage):
        engagement.usage.load(rule_id, pk, total, days)
    for badge_id, pk, current in json.loads(progress):
        engagement.progress[(badge_id, pk)] = current
    engagement.held.update((badge_id, pk) for badge_id, pk in json.loads(held))


_WRITE_ENGAGEMENT = """
    WITH new_actions AS (
        INSERT INTO actions (
            id, tenant_id, env, participant_pk, action, properties, occurred_at, operation_id,
            created_at
        )
        SELECT a.id, %(tenant_id)s, %(env)s, a.participant_pk, a.action, a.properties,
               a.occurred_at, a.operation_id, %(now)s
        FROM jsonb_to_recordset(CAST(%(actions)s AS jsonb)) AS a(
            id uuid, participant_pk uuid, action text, properties jsonb,
            occurred_at timestamptz, operation_id uuid
        )
    ),
    used AS (
        INSERT INTO earning_rule_usage AS u (rule_id, participant_pk, day, points)
        SELECT x.rule_id, x.participant_pk, x.day, x.points
        FROM jsonb_to_recordset(CAST(%(usage)s AS jsonb)) AS x(
            rule_id uuid, participant_pk uuid, day date, points bigint
        )
        ON CONFLICT (rule_id, participant_pk, day) DO UPDATE SET points = u.points + excluded.points
    ),
    progressed AS (
        INSERT INTO badge_progress AS p (badge_id, participant_pk, current)
        SELECT x.badge_id, x.participant_pk, x.current
        FROM jsonb_to_recordset(CAST(%(progress)s AS jsonb)) AS x(
            badge_id uuid, participant_pk uuid, current bigint
        )
        ON CONFLICT (badge_id, participant_pk) DO UPDATE SET current = excluded.current
    )
    INSERT INTO participant_badges (badge_id, participant_pk, awarded_at, source, operation_id)
    SELECT x.badge_id, x.participant_pk, x.awarded_at, x.source, x.operation_id
    FROM jsonb_to_recordset(CAST(%(earned)s AS jsonb)) AS x(
        badge_id uuid, participant_pk uuid, awarded_at timestamptz, source text,
        operation_id uuid
    )
"""


def write_engagement(
    session: Session, tenant_id: uuid.UUID, env: str, engagement: Engagement, now: datetime
) -> None:
    """Write what the batch decided of engagement, in one statement."""
    if not engagement.changed:
        return
    session.connection().exec_driver_sql(
        _WRITE_ENGAGEMENT,
        {
            "tenant_id": tenant_id,
            "env": env,
            "now": now,
            "actions": json.dumps(engagement.action_rows),
            "usage": json.dumps(
                [
                    {
                        "rule_id": rule_id,
                        "participant_pk": pk,
                        "day": day.isoformat(),
                        "points": points,
                    }
                    for (rule_id, pk, day), points in engagement.usage.added.items()
                ]
            ),
            "progress": json.dumps(
                [
                    {
                        "badge_id": badge_id,
                        "participant_pk": pk,
                        "current": engagement.progress[(badge_id, pk)],
                    }
                    for badge_id, pk in sorted(engagement.progress_changed)
                ]
            ),
            "earned": json.dumps(
                [
                    {
                        "badge_id": earned.badge.id,
                        "participant_pk": pk,
                        "awarded_at": earned.awarded_at.isoformat(),
                        "source": earned.source,
                        "operation_id": str(operation_id),
                    }
                    for earned, pk, operation_id in engagement.earned
                ]
            ),
        },
    )
