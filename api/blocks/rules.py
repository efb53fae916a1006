"""23blocks Points rules: the document's points-rule over the native earning rules (its
formula language, conditions and multipliers; the rule is created as the native admin
creates it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from flask import Blueprint
from pydantic import Field

from api.audit import audit_change
from api.auth import current_principal
from api.blocks.jsonapi import (
    PREFIX,
    Attributes,
    Document,
    Kebab,
    Many,
    Single,
    native_model,
    one,
    resource,
)
from api.endpoint import Access, endpoint
from api.engagement.schemas import EarningRuleCreate
from api.runtime import runtime
from app.engagement.definitions import create_rule, list_rules
from app.models import EarningRule

bp = Blueprint("blocks_rules", __name__, url_prefix=PREFIX)

TAG = "23blocks: points"
Number = int | float


class RuleConditionsAttributes(Attributes):
    min_amount: Number | None = Field(
        default=None, description="The action's `amount` property must be at least this"
    )
    max_points: int | None = Field(default=None, description="Most points one action earns")


class RuleMultipliersAttributes(Attributes):
    weekend: Number | None = Field(default=None, description="Factor on Saturdays and Sundays")
    holiday: Number | None = Field(default=None, description="Factor on the program's holidays")


class RuleAttributes(Attributes):
    name: str
    action: str
    points_formula: str = Field(description="Points for an action, e.g. amount * 2")
    description: str | None = Field(default=None, max_length=2000)
    conditions: RuleConditionsAttributes | None = None
    multipliers: RuleMultipliersAttributes | None = None
    active: bool = True


RuleDocument = Document[Literal["points-rule"], RuleAttributes]


class RuleConditionsOut(Kebab):
    min_amount: Number | None
    max_points: int | None


class RuleOut(Kebab):
    name: str
    action: str
    points_formula: str
    description: str | None
    conditions: RuleConditionsOut
    multipliers: dict[str, Any] = Field(description="{weekend?, holiday?}")
    active: bool
    created_at: datetime


class CountMeta(Kebab):
    total_count: int


def _sent(model: Attributes | None) -> dict[str, Any] | None:
    """A nested attribute object as the native rule stores it: the keys sent."""
    if model is None:
        return None
    return model.model_dump(exclude_none=True) or None


def _rule_out(rule: EarningRule) -> RuleOut:
    conditions = rule.conditions or {}
    return RuleOut(
        name=rule.name,
        action=rule.action,
        points_formula=rule.formula,
        description=rule.description,
        conditions=RuleConditionsOut(
            min_amount=conditions.get("min_amount"), max_points=rule.max_points
        ),
        multipliers={
            name: factor
            for name, factor in (rule.multipliers or {}).items()
            if name in ("weekend", "holiday")
        },
        active=rule.active,
        created_at=rule.created_at,
    )


@endpoint(
    bp,
    "POST",
    "/points/rules",
    summary="Create a points rule (a native earning rule)",
    tag=TAG,
    access=Access.ADMIN,
    body=RuleDocument,
    responses={201: Single[Literal["points-rule"], RuleOut]},
)
def blocks_create_rule(body: RuleDocument) -> tuple[dict[str, Any], int]:
    attributes = body.attributes
    conditions = attributes.conditions
    native = native_model(
        EarningRuleCreate,
        {"formula": "points-formula", "max_points": "conditions"},
        name=attributes.name,
        action=attributes.action,
        formula=attributes.points_formula,
        conditions={"min_amount": conditions.min_amount}
        if conditions and conditions.min_amount is not None
        else None,
        max_points=conditions.max_points if conditions else None,
        multipliers=_sent(attributes.multipliers),
        active=attributes.active,
    )
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        rule = create_rule(session, principal.tenant_id, principal.env, native.fields())
        rule.description = attributes.description
        audit_change(
            session, "earning_rule.created", rule.id, {"name": rule.name, "action": rule.action}
        )
        return one("points-rule", str(rule.id), _rule_out(rule)), 201


@endpoint(
    bp,
    "GET",
    "/points/rules",
    summary="List points rules, oldest first",
    tag=TAG,
    access=Access.ADMIN,
    responses={200: Many[Literal["points-rule"], RuleOut, CountMeta]},
)
def blocks_list_rules() -> tuple[dict[str, Any], int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        rules = list_rules(session, principal.tenant_id, principal.env)
        data = [resource("points-rule", str(rule.id), _rule_out(rule)) for rule in rules]
    return {"data": data, "meta": CountMeta(total_count=len(data))}, 200
