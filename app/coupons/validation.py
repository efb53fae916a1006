"""Validating a code for an order, read-only, in the web process: the rules a redemption
would apply (app.coupons.rules), on the state as read now, without locks. A redemption
made afterwards decides again under the coupon's lock."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.coupons.redemption_decisions import order_of
from app.coupons.rules import (
    UsageFacts,
    as_number,
    compute_discount,
    coupon_refusal,
    new_customers_only,
)
from app.coupons.usage import find_codes, load_coupons, participant_uses, returning_customers

APPLIED = "Coupon applied successfully"


def validate_code(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    payload: dict[str, Any],
) -> dict[str, Any]:
    """The answer to a validate request: `payload` is as a redeem's (code normalized,
    amounts as decimal strings), participant_id optional."""
    code, participant_id = payload["code"], payload.get("participant_id")
    order = order_of(payload)
    row = find_codes(session, tenant_id, env, [code]).get(code)
    coupon = None
    facts = UsageFacts()
    if row is not None:
        coupon = load_coupons(session, tenant_id, env, [row.coupon_id], lock=False).get(
            row.coupon_id
        )
    if coupon is not None:
        uses = None
        returning = None
        if participant_id is not None:
            uses = participant_uses(session, [(coupon.id, participant_id)]).get(
                (coupon.id, participant_id), 0
            )
            if new_customers_only(coupon):
                returning = participant_id in returning_customers(
                    session, tenant_id, env, [participant_id]
                )
        facts = UsageFacts(row is not None and row.redemption_id is not None, uses, returning)
    refusal = coupon_refusal(coupon, facts, order, utcnow())
    if refusal is not None:
        return {
            "valid": False,
            "coupon_code": code,
            "error_code": refusal.code,
            "message": refusal.detail,
        }
    assert coupon is not None  # coupon_refusal refuses a code that names none
    discount = compute_discount(coupon, order)
    return {
        "valid": True,
        "coupon_code": code,
        "discount_type": coupon.discount_type,
        "discount_value": as_number(coupon.discount_value),
        "discount_amount": as_number(discount.amount),
        "final_amount": as_number(discount.final_amount),
        "currency": coupon.currency,
        "message": APPLIED,
    }
