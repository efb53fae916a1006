"""The redemptions of a batch decided in submission order against the state read under
the coupons' locks. Pure: app.coupons.redemption_batches reads, this decides, then the
batch writes. Validation (app.coupons.validation) applies the same rules to one code."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from app.coupons.rules import (
    Discount,
    Order,
    OrderItem,
    UsageFacts,
    as_number,
    compute_discount,
    coupon_refusal,
    invalid_coupon,
    new_customers_only,
)
from app.coupons.usage import CodeRow, PriorRedemption
from app.errors import DomainError
from app.models import Coupon


@dataclass(frozen=True, slots=True)
class RedeemRequest:
    operation_id: uuid.UUID
    code: str  # normalized
    participant_id: str
    order_id: str
    order: Order
    fingerprint: str  # of the request: a replay of its order must match it


@dataclass(frozen=True, slots=True)
class AcceptedRedemption:
    request: RedeemRequest
    coupon: Coupon
    redemption_id: uuid.UUID
    discount: Discount
    single_use: bool  # the code is a generated one, now held by this redemption
    redeemed_at: datetime

    def as_prior(self) -> PriorRedemption:
        request = self.request
        return PriorRedemption(
            self.redemption_id,
            self.coupon.id,
            request.code,
            request.participant_id,
            request.order_id,
            request.order.total,
            self.discount.amount,
            request.fingerprint,
            self.redeemed_at,
        )


# Accepted; a replay of an order's live redemption (its answer); or refused.
RedeemDecision = AcceptedRedemption | PriorRedemption | DomainError


def order_reused() -> DomainError:
    return DomainError(
        "IDEMPOTENCY_KEY_REUSED",
        "This order_id already redeemed this coupon with a different request",
        422,
    )


def order_of(payload: dict[str, Any]) -> Order:
    """The order a validate or redeem payload describes (amounts as decimal strings)."""
    amount = payload.get("order_amount")
    items = tuple(
        OrderItem(item["product_id"], item["quantity"], Decimal(item["price"]), item["category"])
        for item in payload.get("items") or ()
    )
    return Order(None if amount is None else Decimal(amount), items)


def redemption_body(
    prior: PriorRedemption,
    coupon: Coupon,
    *,
    voided_at: datetime | None = None,
) -> dict[str, Any]:
    """A redemption as the API answers it (redeem, its replays, void)."""
    final = None
    if prior.order_amount is not None and prior.discount_amount is not None:
        final = prior.order_amount - prior.discount_amount
    return {
        "redemption_id": str(prior.redemption_id),
        "coupon_id": str(coupon.id),
        "coupon_code": prior.code,
        "participant_id": prior.participant_id,
        "order_id": prior.order_id,
        "order_amount": as_number(prior.order_amount),
        "discount_type": coupon.discount_type,
        "discount_amount": as_number(prior.discount_amount),
        "final_amount": as_number(final),
        "currency": coupon.currency,
        "status": "voided" if voided_at is not None else "redeemed",
        "redeemed_at": prior.redeemed_at.isoformat(),
        "voided_at": voided_at.isoformat() if voided_at is not None else None,
    }


def decide_redemptions(
    requests: list[RedeemRequest],
    codes: dict[str, CodeRow],
    coupons: dict[uuid.UUID, Coupon],
    uses: dict[tuple[uuid.UUID, str], int],
    returning: set[str],
    priors: dict[tuple[uuid.UUID, str], PriorRedemption],
    now: datetime,
    new_id: Callable[[], uuid.UUID] = uuid.uuid4,
) -> list[RedeemDecision]:
    """Each request's decision, in order. No I/O: it advances the state it is given (the
    coupons' usage counts, uses, codes held, returning customers, orders redeemed) as each
    redemption is accepted, so each gets the answer it would get alone."""
    used_codes = {code for code, row in codes.items() if row.redemption_id is not None}
    decisions: list[RedeemDecision] = []
    for request in requests:
        row = codes.get(request.code)
        coupon = coupons.get(row.coupon_id) if row is not None else None
        if row is None or coupon is None:
            decisions.append(invalid_coupon())
            continue
        # A replay of the order answers its first redemption, whatever changed since.
        ordered = (coupon.id, request.order_id)
        prior = priors.get(ordered)
        if prior is not None:
            same = prior.request_fingerprint == request.fingerprint
            decisions.append(prior if same else order_reused())
            continue
        counted = (coupon.id, request.participant_id)
        facts = UsageFacts(
            code_used=row.single_use and request.code in used_codes,
            participant_uses=uses.get(counted, 0),
            returning_customer=(
                request.participant_id in returning if new_customers_only(coupon) else None
            ),
        )
        refusal = coupon_refusal(coupon, facts, request.order, now)
        if refusal is not None:
            decisions.append(refusal)
            continue
        accepted = AcceptedRedemption(
            request,
            coupon,
            new_id(),
            compute_discount(coupon, request.order),
            row.single_use,
            now,
        )
        coupon.usage_count += 1
        uses[counted] = uses.get(counted, 0) + 1
        returning.add(request.participant_id)
        if row.single_use:
            used_codes.add(request.code)
        priors[ordered] = accepted.as_prior()
        decisions.append(accepted)
    return decisions
