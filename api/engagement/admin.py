"""Admin: the tenant environment's earning rules and badges."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response
from pydantic import ValidationError

from api.audit import audit_change
from api.auth import current_principal
from api.endpoint import Access, endpoint, request_invalid
from api.engagement.schemas import (
    BadgeCreate,
    BadgeList,
    BadgesQuery,
    BadgeUpdate,
    BadgeView,
    EarningRuleCreate,
    EarningRuleList,
    EarningRulesQuery,
    EarningRuleUpdate,
    EarningRuleView,
)
from api.runtime import runtime
from app.engagement.definitions import (
    create_badge,
    create_rule,
    deactivate_badge,
    delete_rule,
    get_badge,
    get_rule,
    list_badges,
    list_rules,
    parse_badge_id,
    parse_rule_id,
    update_badge,
    update_rule,
)
from app.models import Badge, EarningRule

bp = Blueprint("engagement_admin", __name__, url_prefix="/api/v1/gamify/admin")

RULE_NOT_FOUND = {404: ("earning_rule_not_found",)}
BADGE_NOT_FOUND = {404: ("badge_not_found",)}


def _rule_view(rule: EarningRule) -> EarningRuleView:
    return EarningRuleView(
        rule_id=str(rule.id),
        name=rule.name,
        action=rule.action,
        formula=rule.formula,
        conditions=rule.conditions,
        max_points=rule.max_points,
        multipliers=rule.multipliers,
        caps=rule.caps,
        timezone=rule.timezone,
        active=rule.active,
        starts_at=rule.starts_at,
        ends_at=rule.ends_at,
        created_at=rule.created_at,
        updated_at=rule.updated_at,
    )


def _badge_view(badge: Badge) -> BadgeView:
    return BadgeView(
        badge_id=str(badge.id),
        name=badge.name,
        description=badge.description,
        image_url=badge.image_url,
        category=badge.category,
        criteria=badge.criteria,
        points_reward=badge.points_reward,
        active=badge.active,
        created_at=badge.created_at,
        updated_at=badge.updated_at,
    )


def _change_details(body: EarningRuleUpdate | BadgeUpdate) -> dict[str, Any]:
    sent = body.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return {"changed": sorted(sent), "values": sent}


def _check_whole_rule(fields: dict[str, Any]) -> None:
    """Refuse a changed rule that would not be accepted if created as it now stands."""
    try:
        EarningRuleCreate.model_validate(fields)
    except ValidationError as exc:
        raise request_invalid("body", exc) from None


@endpoint(
    bp,
    "GET",
    "/earning-rules",
    summary="List earning rules, oldest first",
    tag="earning-rules",
    access=Access.ADMIN,
    query=EarningRulesQuery,
    responses={200: EarningRuleList},
)
def get_earning_rules(query: EarningRulesQuery) -> tuple[EarningRuleList, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        rules = list_rules(
            session, principal.tenant_id, principal.env, action=query.action, active=query.active
        )
        return EarningRuleList(earning_rules=[_rule_view(rule) for rule in rules]), 200


@endpoint(
    bp,
    "POST",
    "/earning-rules",
    summary="Create an earning rule",
    tag="earning-rules",
    access=Access.ADMIN,
    body=EarningRuleCreate,
    responses={201: EarningRuleView},
)
def post_earning_rule(body: EarningRuleCreate) -> tuple[EarningRuleView, int]:
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        rule = create_rule(session, principal.tenant_id, principal.env, body.fields())
        audit_change(
            session, "earning_rule.created", rule.id, {"name": rule.name, "action": rule.action}
        )
        return _rule_view(rule), 201


@endpoint(
    bp,
    "GET",
    "/earning-rules/<rule_id>",
    summary="Get an earning rule",
    tag="earning-rules",
    access=Access.ADMIN,
    responses={200: EarningRuleView},
    errors=RULE_NOT_FOUND,
)
def get_earning_rule(rule_id: str) -> tuple[EarningRuleView, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        rule = get_rule(session, principal.tenant_id, principal.env, parse_rule_id(rule_id))
        return _rule_view(rule), 200


@endpoint(
    bp,
    "PATCH",
    "/earning-rules/<rule_id>",
    summary="Change an earning rule; fields not sent keep their values",
    tag="earning-rules",
    access=Access.ADMIN,
    body=EarningRuleUpdate,
    responses={200: EarningRuleView},
    errors=RULE_NOT_FOUND,
)
def patch_earning_rule(rule_id: str, body: EarningRuleUpdate) -> tuple[EarningRuleView, int]:
    principal = current_principal()
    parsed_id = parse_rule_id(rule_id)
    changes = body.changes()
    with runtime().session_factory.begin() as session:
        rule = update_rule(
            session, principal.tenant_id, principal.env, parsed_id, changes, check=_check_whole_rule
        )
        if changes:
            audit_change(session, "earning_rule.updated", rule.id, _change_details(body))
        return _rule_view(rule), 200


@endpoint(
    bp,
    "DELETE",
    "/earning-rules/<rule_id>",
    summary="Delete an earning rule; ledger lines it credited keep its rule_id",
    tag="earning-rules",
    access=Access.ADMIN,
    responses={204: None},
    errors=RULE_NOT_FOUND,
)
def remove_earning_rule(rule_id: str) -> Response:
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        rule = delete_rule(session, principal.tenant_id, principal.env, parse_rule_id(rule_id))
        audit_change(
            session, "earning_rule.deleted", rule.id, {"name": rule.name, "action": rule.action}
        )
    return Response(status=204)


@endpoint(
    bp,
    "GET",
    "/badges",
    summary="List badges, oldest first (deactivated ones too, unless filtered)",
    tag="badges",
    access=Access.ADMIN,
    query=BadgesQuery,
    responses={200: BadgeList},
)
def get_badges(query: BadgesQuery) -> tuple[BadgeList, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        badges = list_badges(
            session,
            principal.tenant_id,
            principal.env,
            category=query.category,
            active=query.active,
        )
        return BadgeList(badges=[_badge_view(badge) for badge in badges]), 200


@endpoint(
    bp,
    "POST",
    "/badges",
    summary="Create a badge",
    tag="badges",
    access=Access.ADMIN,
    body=BadgeCreate,
    responses={201: BadgeView},
)
def post_badge(body: BadgeCreate) -> tuple[BadgeView, int]:
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        badge = create_badge(session, principal.tenant_id, principal.env, body.fields())
        audit_change(
            session, "badge.created", badge.id, {"name": badge.name, "criteria": badge.criteria}
        )
        return _badge_view(badge), 201


@endpoint(
    bp,
    "GET",
    "/badges/<badge_id>",
    summary="Get a badge",
    tag="badges",
    access=Access.ADMIN,
    responses={200: BadgeView},
    errors=BADGE_NOT_FOUND,
)
def get_one_badge(badge_id: str) -> tuple[BadgeView, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        badge = get_badge(session, principal.tenant_id, principal.env, parse_badge_id(badge_id))
        return _badge_view(badge), 200


@endpoint(
    bp,
    "PATCH",
    "/badges/<badge_id>",
    summary="Change a badge; fields not sent keep their values (a new criteria keeps the "
    "progress counted so far)",
    tag="badges",
    access=Access.ADMIN,
    body=BadgeUpdate,
    responses={200: BadgeView},
    errors=BADGE_NOT_FOUND,
)
def patch_badge(badge_id: str, body: BadgeUpdate) -> tuple[BadgeView, int]:
    principal = current_principal()
    parsed_id = parse_badge_id(badge_id)
    changes = body.changes()
    with runtime().session_factory.begin() as session:
        badge = update_badge(session, principal.tenant_id, principal.env, parsed_id, changes)
        if changes:
            audit_change(session, "badge.updated", badge.id, _change_details(body))
        return _badge_view(badge), 200


@endpoint(
    bp,
    "DELETE",
    "/badges/<badge_id>",
    summary="Deactivate a badge: no longer earned; its holders keep it, and it is still "
    "shown with active false",
    tag="badges",
    access=Access.ADMIN,
    responses={204: None},
    errors=BADGE_NOT_FOUND,
)
def deactivate_one_badge(badge_id: str) -> Response:
    principal = current_principal()
    parsed_id = parse_badge_id(badge_id)
    with runtime().session_factory.begin() as session:
        if deactivate_badge(session, principal.tenant_id, principal.env, parsed_id):
            audit_change(session, "badge.deactivated", parsed_id)
    return Response(status=204)
