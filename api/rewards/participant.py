"""Participant-key endpoints: the catalog, claims, and a participant's claimed rewards."""

from __future__ import annotations

from flask import Blueprint, Response

from api.auth import current_principal
from api.endpoint import Access, endpoint
from api.rewards.schemas import (
    Catalog,
    CatalogQuery,
    CatalogReward,
    ClaimChanged,
    ClaimChangeRequest,
    ClaimedReward,
    ClaimRequest,
    ClaimResponse,
    ParticipantClaims,
)
from api.runtime import runtime
from api.schemas import OperationAccepted, PageQuery
from api.validation import check_participant_id
from api.write_path import (
    IDEMPOTENCY_HEADER_DOC,
    PREFER_HEADER_DOC,
    accept_write,
)
from app.rewards.catalog import (
    CatalogFilters,
    catalog_view,
    list_claimable_rewards,
    parse_reward_id,
)
from app.rewards.claims import (
    CLAIM_KIND,
    CLAIM_USE_KIND,
    claim_change_payload,
    claim_payload,
    eligibility_for,
    list_participant_claims,
)

bp = Blueprint("rewards", __name__, url_prefix="/api/v1/gamify")

CLAIM_ERRORS = {
    400: (
        "IDEMPOTENCY_KEY_INVALID",
        "IDEMPOTENCY_KEY_MISMATCH",
        "insufficient_points",
        "reward_not_available",
        "reward_expired",
        "reward_out_of_stock",
        "max_claims_reached",
    ),
    404: ("reward_not_found",),
    422: ("validation_error", "IDEMPOTENCY_KEY_REUSED"),
}
CLAIM_CHANGE_ERRORS = {
    400: ("IDEMPOTENCY_KEY_INVALID", "IDEMPOTENCY_KEY_MISMATCH"),
    404: ("claim_not_found",),
    422: ("validation_error", "IDEMPOTENCY_KEY_REUSED"),
}


def accept_claim_change(kind: str, claim_id: str, body: ClaimChangeRequest) -> Response:
    """Record a use or a cancel of a claim, routed to its reward's claim lane."""
    principal = current_principal()
    with runtime().session_factory() as session:
        payload = claim_change_payload(session, principal.tenant_id, principal.env, claim_id)
    return accept_write(kind, payload, body.idempotency_key)


@endpoint(
    bp,
    "GET",
    "/rewards",
    summary="List active rewards available to claim",
    tag="rewards",
    access=Access.PARTICIPANT,
    query=CatalogQuery,
    responses={200: Catalog},
)
def list_rewards(query: CatalogQuery) -> tuple[Catalog, int]:
    principal = current_principal()
    filters = CatalogFilters(
        reward_type=query.reward_type,
        category=query.category,
        max_points=query.max_points,
        available=query.available,
        sort=query.sort,
    )
    with runtime().session_factory() as session:
        rewards, total = list_claimable_rewards(
            session,
            principal.tenant_id,
            principal.env,
            filters,
            offset=query.offset,
            limit=query.page_size,
        )
        entries = [CatalogReward.model_validate(catalog_view(reward)) for reward in rewards]
        if query.participant_id is not None:
            blockers = eligibility_for(
                session, principal.tenant_id, principal.env, query.participant_id, rewards
            )
            for entry, reward in zip(entries, rewards, strict=True):
                blocker = blockers[reward.id]
                entry.claimable = blocker is None
                entry.reason = blocker.code if blocker else None
                entry.reason_detail = blocker.detail if blocker else None
    return Catalog(rewards=entries, total=total, page=query.page, page_size=query.page_size), 200


@endpoint(
    bp,
    "GET",
    "/participants/<participant_id>/rewards",
    summary="List rewards a participant has claimed",
    tag="rewards",
    access=Access.PARTICIPANT,
    query=PageQuery,
    responses={200: ParticipantClaims},
)
def list_claimed_rewards(participant_id: str, query: PageQuery) -> tuple[ParticipantClaims, int]:
    check_participant_id(participant_id)
    principal = current_principal()
    with runtime().session_factory() as session:
        claims, total, points_spent = list_participant_claims(
            session,
            principal.tenant_id,
            principal.env,
            participant_id,
            offset=query.offset,
            limit=query.page_size,
        )
    return ParticipantClaims(
        participant_id=participant_id,
        rewards=[ClaimedReward.model_validate(claim) for claim in claims],
        total=total,
        total_points_spent=points_spent,
        total_claimed=total,
        page=query.page,
        page_size=query.page_size,
    ), 200


@endpoint(
    bp,
    "POST",
    "/rewards/<reward_id>/claim",
    summary="Claim a reward (idempotent)",
    tag="rewards",
    access=Access.PARTICIPANT,
    body=ClaimRequest,
    responses={201: ClaimResponse, 202: OperationAccepted},
    errors=CLAIM_ERRORS,
    headers=(IDEMPOTENCY_HEADER_DOC, PREFER_HEADER_DOC),
    write=True,
)
def claim_reward(reward_id: str, body: ClaimRequest) -> Response:
    parsed_id = parse_reward_id(reward_id)
    return accept_write(
        CLAIM_KIND,
        claim_payload(parsed_id, body.participant_id, body.points_deduction, body.metadata),
        body.idempotency_key,
    )


@endpoint(
    bp,
    "POST",
    "/claims/<claim_id>/use",
    summary="Mark a claim used (idempotent)",
    tag="rewards",
    access=Access.PARTICIPANT,
    body=ClaimChangeRequest,
    responses={200: ClaimChanged, 202: OperationAccepted},
    errors={
        **CLAIM_CHANGE_ERRORS,
        409: ("claim_already_used", "claim_cancelled"),
    },
    headers=(IDEMPOTENCY_HEADER_DOC, PREFER_HEADER_DOC),
    write=True,
)
def use_claim(claim_id: str, body: ClaimChangeRequest) -> Response:
    return accept_claim_change(CLAIM_USE_KIND, claim_id, body)
