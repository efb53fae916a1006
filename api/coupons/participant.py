"""Participant-key endpoints: validate a code for an order, redeem it, void a redemption."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from api.auth import current_principal
from api.coupons.schemas import (
    OrderFields,
    RedeemRequest,
    Redemption,
    ValidateRequest,
    ValidateResult,
)
from api.endpoint import Access, endpoint
from api.runtime import runtime
from api.schemas import OperationAccepted
from api.write_path import IDEMPOTENCY_HEADER_DOC, PREFER_HEADER_DOC, accept_write
from app.coupons.definitions import normalize_code
from app.coupons.redemption_batches import REDEEM_KIND, VOID_KIND, parse_redemption_id
from app.coupons.rules import money
from app.coupons.validation import validate_code

bp = Blueprint("coupons", __name__, url_prefix="/api/v1/gamify")

REFUSALS = (
    "invalid_coupon",
    "coupon_expired",
    "coupon_not_started",
    "coupon_usage_limit",
    "coupon_not_eligible",
    "coupon_already_used",
    "coupon_min_order",
)


def order_payload(body: OrderFields) -> dict[str, Any]:
    """The code and order as the rules read them: the code normalized, amounts as exact
    decimal strings in cents (so 12.5 and 12.50 are one request to a replay)."""
    return {
        "code": normalize_code(body.code),
        "order_amount": None if body.order_amount is None else str(money(body.order_amount)),
        "items": [
            {
                "product_id": item.product_id,
                "category": item.category,
                "quantity": item.quantity,
                "price": str(money(item.price)),
            }
            for item in body.items
        ]
        if body.items
        else None,
    }


@endpoint(
    bp,
    "POST",
    "/coupons/validate",
    summary="Check a code for an order (read-only): valid with the discount, or the reason "
    "it would be refused",
    tag="coupons",
    access=Access.PARTICIPANT,
    body=ValidateRequest,
    responses={200: ValidateResult},
)
def validate_coupon(body: ValidateRequest) -> tuple[ValidateResult, int]:
    principal = current_principal()
    payload = {**order_payload(body), "participant_id": body.participant_id}
    with runtime().session_factory() as session:
        answer = validate_code(session, principal.tenant_id, principal.env, payload)
    return ValidateResult.model_validate(answer), 200


@endpoint(
    bp,
    "POST",
    "/coupons/redeem",
    summary="Redeem a code for an order (idempotent; the same order_id replays its first "
    "redemption)",
    tag="coupons",
    access=Access.PARTICIPANT,
    body=RedeemRequest,
    responses={201: Redemption, 202: OperationAccepted},
    errors={
        400: ("IDEMPOTENCY_KEY_INVALID", "IDEMPOTENCY_KEY_MISMATCH", *REFUSALS),
        422: ("validation_error", "IDEMPOTENCY_KEY_REUSED"),
    },
    headers=(IDEMPOTENCY_HEADER_DOC, PREFER_HEADER_DOC),
    write=True,
)
def redeem_coupon(body: RedeemRequest) -> Response:
    payload = {
        **order_payload(body),
        "participant_id": body.participant_id,
        "order_id": body.order_id,
    }
    return accept_write(REDEEM_KIND, payload, body.idempotency_key)


@endpoint(
    bp,
    "POST",
    "/coupons/redemptions/<redemption_id>/void",
    summary="Void a redemption (its order was cancelled): the use is given back; voiding "
    "again answers as the first void",
    tag="coupons",
    access=Access.PARTICIPANT,
    responses={200: Redemption, 202: OperationAccepted},
    errors={
        400: ("IDEMPOTENCY_KEY_INVALID",),
        404: ("redemption_not_found",),
        422: ("IDEMPOTENCY_KEY_REUSED",),
    },
    headers=(IDEMPOTENCY_HEADER_DOC, PREFER_HEADER_DOC),
    write=True,
)
def void_coupon_redemption(redemption_id: str) -> Response:
    parsed_id = parse_redemption_id(redemption_id)
    return accept_write(VOID_KIND, {"redemption_id": str(parsed_id)}, None)
