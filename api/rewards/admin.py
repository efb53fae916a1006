"""Admin-scope endpoints: reward definitions and their code inventory."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

from flask import Blueprint, Response, request

from api.audit import audit_change
from api.auth import current_principal
from api.endpoint import Access, endpoint, parse_json_body
from api.rewards.participant import CLAIM_CHANGE_ERRORS, accept_claim_change
from api.rewards.schemas import (
    AdminReward,
    AdminRewardList,
    AdminRewardsQuery,
    ClaimChanged,
    ClaimChangeRequest,
    CodesUpload,
    CodesUploadResult,
    CreateRewardRequest,
    UpdateRewardRequest,
)
from api.runtime import runtime
from api.schemas import MessageBody, OperationAccepted
from api.write_path import IDEMPOTENCY_HEADER_DOC, PREFER_HEADER_DOC
from app.errors import DomainError
from app.rewards.catalog import (
    admin_view,
    create_reward,
    deactivate_reward,
    get_reward,
    list_rewards_admin,
    parse_reward_id,
    update_reward,
)
from app.rewards.claims import CLAIM_CANCEL_KIND
from app.rewards.inventory import MAX_CODES_PER_UPLOAD, upload_codes

bp = Blueprint("rewards_admin", __name__, url_prefix="/api/v1/gamify/admin")

NOT_FOUND = {404: ("reward_not_found",)}
SLUG_TAKEN = {409: ("slug_taken",)}
# 100,000 codes of up to 255 characters, plus JSON quoting.
CODES_UPLOAD_LIMIT_BYTES = 32 * 1024 * 1024
CODE_TEXT_TYPES = ("text/csv", "text/plain")


def _admin_reward(reward: Any) -> AdminReward:
    return AdminReward.model_validate(admin_view(reward))


@endpoint(
    bp,
    "GET",
    "/rewards",
    summary="List reward definitions",
    tag="rewards admin",
    access=Access.ADMIN,
    query=AdminRewardsQuery,
    responses={200: AdminRewardList},
)
def list_reward_definitions(query: AdminRewardsQuery) -> tuple[AdminRewardList, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        rewards, total = list_rewards_admin(
            session,
            principal.tenant_id,
            principal.env,
            is_active=query.is_active,
            reward_type=query.reward_type,
            offset=query.offset,
            limit=query.page_size,
        )
        items = [_admin_reward(reward) for reward in rewards]
    return AdminRewardList(
        items=items, total=total, page=query.page, page_size=query.page_size
    ), 200


@endpoint(
    bp,
    "POST",
    "/rewards",
    summary="Create a reward definition",
    tag="rewards admin",
    access=Access.ADMIN,
    body=CreateRewardRequest,
    responses={201: AdminReward},
    errors=SLUG_TAKEN,
)
def create_reward_definition(body: CreateRewardRequest) -> tuple[AdminReward, int]:
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        reward = create_reward(session, principal.tenant_id, principal.env, body.model_dump())
        audit_change(
            session, "reward.created", reward.id, {"name": reward.name, "type": reward.type}
        )
        return _admin_reward(reward), 201


@endpoint(
    bp,
    "GET",
    "/rewards/<reward_id>",
    summary="Get a reward definition",
    tag="rewards admin",
    access=Access.ADMIN,
    responses={200: AdminReward},
    errors=NOT_FOUND,
)
def get_reward_definition(reward_id: str) -> tuple[AdminReward, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        reward = get_reward(session, principal.tenant_id, principal.env, parse_reward_id(reward_id))
        return _admin_reward(reward), 200


@endpoint(
    bp,
    "PATCH",
    "/rewards/<reward_id>",
    summary="Update a reward definition",
    tag="rewards admin",
    access=Access.ADMIN,
    body=UpdateRewardRequest,
    responses={200: AdminReward},
    errors={**NOT_FOUND, **SLUG_TAKEN},
)
def update_reward_definition(reward_id: str, body: UpdateRewardRequest) -> tuple[AdminReward, int]:
    principal = current_principal()
    changes = body.model_dump(exclude_unset=True)
    with runtime().session_factory.begin() as session:
        reward = update_reward(
            session, principal.tenant_id, principal.env, parse_reward_id(reward_id), changes
        )
        audit_change(session, "reward.updated", reward.id, {"changed": sorted(changes)})
        return _admin_reward(reward), 200


@endpoint(
    bp,
    "DELETE",
    "/rewards/<reward_id>",
    summary="Deactivate (soft-delete) a reward",
    tag="rewards admin",
    access=Access.ADMIN,
    responses={200: MessageBody},
    errors=NOT_FOUND,
)
def deactivate_reward_definition(reward_id: str) -> tuple[MessageBody, int]:
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        reward = deactivate_reward(
            session, principal.tenant_id, principal.env, parse_reward_id(reward_id)
        )
        audit_change(session, "reward.deactivated", reward.id)
    return MessageBody(message="Reward deactivated"), 200


def codes_from_text(body: str, is_csv: bool) -> list[str]:
    """The codes of an uploaded text: one per line, or a CSV's first column (a header
    row named `code` skipped). The admin console's file upload reads files with it too."""
    if not is_csv:
        return body.splitlines()
    rows = csv.reader(io.StringIO(body))
    codes = [row[0] for row in rows if row]
    if codes and codes[0].strip().lower() == "code":
        codes = codes[1:]  # a header row
    return codes


