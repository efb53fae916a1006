"""The coupon rules: whether a code may be used now, and the discount it gives. Pure:
validate (web process) and redeem (the worker's batch, under the coupon's lock) read the
facts, these decide, so both always give the same answer for the same facts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from app.errors import DomainError
from app.models import Coupon

CENT = Decimal("0.01")
HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class OrderItem:
    product_id: str
    quantity: int
    price: Decimal  # of one unit
    category: str | None = None


@dataclass(frozen=True, slots=True)
class Order:
    """What a validate or redeem request says of the order (amount and items optional)."""

    amount: Decimal | None = None
    items: tuple[OrderItem, ...] = ()

    @property
    def total(self) -> Decimal | None:
        """The order's amount: as given, else the items' sum, else unknown."""
        if self.amount is not None:
            return self.amount
        if self.items:
            return sum((item.price * item.quantity for item in self.items), Decimal(0))
        return None


@dataclass(frozen=True, slots=True)
class UsageFacts:
    """What the rules read beside the coupon, as of the read (or the lock)."""

    code_used: bool = False  # a single-use code that a live redemption holds
    # The participant's live redemptions of the coupon; None when no participant is named.
    participant_uses: int | None = None
    # Whether the participant redeemed any coupon or claimed any reward before (read only
    # for new_customers_only coupons; None when unknown or not read).
    returning_customer: bool | None = None


@dataclass(frozen=True, slots=True)
class Discount:
    amount: Decimal | None  # None: the order says too little to compute it
    final_amount: Decimal | None


def invalid_coupon() -> DomainError:
    return DomainError("invalid_coupon", "Coupon code is invalid")


def as_number(value: Decimal | None) -> float | None:
    """An amount as a JSON number (cents are exact in a double up to 2**53)."""
    return None if value is None else float(value)


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _minimum_text(coupon: Coupon) -> str:
    minimum = f"{money(coupon.min_order_amount or Decimal(0))}"
    return f"{minimum} {coupon.currency}" if coupon.currency else minimum


def coupon_refusal(
    coupon: Coupon | None, facts: UsageFacts, order: Order, now: datetime
) -> DomainError | None:
    """Why the code cannot be used now, the first that applies in the contract's order;
    None if it can. `coupon` is None for a code that names none."""
    if coupon is None or not coupon.active:
        return invalid_coupon()
    if coupon.expires_at is not None and coupon.expires_at <= now:
        return DomainError("coupon_expired", "Coupon has expired")
    if coupon.starts_at is not None and coupon.starts_at > now:
        return DomainError(
            "coupon_not_started", f"Coupon is valid from {coupon.starts_at.isoformat()}"
        )
    if coupon.usage_limit is not None and coupon.usage_count >= coupon.usage_limit:
        return DomainError("coupon_usage_limit", "Coupon usage limit reached")
    if new_customers_only(coupon) and facts.returning_customer:
        return DomainError("coupon_not_eligible", "This coupon is for new customers only")
    if facts.code_used:
        return DomainError("coupon_already_used", "This code has already been used")
    limit = coupon.usage_limit_per_user
    if limit is not None and facts.participant_uses is not None and facts.participant_uses >= limit:
        return DomainError("coupon_already_used", "User already used this coupon")
    total = order.total
    if coupon.min_order_amount is not None and (total is None or total < coupon.min_order_amount):
        return DomainError(
            "coupon_min_order", f"This coupon needs an order of at least {_minimum_text(coupon)}"
        )
    return None


def new_customers_only(coupon: Coupon) -> bool:
    return bool((coupon.conditions or {}).get("new_customers_only"))


def _applies_to(coupon: Coupon, item: OrderItem) -> bool:
    scope = coupon.applicable_to
    return not scope or item.product_id in scope or (item.category in scope)


def _cheapest_units_free(items: Sequence[OrderItem], buy: int, get: int) -> Decimal:
    """Buy `buy`, get `get` free: of every buy + get units, the `get` cheapest are free."""
    units = sum(item.quantity for item in items)
    free = units // (buy + get) * get
    discount = Decimal(0)
    for item in sorted(items, key=lambda item: item.price):
        taken = min(free, item.quantity)
        discount += item.price * taken
        free -= taken
        if free == 0:
            break
    return discount


def compute_discount(coupon: Coupon, order: Order) -> Discount:
    """The discount for `order`: of its applicable items' value when the coupon names
    products or categories and the order lists items, else of the order's amount; capped by
    max_discount_amount and by the order itself. Free shipping discounts nothing from the
    amount (the caller waives the shipping)."""
    total = order.total
    applicable = [item for item in order.items if _applies_to(coupon, item)]
    base = total
    if coupon.applicable_to and order.items:
        base = sum((item.price * item.quantity for item in applicable), Decimal(0))
    value = coupon.discount_value or Decimal(0)
    amount: Decimal | None
    if coupon.discount_type == "percentage":
        amount = None if base is None else base * value / HUNDRED
    elif coupon.discount_type == "fixed":
        amount = value if base is None else min(value, base)
    elif coupon.discount_type == "free_shipping":
        amount = Decimal(0)
    else:  # buy_x_get_y
        buy, get = coupon.buy_quantity or 1, coupon.get_quantity or 1
        amount = _cheapest_units_free(applicable, buy, get) if order.items else None
    if amount is None:
        return Discount(None, None)
    if coupon.max_discount_amount is not None:
        amount = min(amount, coupon.max_discount_amount)
    if total is not None:
        amount = min(amount, total)
    amount = money(amount)
    return Discount(amount, None if total is None else money(total - amount))
