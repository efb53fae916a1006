"""Admin: the tenant's loyalty tiers."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from api.audit import audit_change
from api.auth import current_principal
from api.endpoint import Access, endpoint
from api.points.schemas import TierCreate, TierList, TierUpdate, TierView
from api.runtime import runtime
from app.models import Tier
from app.points.tiers import create_tier, delete_tier, get_tier, list_tiers, update_tier

bp = Blueprint("tiers", __name__, url_prefix="/api/v1/gamify")

TIER_CONFLICTS = ("tier_already_exists", "tier_level_taken")


def _view(tier: Tier) -> TierView:
    return TierView(
        code=tier.code,
        name=tier.name,
        level=tier.level,
        points_required=tier.points_required,
        points_multiplier=float(tier.points_multiplier),
        benefits=tier.benefits or [],
        color=tier.color,
        is_active=tier.is_active,
        created_at=tier.created_at,
        updated_at=tier.updated_at,
    )


@endpoint(
    bp,
    "GET",
    "/admin/tiers",
    summary="List tiers, lowest level first",
    tag="tiers",
    access=Access.ADMIN,
    responses={200: TierList},
)
def get_tiers() -> tuple[TierList, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        tiers = list_tiers(session, principal.tenant_id, principal.env)
        return TierList(tiers=[_view(tier) for tier in tiers]), 200


@endpoint(
    bp,
    "POST",
    "/admin/tiers",
    summary="Create a tier",
    tag="tiers",
    access=Access.ADMIN,
    body=TierCreate,
    responses={201: TierView},
    errors={409: TIER_CONFLICTS},
)
def post_tier(body: TierCreate) -> tuple[TierView, int]:
    principal = current_principal()
    fields: dict[str, Any] = body.model_dump(exclude={"code"})
    with runtime().session_factory.begin() as session:
        tier = create_tier(session, principal.tenant_id, principal.env, body.code, fields)
        audit_change(session, "tier.created", tier.id, {"code": tier.code, "level": tier.level})
        return _view(tier), 201


@endpoint(
    bp,
    "GET",
    "/admin/tiers/<code>",
    summary="Get a tier",
    tag="tiers",
    access=Access.ADMIN,
    responses={200: TierView},
    errors={404: ("tier_not_found",)},
)
def get_one_tier(code: str) -> tuple[TierView, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        return _view(get_tier(session, principal.tenant_id, principal.env, code)), 200


@endpoint(
    bp,
    "PATCH",
    "/admin/tiers/<code>",
    summary="Change a tier; fields not sent keep their values",
    tag="tiers",
    access=Access.ADMIN,
    body=TierUpdate,
    responses={200: TierView},
    errors={404: ("tier_not_found",), 409: ("tier_level_taken",)},
)
def patch_tier(code: str, body: TierUpdate) -> tuple[TierView, int]:
    principal = current_principal()
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    with runtime().session_factory.begin() as session:
        tier = update_tier(session, principal.tenant_id, principal.env, code, changes)
        if changes:
            details = {"code": tier.code, "changed": sorted(changes)}
            audit_change(session, "tier.updated", tier.id, details)
        return _view(tier), 200


@endpoint(
    bp,
    "DELETE",
    "/admin/tiers/<code>",
    summary="Delete a tier; its members fall to the tier their lifetime points reach",
    tag="tiers",
    access=Access.ADMIN,
    responses={204: None},
    errors={404: ("tier_not_found",)},
)
def remove_tier(code: str) -> Response:
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        tier_id = delete_tier(session, principal.tenant_id, principal.env, code)
        audit_change(session, "tier.deleted", tier_id, {"code": code})
    return Response(status=204)
