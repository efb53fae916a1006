"""Actions (the one way in for what participants do) and participants' badges."""

from __future__ import annotations

import uuid

from flask import Blueprint, Response

from api.auth import current_principal
from api.endpoint import Access, endpoint
from api.engagement.action_schemas import (
    ActionBatchRequest,
    ActionBatchResponse,
    ActionRequest,
    ActionResponse,
    BadgeAwardRequest,
    BadgeAwardResponse,
    BadgeProgressView,
    EarnedBadges,
)
from api.points.writes import IDEMPOTENCY_ERRORS, WRITE_HEADERS
from api.runtime import runtime
from api.schemas import OperationAccepted
from api.validation import check_participant_id
from api.write_path import accept_write
from app.clock import utcnow
from app.engagement.actions import (
    ACTION_BATCH_KIND,
    ACTION_KIND,
    BADGE_AWARD_KIND,
    batch_action_entries,
)
from app.engagement.badge_reads import badge_progress, participant_badges
from app.engagement.pipeline import badge_not_found

bp = Blueprint("actions", __name__, url_prefix="/api/v1/gamify")


@endpoint(
    bp,
    "POST",
    "/actions",
    summary="Record an action: earning rules credit points, badges are earned; the answer "
    "lists what it caused",
    tag="actions",
    access=Access.PARTICIPANT,
    body=ActionRequest,
    responses={201: ActionResponse, 202: OperationAccepted},
    errors=IDEMPOTENCY_ERRORS,
    headers=WRITE_HEADERS,
    write=True,
)
def record_action(body: ActionRequest) -> Response:
    return accept_write(ACTION_KIND, body.payload(), body.idempotency_key)


@endpoint(
    bp,
    "POST",
    "/actions/batch",
    summary="Record up to 100 actions; each is applied or refused on its own",
    tag="actions",
    access=Access.PARTICIPANT,
    body=ActionBatchRequest,
    responses={200: ActionBatchResponse, 202: OperationAccepted},
    errors=IDEMPOTENCY_ERRORS,
    headers=WRITE_HEADERS,
    write=True,
)
def record_actions(body: ActionBatchRequest) -> Response:
    entries = batch_action_entries(body.actions, utcnow())
    return accept_write(ACTION_BATCH_KIND, {"actions": entries}, body.idempotency_key)


@endpoint(
    bp,
    "POST",
    "/badges/award",
    summary="Award a badge by hand (any badge, whatever its criteria); its points reward "
    "is credited",
    tag="badges",
    access=Access.PARTICIPANT,
    body=BadgeAwardRequest,
    responses={201: BadgeAwardResponse, 202: OperationAccepted},
    errors={
        **IDEMPOTENCY_ERRORS,
        404: ("badge_not_found",),
        409: ("badge_already_awarded",),
    },
    headers=WRITE_HEADERS,
    write=True,
)
def award_badge(body: BadgeAwardRequest) -> Response:
    try:
        badge_id = str(uuid.UUID(body.badge_id))
    except ValueError:
        raise badge_not_found() from None
    return accept_write(
        BADGE_AWARD_KIND,
        {"participant_id": body.participant_id, "badge_id": badge_id},
        body.idempotency_key,
    )


@endpoint(
    bp,
    "GET",
    "/participants/<participant_id>/badges",
    summary="The badges a participant has earned, most recent first",
    tag="badges",
    access=Access.PARTICIPANT,
    responses={200: EarnedBadges},
)
def get_participant_badges(participant_id: str) -> tuple[EarnedBadges, int]:
    check_participant_id(participant_id)
    principal = current_principal()
    with runtime().session_factory() as session:
        badges = participant_badges(session, principal.tenant_id, principal.env, participant_id)
    return EarnedBadges.model_validate({"participant_id": participant_id, "badges": badges}), 200


@endpoint(
    bp,
    "GET",
    "/participants/<participant_id>/badges/<badge_id>/progress",
    summary="How far a participant is toward a badge",
    tag="badges",
    access=Access.PARTICIPANT,
    responses={200: BadgeProgressView},
    errors={404: ("badge_not_found",)},
)
def get_badge_progress(participant_id: str, badge_id: str) -> tuple[BadgeProgressView, int]:
    check_participant_id(participant_id)
    principal = current_principal()
    with runtime().session_factory() as session:
        progress = badge_progress(
            session, principal.tenant_id, principal.env, participant_id, badge_id
        )
    return BadgeProgressView.model_validate(progress), 200
