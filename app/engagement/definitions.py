"""Earning rules and badges as an admin defines them: create, read, change, remove.

The callers check the fields' shapes (api.engagement.schemas); the JSON columns are stored
as given, in the shapes app.engagement.rules reads. A rule is deleted outright: the ledger
keeps its id on the lines it credited (no key), and its usage rows go with it. A badge is
only deactivated: participants hold it, and it is still shown.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.errors import NotFound, parse_uuid
from app.models import Badge, EarningRule, EarningRuleUsage

RULE_FIELDS = (
    "name",
    "action",
    "formula",
    "conditions",
    "max_points",
    "multipliers",
    "caps",
    "timezone",
    "active",
    "starts_at",
    "ends_at",
)
BADGE_FIELDS = (
    "name",
    "description",
    "image_url",
    "category",
    "criteria",
    "points_reward",
    "active",
)


def earning_rule_not_found() -> NotFound:
    return NotFound("earning_rule_not_found", "No earning rule exists with this id")


def badge_not_found() -> NotFound:
    return NotFound("badge_not_found", "No badge exists with this id")


def parse_rule_id(value: str) -> uuid.UUID:
    """A path's rule id; anything that is not a UUID names no rule."""
    return parse_uuid(value, earning_rule_not_found())


def parse_badge_id(value: str) -> uuid.UUID:
    """A path's badge id; anything that is not a UUID names no badge."""
    return parse_uuid(value, badge_not_found())


def _check_fields(changes: dict[str, Any], known: tuple[str, ...], what: str) -> None:
    unknown = set(changes) - set(known)
    if unknown:
        raise ValueError(f"not {what} fields: {sorted(unknown)}")


def rule_fields(rule: EarningRule) -> dict[str, Any]:
    """The rule's RULE_FIELDS values, as stored."""
    return {name: getattr(rule, name) for name in RULE_FIELDS}


def list_rules(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    *,
    action: str | None = None,
    active: bool | None = None,
) -> list[EarningRule]:
    query = select(EarningRule).where(EarningRule.tenant_id == tenant_id, EarningRule.env == env)
    if action is not None:
        query = query.where(EarningRule.action == action)
    if active is not None:
        query = query.where(EarningRule.active.is_(active))
    return list(session.execute(query.order_by(EarningRule.created_at, EarningRule.id)).scalars())


def get_rule(
    session: Session, tenant_id: uuid.UUID, env: str, rule_id: uuid.UUID, *, lock: bool = False
) -> EarningRule:
    query = select(EarningRule).where(
        EarningRule.id == rule_id, EarningRule.tenant_id == tenant_id, EarningRule.env == env
    )
    if lock:
        # A change then reads the rule as the last change left it (its fields are checked
        # together, so two changes that each pass alone cannot combine into a rule that
        # fails), and a concurrent delete either waits for it or makes it a 404.
        query = query.with_for_update()
    rule = session.execute(query).scalar_one_or_none()
    if rule is None:
        raise earning_rule_not_found()
    return rule


def create_rule(
    session: Session, tenant_id: uuid.UUID, env: str, fields: dict[str, Any]
) -> EarningRule:
    """Create a rule; `fields` holds every RULE_FIELDS value."""
    _check_fields(fields, RULE_FIELDS, "earning rule")
    rule = EarningRule(id=uuid.uuid4(), tenant_id=tenant_id, env=env, created_at=utcnow(), **fields)
    session.add(rule)
    session.flush()
    return rule


def update_rule(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    rule_id: uuid.UUID,
    changes: dict[str, Any],
    *,
    check: Callable[[dict[str, Any]], None],
) -> EarningRule:
    """Apply RULE_FIELDS changes; fields not given keep their values. `check` is given the
    rule's fields as they would be and raises to refuse them: a rule is valid as a whole
    (ends_at after starts_at, whichever of the two was sent)."""
    _check_fields(changes, RULE_FIELDS, "earning rule")
    rule = get_rule(session, tenant_id, env, rule_id, lock=True)
    check({**rule_fields(rule), **changes})
    for name, value in changes.items():
        setattr(rule, name, value)
    if changes:
        rule.updated_at = utcnow()
        session.flush()
    return rule


def delete_rule(
    session: Session, tenant_id: uuid.UUID, env: str, rule_id: uuid.UUID
) -> EarningRule:
    """Delete a rule and its usage rows; returns it as it was."""
    rule = get_rule(session, tenant_id, env, rule_id, lock=True)
    session.execute(delete(EarningRuleUsage).where(EarningRuleUsage.rule_id == rule.id))
    session.delete(rule)
    session.flush()
    return rule


def list_badges(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    *,
    category: str | None = None,
    active: bool | None = None,
) -> list[Badge]:
    query = select(Badge).where(Badge.tenant_id == tenant_id, Badge.env == env)
    if category is not None:
        query = query.where(Badge.category == category)
    if active is not None:
        query = query.where(Badge.active.is_(active))
    return list(session.execute(query.order_by(Badge.created_at, Badge.id)).scalars())


def get_badge(
    session: Session, tenant_id: uuid.UUID, env: str, badge_id: uuid.UUID, *, lock: bool = False
) -> Badge:
    query = select(Badge).where(
        Badge.id == badge_id, Badge.tenant_id == tenant_id, Badge.env == env
    )
    if lock:
        query = query.with_for_update()
    badge = session.execute(query).scalar_one_or_none()
    if badge is None:
        raise badge_not_found()
    return badge


def create_badge(session: Session, tenant_id: uuid.UUID, env: str, fields: dict[str, Any]) -> Badge:
    """Create a badge; `fields` holds every BADGE_FIELDS value."""
    _check_fields(fields, BADGE_FIELDS, "badge")
    badge = Badge(id=uuid.uuid4(), tenant_id=tenant_id, env=env, created_at=utcnow(), **fields)
    session.add(badge)
    session.flush()
    return badge


def update_badge(
    session: Session, tenant_id: uuid.UUID, env: str, badge_id: uuid.UUID, changes: dict[str, Any]
) -> Badge:
    """Apply BADGE_FIELDS changes; fields not given keep their values. A new `criteria`
    leaves the participants' progress counters as they are."""
    _check_fields(changes, BADGE_FIELDS, "badge")
    badge = get_badge(session, tenant_id, env, badge_id, lock=True)
    for name, value in changes.items():
        setattr(badge, name, value)
    if changes:
        badge.updated_at = utcnow()
        session.flush()
    return badge


def deactivate_badge(session: Session, tenant_id: uuid.UUID, env: str, badge_id: uuid.UUID) -> bool:
    """Deactivate a badge: it is no longer earned, and those who hold it keep it. False when
    it was inactive already (nothing changed)."""
    badge = get_badge(session, tenant_id, env, badge_id, lock=True)
    if not badge.active:
        return False
    badge.active = False
    badge.updated_at = utcnow()
    session.flush()
    return True
