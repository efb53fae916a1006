"""The coupon rules without a database: the refusals in the contract's order, the discount
of each type, and a batch of redemptions decided in order against the locked state."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from app.coupons.generation import random_codes
from app.coupons.redemption_decisions import (
    AcceptedRedemption,
    RedeemRequest,
    decide_redemptions,
)
from app.coupons.rules import Order, OrderItem, UsageFacts, compute_discount, coupon_refusal
from app.coupons.usage import CodeRow, PriorRedemption
from app.errors import DomainError
from app.models import Coupon

NOW = datetime(2026, 7, 1, 12, tzinfo=UTC)
NO_FACTS = UsageFacts()


def _coupon(**fields: Any) -> Coupon:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "code": "SUMMER25",
        "discount_type": "percentage",
        "discount_value": Decimal(25),
        "usage_count": 0,
        "active": True,
        **fields,
    }
    return Coupon(**values)


def _refusal(coupon: Coupon | None, facts: UsageFacts = NO_FACTS, **order: Any) -> str | None:
    found = coupon_refusal(coupon, facts, Order(**order), NOW)
    return found.code if found else None


@pytest.mark.parametrize(
    ("coupon_fields", "facts", "order", "expected"),
    [
        ({"active": False}, UsageFacts(), {}, "invalid_coupon"),
        ({"expires_at": NOW}, UsageFacts(), {}, "coupon_expired"),
        ({"starts_at": NOW + timedelta(seconds=1)}, UsageFacts(), {}, "coupon_not_started"),
        ({"usage_limit": 3, "usage_count": 3}, UsageFacts(), {}, "coupon_usage_limit"),
        (
            {"conditions": {"new_customers_only": True}},
            UsageFacts(returning_customer=True),
            {},
            "coupon_not_eligible",
        ),
        ({}, UsageFacts(code_used=True), {}, "coupon_already_used"),
        ({"usage_limit_per_user": 2}, UsageFacts(participant_uses=2), {}, "coupon_already_used"),
        (
            {"min_order_amount": Decimal(50)},
            UsageFacts(),
            {"amount": Decimal("49.99")},
            "coupon_min_order",
        ),
        ({"min_order_amount": Decimal(50)}, UsageFacts(), {}, "coupon_min_order"),
        ({"min_order_amount": Decimal(50)}, UsageFacts(), {"amount": Decimal(50)}, None),
        ({"usage_limit_per_user": 2}, UsageFacts(participant_uses=1), {}, None),
        (
            {"conditions": {"new_customers_only": True}},
            UsageFacts(returning_customer=False),
            {},
            None,
        ),
    ],
)
def test_each_refusal_applies_alone(
    coupon_fields: dict[str, Any], facts: UsageFacts, order: dict[str, Any], expected: str | None
) -> None:
    assert _refusal(_coupon(**coupon_fields), facts, **order) == expected


def test_an_unknown_code_is_invalid() -> None:
    assert _refusal(None) == "invalid_coupon"


def test_the_first_refusal_in_the_contracts_order_wins() -> None:
    """Every rule broken at once: each fix uncovers the next, in the documented order."""
    fields: dict[str, Any] = {
        "active": False,
        "expires_at": NOW - timedelta(days=1),
        "starts_at": NOW + timedelta(days=1),
        "usage_limit": 1,
        "usage_count": 1,
        "conditions": {"new_customers_only": True},
        "usage_limit_per_user": 1,
        "min_order_amount": Decimal(100),
    }
    facts = UsageFacts(code_used=True, participant_uses=1, returning_customer=True)
    fixes = [
        "active",
        "expires_at",
        "starts_at",
        "usage_limit",
        "conditions",
        "code_used",
        "usage_limit_per_user",
        "min_order_amount",
    ]
    seen = []
    for name in fixes:
        seen.append(_refusal(_coupon(**fields), facts, amount=Decimal(10)))
        if name == "code_used":
            facts = UsageFacts(participant_uses=1)
        else:
            fields[name] = True if name == "active" else None
    assert seen == [
        "invalid_coupon",
        "coupon_expired",
        "coupon_not_started",
        "coupon_usage_limit",
        "coupon_not_eligible",
        "coupon_already_used",
        "coupon_already_used",
        "coupon_min_order",
    ]
    assert _refusal(_coupon(**fields), facts, amount=Decimal(10)) is None


def test_the_minimum_is_named_with_its_currency() -> None:
    coupon = _coupon(min_order_amount=Decimal(50), currency="EUR")
    refusal = coupon_refusal(coupon, UsageFacts(), Order(Decimal(10)), NOW)
    assert isinstance(refusal, DomainError)
    assert refusal.detail == "This coupon needs an order of at least 50.00 EUR"


def _items(*units: tuple[str, int, str, str | None]) -> tuple[OrderItem, ...]:
    return tuple(
        OrderItem(product, quantity, Decimal(price), category)
        for product, quantity, price, category in units
    )


@pytest.mark.parametrize(
    ("coupon_fields", "order", "discount", "final"),
    [
        ({}, Order(Decimal(75)), "18.75", "56.25"),
        ({"max_discount_amount": Decimal(100)}, Order(Decimal(1000)), "100.00", "900.00"),
        ({"discount_value": Decimal("33.33")}, Order(Decimal("10.01")), "3.34", "6.67"),
        ({}, Order(), None, None),
        (
            {"discount_type": "fixed", "discount_value": Decimal(10)},
            Order(Decimal(25)),
            "10.00",
            "15.00",
        ),
        (
            {"discount_type": "fixed", "discount_value": Decimal(10)},
            Order(Decimal(4)),
            "4.00",
            "0.00",
        ),
        ({"discount_type": "fixed", "discount_value": Decimal(10)}, Order(), "10.00", None),
        (
            {"discount_type": "free_shipping", "discount_value": None},
            Order(Decimal(30)),
            "0.00",
            "30.00",
        ),
        (
            {"discount_type": "buy_x_get_y", "buy_quantity": 2, "get_quantity": 1},
            Order(items=_items(("shirt", 2, "20", None), ("socks", 1, "5", None))),
            "5.00",
            "40.00",
        ),
        (
            # Six units: two groups of three, the two cheapest units free.
            {"discount_type": "buy_x_get_y", "buy_quantity": 2, "get_quantity": 1},
            Order(items=_items(("a", 3, "10", None), ("b", 2, "4", None), ("c", 1, "7", None))),
            "8.00",
            "37.00",
        ),
        (
            {"discount_type": "buy_x_get_y", "buy_quantity": 2, "get_quantity": 1},
            Order(items=_items(("a", 2, "10", None))),
            "0.00",
            "20.00",
        ),
        (
            {"discount_type": "buy_x_get_y", "buy_quantity": 1, "get_quantity": 1},
            Order(Decimal(9)),
            None,
            None,
        ),
        (
            # Only the summer collection is discounted; the order total still counts.
            {"applicable_to": ["summer"]},
            Order(Decimal(100), _items(("hat", 1, "40", "summer"), ("coat", 1, "60", "winter"))),
            "10.00",
            "90.00",
        ),
        (
            {
                "discount_type": "buy_x_get_y",
                "buy_quantity": 1,
                "get_quantity": 1,
                "applicable_to": ["hat"],
            },
            Order(items=_items(("hat", 2, "15", None), ("pin", 2, "1", None))),
            "15.00",
            "17.00",
        ),
    ],
)
def test_discount_of_each_type(
    coupon_fields: dict[str, Any], order: Order, discount: str | None, final: str | None
) -> None:
    computed = compute_discount(_coupon(**coupon_fields), order)
    assert computed.amount == (None if discount is None else Decimal(discount))
    assert computed.final_amount == (None if final is None else Decimal(final))


def _request(code: str, participant: str, order_id: str, fingerprint: str = "f") -> RedeemRequest:
    return RedeemRequest(uuid.uuid4(), code, participant, order_id, Order(Decimal(40)), fingerprint)


def _decide(
    coupon: Coupon, requests: list[RedeemRequest], codes: dict[str, CodeRow], **state: Any
) -> list[Any]:
    ids = (uuid.UUID(int=n) for n in itertools.count(1))
    return decide_redemptions(
        requests,
        codes,
        {coupon.id: coupon},
        state.get("uses", {}),
        state.get("returning", set()),
        state.get("priors", {}),
        NOW,
        new_id=lambda: next(ids),
    )


def _outcome(decision: Any) -> str:
    if isinstance(decision, AcceptedRedemption):
        return "accepted"
    if isinstance(decision, PriorRedemption):
        return "replayed"
    return str(decision.code)


def test_a_batch_stops_at_the_usage_limit_and_counts_each_use() -> None:
    coupon = _coupon(usage_limit=2, usage_count=0)
    codes = {"SUMMER25": CodeRow("SUMMER25", coupon.id, False, None)}
    requests = [_request("SUMMER25", f"p{n}", f"o{n}") for n in range(4)]
    decisions = _decide(coupon, requests, codes)
    assert [_outcome(d) for d in decisions] == [
        "accepted",
        "accepted",
        "coupon_usage_limit",
        "coupon_usage_limit",
    ]
    assert coupon.usage_count == 2


def test_a_batch_keeps_the_per_user_limit_and_single_use_codes() -> None:
    coupon = _coupon(usage_limit_per_user=1)
    codes = {
        "SUMMER25": CodeRow("SUMMER25", coupon.id, False, None),
        "ONCE-A": CodeRow("ONCE-A", coupon.id, True, None),
        "ONCE-B": CodeRow("ONCE-B", coupon.id, True, uuid.uuid4()),
    }
    requests = [
        _request("SUMMER25", "ann", "o1"),
        _request("SUMMER25", "ann", "o2"),
        _request("ONCE-A", "bob", "o3"),
        _request("ONCE-A", "cat", "o4"),
        _request("ONCE-B", "dan", "o5"),
        _request("NOPE", "eve", "o6"),
    ]
    assert [_outcome(d) for d in _decide(coupon, requests, codes)] == [
        "accepted",
        "coupon_already_used",
        "accepted",
        "coupon_already_used",
        "coupon_already_used",
        "invalid_coupon",
    ]


def test_new_customers_only_refuses_a_second_redemption_in_the_same_batch() -> None:
    coupon = _coupon(conditions={"new_customers_only": True})
    codes = {"SUMMER25": CodeRow("SUMMER25", coupon.id, False, None)}
    requests = [_request("SUMMER25", "ann", "o1"), _request("SUMMER25", "ann", "o2")]
    decisions = _decide(coupon, requests, codes, returning={"old"})
    assert [_outcome(d) for d in decisions] == ["accepted", "coupon_not_eligible"]


def test_an_order_redeemed_before_replays_its_redemption_or_refuses_another_body() -> None:
    coupon = _coupon(usage_limit=1, usage_count=1)
    codes = {"SUMMER25": CodeRow("SUMMER25", coupon.id, False, None)}
    prior = PriorRedemption(
        uuid.uuid4(), coupon.id, "SUMMER25", "ann", "o1", Decimal(40), Decimal(10), "f", NOW
    )
    requests = [
        _request("SUMMER25", "ann", "o1", fingerprint="f"),
        _request("SUMMER25", "ann", "o1", fingerprint="other"),
    ]
    decisions = _decide(coupon, requests, codes, priors={(coupon.id, "o1"): prior})
    assert decisions[0] is prior
    assert _outcome(decisions[1]) == "IDEMPOTENCY_KEY_REUSED"
    assert decisions[1].status == 422


def test_a_repeated_order_in_one_batch_replays_the_first() -> None:
    coupon = _coupon()
    codes = {"SUMMER25": CodeRow("SUMMER25", coupon.id, False, None)}
    requests = [_request("SUMMER25", "ann", "o1"), _request("SUMMER25", "ann", "o1")]
    first, second = _decide(coupon, requests, codes)
    assert isinstance(first, AcceptedRedemption) and isinstance(second, PriorRedemption)
    assert second.redemption_id == first.redemption_id
    assert coupon.usage_count == 1


def test_generated_codes_use_the_unambiguous_alphabet_and_length() -> None:
    codes = random_codes(20_000, 10, "SUM26-")
    assert all(len(code) == 16 and code.startswith("SUM26-") for code in codes)
    letters = set("".join(code[6:] for code in codes))
    assert letters == set("ABCDEFGHJKMNPQRSTUVWXYZ23456789")
    assert len(set(codes)) == len(codes)
