"""Referrals over HTTP: the program (admin), a participant's code and referrals, and the
two writes (tracking, completion), accepted as operations like every write."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from flask import Blueprint, Response

from api.audit import audit_change
from api.auth import current_principal
from api.endpoint import Access, endpoint
from api.points.writes import IDEMPOTENCY_ERRORS, WRITE_HEADERS
from api.referrals.schemas import (
    CompleteRequest,
    ParticipantReferrals,
    ReferralCodeView,
    ReferralProgramPut,
    ReferralProgramView,
    ReferralsQuery,
    ReferralView,
    TrackRequest,
)
from api.runtime import runtime
from api.schemas import OperationAccepted
from api.validation import check_participant_id
from api.write_path import accept_write
from app.errors import parse_uuid
from app.referrals.codes import referral_code
from app.referrals.decisions import referral_not_found
from app.referrals.kinds import REFERRAL_COMPLETE_KIND, REFERRAL_TRACK_KIND
from app.referrals.program import (
    DEFAULT_CODE_LENGTH,
    StoredReferralProgram,
    put_referral_program,
    read_referral_program,
)
from app.referrals.reads import participant_referrals

bp = Blueprint("referrals", __name__, url_prefix="/api/v1/gamify")

COMPLETION_REFUSALS = ("referral_program_inactive", "referral_expired", "referral_not_qualified")
TRACK_REFUSALS = (
    "referral_program_inactive",
    "referral_invalid",
    "referral_self",
    "referral_already_tracked",
    "referral_limit_reached",
)


def number(amount: Decimal | None) -> float | None:
    """An amount of money as the answers show it."""
    return float(amount) if amount is not None else None


def _program_view(stored: StoredReferralProgram) -> ReferralProgramView:
    terms = stored.terms
    if terms is None:
        return ReferralProgramView(
            configured=False,
            referrer_points=0,
            referee_points=0,
            completion_action=None,
            max_referrals_per_referrer=None,
            code_length=DEFAULT_CODE_LENGTH,
            active=False,
            min_qualifying_amount=None,
            expiration_days=None,
            updated_at=None,
        )
    return ReferralProgramView(
        configured=True,
        referrer_points=terms.referrer_points,
        referee_points=terms.referee_points,
        completion_action=terms.completion_action,
        max_referrals_per_referrer=terms.max_referrals_per_referrer,
        code_length=terms.code_length,
        active=terms.active,
        min_qualifying_amount=number(terms.min_qualifying_amount),
        expiration_days=terms.expiration_days,
        updated_at=stored.updated_at,
    )


@endpoint(
    bp,
    "GET",
    "/admin/referral-program",
    summary="The referral program (inactive until configured)",
    tag="referrals",
    access=Access.ADMIN,
    responses={200: ReferralProgramView},
)
def get_referral_program() -> tuple[ReferralProgramView, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        stored = read_referral_program(session, principal.tenant_id, principal.env)
    return _program_view(stored), 200


@endpoint(
    bp,
    "PUT",
    "/admin/referral-program",
    summary="Configure the referral program (the whole of it; fields not sent take their defaults)",
    tag="referrals",
    access=Access.ADMIN,
    body=ReferralProgramPut,
    responses={200: ReferralProgramView},
)
def put_program(body: ReferralProgramPut) -> tuple[ReferralProgramView, int]:
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        stored = put_referral_program(session, principal.tenant_id, principal.env, body.terms())
        # The program has no id of its own: it is the tenant's (the entry has the env).
        audit_change(
            session,
            "referral_program.updated",
            principal.tenant_id,
            {"values": body.model_dump(mode="json", exclude={"idempotency_key"})},
        )
    return _program_view(stored), 200


@endpoint(
    bp,
    "GET",
    "/participants/<participant_id>/referral-code",
    summary="The participant's referral code, made on the first ask and the same after",
    tag="referrals",
    access=Access.PARTICIPANT,
    responses={200: ReferralCodeView},
)
def get_referral_code(participant_id: str) -> tuple[ReferralCodeView, int]:
    check_participant_id(participant_id)
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        code = referral_code(session, principal.tenant_id, principal.env, participant_id)
    return ReferralCodeView(participant_id=participant_id, referral_code=code), 200


@endpoint(
    bp,
    "GET",
    "/participants/<participant_id>/referrals",
    summary="The referrals a participant made, newest first, with totals",
    tag="referrals",
    access=Access.PARTICIPANT,
    query=ReferralsQuery,
    responses={200: ParticipantReferrals},
)
def get_participant_referrals(
    participant_id: str, query: ReferralsQuery
) -> tuple[dict[str, Any], int]:
    check_participant_id(participant_id)
    principal = current_principal()
    with runtime().session_factory() as session:
        listed = participant_referrals(
            session,
            principal.tenant_id,
            principal.env,
            participant_id,
            status=query.status,
            offset=query.offset,
            limit=query.page_size,
        )
    # As read: the referrals' text is the same as the writes answered (app.referrals.completion).
    return {**listed, "page": query.page, "page_size": query.page_size}, 200


@endpoint(
    bp,
    "POST",
    "/referrals/track",
    summary="Track a referral: the referee signed up with the referrer's code",
    tag="referrals",
    access=Access.PARTICIPANT,
    body=TrackRequest,
    responses={201: ReferralView, 202: OperationAccepted},
    errors={**IDEMPOTENCY_ERRORS, 400: (*IDEMPOTENCY_ERRORS[400], *TRACK_REFUSALS)},
    headers=WRITE_HEADERS,
    write=True,
)
def track(body: TrackRequest) -> Response:
    return accept_write(REFERRAL_TRACK_KIND, body.payload(), body.idempotency_key)


@endpoint(
    bp,
    "POST",
    "/referrals/complete",
    summary="Complete a referral (by referral_id or referee_id): both sides are paid once, "
    "unless it expired or its amount does not qualify",
    tag="referrals",
    access=Access.PARTICIPANT,
    body=CompleteRequest,
    responses={200: ReferralView, 202: OperationAccepted},
    errors={
        **IDEMPOTENCY_ERRORS,
        400: (*IDEMPOTENCY_ERRORS[400], *COMPLETION_REFUSALS),
        404: ("referral_not_found",),
        409: ("referral_already_completed",),
    },
    headers=WRITE_HEADERS,
    write=True,
)
def complete(body: CompleteRequest) -> Response:
    which: dict[str, str | None] = {"referee_id": body.referee_id}
    if body.referral_id is not None:
        which = {"referral_id": str(parse_uuid(body.referral_id, referral_not_found()))}
    return accept_write(
        REFERRAL_COMPLETE_KIND, {**which, **body.qualifying()}, body.idempotency_key
    )
