"""Request and response models of the coupon endpoints (native API, Bricqs style)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from api.rewards.schemas import ParticipantId
from api.schemas import PageQuery, RequestModel, kept_when_absent

DiscountType = Literal["percentage", "fixed", "free_shipping", "buy_x_get_y"]
# Amounts: up to a trillion, in cents at most (what the columns hold).
AMOUNT_MAX = 10**12
Amount = Annotated[Decimal, Field(ge=0, le=AMOUNT_MAX, max_digits=14, decimal_places=2)]
Quantity = Annotated[int, Field(ge=1, le=1_000_000)]
Limit = Annotated[int, Field(ge=1, le=1_000_000_000)]
# A code as it is created: letters, digits, - and _ (stored upper-case).
OwnCode = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$")]
CodePrefix = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,19}$")]
# A code as a customer types it: anything; one that names no coupon is invalid_coupon.
TypedCode = Annotated[str, Field(min_length=1, max_length=255)]
ScopeId = Annotated[str, Field(min_length=1, max_length=255)]


class Conditions(RequestModel):
    new_customers_only: bool = Field(
        default=False,
        description="Only for a participant with no earlier redemption and no earlier claim",
    )


class CouponFields(RequestModel):
    """What create and PATCH share (PATCH: all optional, only the fields sent change)."""

    campaign: str | None = Field(default=None, min_length=1, max_length=100)
    discount_value: Amount | None = Field(
        default=None, description="percentage: 0-100; fixed: the amount off; else unused"
    )
    buy_quantity: Quantity | None = Field(default=None, description="buy_x_get_y: units bought")
    get_quantity: Quantity | None = Field(default=None, description="buy_x_get_y: units free")
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    min_order_amount: Amount | None = None
    max_discount_amount: Amount | None = None
    conditions: Conditions | None = None
    usage_limit: Limit | None = Field(default=None, description="Total uses, all codes; null: none")
    usage_limit_per_user: Limit | None = Field(default=None, description="null: no limit")
    starts_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    applicable_to: list[ScopeId] | None = Field(
        default=None,
        max_length=1000,
        description="Product or category ids the discount applies to (when items are sent)",
    )
    metadata: dict[str, Any] | None = None

    def fields(self, *, sent_only: bool) -> dict[str, Any]:
        """The model's values under the domain's field names (app.coupons.definitions)."""
        values = self.model_dump(exclude_unset=sent_only)
        if "metadata" in values:
            values["coupon_metadata"] = values.pop("metadata")
        return values


class CouponCreate(CouponFields):
    code: OwnCode | None = Field(
        default=None, description="The coupon's code; omitted: code_prefix and random letters"
    )
    code_prefix: CodePrefix = ""
    discount_type: DiscountType
    active: bool = True


class CouponUpdate(CouponFields):
    discount_type: DiscountType | None = kept_when_absent("The discount's kind")
    active: bool | None = kept_when_absent("false deactivates, true reactivates")

    @model_validator(mode="after")
    def _required_fields_are_not_null(self) -> CouponUpdate:
        for name in ("discount_type", "active"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class CouponConditions(BaseModel):
    new_customers_only: bool


class CouponView(BaseModel):
    id: str
    code: str
    campaign: str | None
    discount_type: DiscountType
    discount_value: float | None
    buy_quantity: int | None
    get_quantity: int | None
    currency: str | None
    min_order_amount: float | None
    max_discount_amount: float | None
    conditions: CouponConditions
    usage_limit: int | None
    usage_limit_per_user: int | None
    usage_count: int = Field(description="Live redemptions (voided ones given back)")
    active: bool
    starts_at: AwareDatetime | None
    expires_at: AwareDatetime | None
    applicable_to: list[str]
    metadata: dict[str, Any] | None
    created_at: AwareDatetime
    updated_at: AwareDatetime | None


class CouponList(BaseModel):
    coupons: list[CouponView]
    total: int
    page: int
    page_size: int


class CouponsQuery(PageQuery):
    active: bool | None = None
    campaign: str | None = Field(default=None, min_length=1, max_length=100)


class OrderItemBody(RequestModel):
    product_id: ScopeId
    category: ScopeId | None = None
    quantity: Quantity
    price: Amount = Field(description="Of one unit")


class OrderFields(RequestModel):
    code: TypedCode
    order_amount: Amount | None = None
    items: list[OrderItemBody] | None = Field(
        default=None, max_length=500, description="For buy_x_get_y and applicable_to"
    )

    @model_validator(mode="after")
    def _items_fit_an_amount(self) -> OrderFields:
        # The items' sum stands for the order amount when none is given: the same bound.
        total = sum((item.price * item.quantity for item in self.items or ()), Decimal(0))
        if total > AMOUNT_MAX:
            raise ValueError(f"the items' total must be at most {AMOUNT_MAX}")
        return self


class ValidateRequest(OrderFields):
    participant_id: str | None = Field(
        default=None, min_length=1, max_length=255, description="For the participant's limits"
    )


class ValidateResult(BaseModel):
    valid: bool
    coupon_code: str
    discount_type: DiscountType | None = None
    discount_value: float | None = None
    discount_amount: float | None = Field(
        default=None, description="null when the order says too little to compute it"
    )
    final_amount: float | None = None
    currency: str | None = None
    error_code: str | None = None
    message: str


class RedeemRequest(OrderFields):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "code": "SUMMER25",
                    "participant_id": "user_42",
                    "order_id": "order-1042",
                    "order_amount": 80.0,
                }
            ]
        }
    )
    participant_id: str = ParticipantId
    order_id: str = Field(min_length=1, max_length=255)
    idempotency_key: str | None = Field(
        default=None, description="Alternative to the Idempotency-Key header"
    )


class Redemption(BaseModel):
    redemption_id: str
    coupon_id: str
    coupon_code: str = Field(description="The code used (the coupon's own or a generated one)")
    participant_id: str
    order_id: str
    order_amount: float | None
    discount_type: DiscountType
    discount_amount: float | None
    final_amount: float | None
    currency: str | None
    status: Literal["redeemed", "voided"]
    redeemed_at: AwareDatetime
    voided_at: AwareDatetime | None


class GenerateRequest(RequestModel):
    count: int = Field(ge=1, le=1_000_000)
    prefix: CodePrefix = ""
    length: int = Field(default=10, ge=6, le=32, description="Random characters after the prefix")


class GeneratedCode(BaseModel):
    code: str
    used: bool
    redemption_id: str | None


class GeneratedCodes(BaseModel):
    codes: list[GeneratedCode]
    total: int
    page: int
    page_size: int