def _uploaded_codes() -> list[str]:
    if request.mimetype in CODE_TEXT_TYPES:
        try:
            text = request.get_data().decode("utf-8")
        except UnicodeDecodeError:
            raise DomainError("invalid_body", "The code list must be UTF-8 text", 400) from None
        return codes_from_text(text, is_csv=request.mimetype == "text/csv")
    if request.is_json:
        return parse_json_body(CodesUpload).codes
    raise DomainError(
        "unsupported_media_type",
        'Send application/json {"codes": [...]}, text/csv or text/plain (one code per line)',
        415,
    )


@endpoint(
    bp,
    "POST",
    "/rewards/<reward_id>/codes",
    summary="Upload pre-loaded codes",
    tag="rewards admin",
    access=Access.ADMIN,
    responses={200: CodesUploadResult},
    errors={
        **NOT_FOUND,
        400: ("codes_not_supported", "invalid_json"),
        413: ("payload_too_large",),
        415: ("unsupported_media_type",),
        422: ("validation_error",),
    },
    max_body_bytes=CODES_UPLOAD_LIMIT_BYTES,
    raw_body_types=CODE_TEXT_TYPES,
    body_doc=CodesUpload,
)
def upload_reward_codes(reward_id: str) -> tuple[CodesUploadResult, int]:
    parsed_id = parse_reward_id(reward_id)
    codes = _uploaded_codes()
    if len(codes) > MAX_CODES_PER_UPLOAD + 1:  # +1: a CSV header has not been seen yet
        raise DomainError(
            "validation_error", f"At most {MAX_CODES_PER_UPLOAD} codes per upload", 422
        )
    return store_codes(parsed_id, codes), 200


def store_codes(reward_id: uuid.UUID, codes: list[str]) -> CodesUploadResult:
    """Add `codes` to the reward's stock, audited (the API's upload and the console's)."""
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        result = upload_codes(session, principal.tenant_id, principal.env, reward_id, codes)
        audit_change(
            session,
            "reward.codes_uploaded",
            reward_id,
            {"added": result.added, "duplicates": result.duplicates},
        )
    return CodesUploadResult(
        added=result.added, duplicates=result.duplicates, available_codes=result.available_codes
    )


@endpoint(
    bp,
    "POST",
    "/claims/<claim_id>/cancel",
    summary="Cancel a claim: refund its points and return its code to stock (idempotent)",
    tag="rewards admin",
    access=Access.ADMIN,
    body=ClaimChangeRequest,
    responses={200: ClaimChanged, 202: OperationAccepted},
    errors={
        **CLAIM_CHANGE_ERRORS,
        409: ("claim_already_cancelled", "claim_already_used"),
    },
    headers=(IDEMPOTENCY_HEADER_DOC, PREFER_HEADER_DOC),
    write=True,
)
def cancel_claim(claim_id: str, body: ClaimChangeRequest) -> Response:
    return accept_claim_change(CLAIM_CANCEL_KIND, claim_id, body)
