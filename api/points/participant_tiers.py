"""A participant's tier status, and an admin's tier set by hand."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from api.audit import audit_change
from api.auth import current_principal
from api.endpoint import Access, endpoint
from api.points.schemas import ParticipantTierStatus, ParticipantTierUpdate
from api.runtime import runtime
from api.validation import check_participant_id
from app.points.tier_status import set_tier, tier_status

bp = Blueprint("participant_tiers", __name__, url_prefix="/api/v1/gamify")


@endpoint(
    bp,
    "GET",
    "/participants/<participant_id>/tier",
    summary="The participant's tier, the next one and the progress towards it",
    tag="tiers",
    access=Access.PARTICIPANT,
    responses={200: ParticipantTierStatus},
)
def get_participant_tier(participant_id: str) -> tuple[ParticipantTierStatus, int]:
    check_participant_id(participant_id)
    principal = current_principal()
    with runtime().session_factory() as session:
        status = tier_status(session, principal.tenant_id, principal.env, participant_id)
    return ParticipantTierStatus.model_validate(status), 200


@endpoint(
    bp,
    "PATCH",
    "/admin/participants/<participant_id>/tier",
    summary="Set a participant's tier by hand, optionally locked until a date",
    tag="tiers",
    access=Access.ADMIN,
    body=ParticipantTierUpdate,
    responses={200: ParticipantTierStatus},
    errors={404: ("participant_not_found", "tier_not_found")},
)
def patch_participant_tier(
    participant_id: str, body: ParticipantTierUpdate
) -> tuple[ParticipantTierStatus, int]:
    check_participant_id(participant_id)
    status = set_tier_by_hand(participant_id, body)
    return ParticipantTierStatus.model_validate(status), 200


def set_tier_by_hand(participant_id: str, body: ParticipantTierUpdate) -> dict[str, Any]:
    """Set the participant's tier as `body` says, audited; its tier status after (the
    native and the 23blocks endpoints' one way to do it)."""
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        change = set_tier(
            session,
            principal.tenant_id,
            principal.env,
            participant_id,
            body.tier_code,
            reason=body.reason,
            locked_until=body.locked_until,
        )
        audit_change(
            session,
            "participant.tier_set",
            change.participant_pk,
            {
                "participant_id": participant_id,
                "previous_tier": change.previous.code if change.previous else None,
                "tier": change.current.code,
                "reason": body.reason,
                "locked_until": body.locked_until.isoformat() if body.locked_until else None,
            },
        )
        return tier_status(session, principal.tenant_id, principal.env, participant_id)
