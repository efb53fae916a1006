"""23blocks Coupons API: create, list, get, validate, redeem, and batches of unique codes,
over the native coupon definitions, rules, redemptions and code generation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from flask import Blueprint, Response
from pydantic import AwareDatetime, Field

from api.auth import current_principal
from api.blocks.jsonapi import (
    PREFIX,
    Attributes,
    Document,
    Kebab,
    Many,
    PageMeta,
    PageQuery,
    Single,
    UnnamedSingle,
    document_code,
    native_model,
    one,
    resource,
)
from api.blocks.limits import Family, take_family_unit
from api.blocks.writes import (
    WRITE_ERRORS,
    WRITE_HEADERS,
    AcceptedDocument,
    dialect_write,
    translates,
)
from api.coupons.participant import REFUSALS, order_payload
from api.coupons.schemas import (
    Amount,
    CouponCreate,
    DiscountType,
    OwnCode,
    Quantity,
    RedeemRequest,
    ScopeId,
    TypedCode,
    ValidateRequest,
)
from api.endpoint import Access, endpoint
from api.points.schemas import ParticipantId
from api.runtime import runtime
from app.coupons.definitions import create_coupon, get_coupon, list_coupons
from app.coupons.redemption_batches import REDEEM_KIND
from app.coupons.rules import as_number
from app.coupons.validation import validate_code
from app.models import Coupon

bp = Blueprint("blocks_coupons", __name__, url_prefix=PREFIX)

TAG = "23blocks: coupons"
NOT_FOUND = {404: ("coupon_not_found",)}
Limit = Annotated[int, Field(ge=1, le=1_000_000_000)]
# The document's coupon fields, by the native field each one is (a refusal points at it).
COUPON_ATTRIBUTES = {
    "usage_limit_per_user": "per-user-limit",
    "applicable_to": "conditions",
    "conditions": "conditions",
}


class ConditionsAttributes(Attributes):
    categories: list[ScopeId] | None = Field(
        default=None, max_length=1000, description="The categories the discount applies to"
    )
    new_customers_only: bool = False


class CouponTerms(Attributes):
    """What a coupon gives and on what terms: a coupon's, or a generated batch's."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    discount_type: DiscountType
    discount_value: Amount | None = None
    min_order_amount: Amount | None = None
    max_discount_amount: Amount | None = None
    usage_limit: Limit | None = None
    per_user_limit: Limit | None = None
    starts_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    conditions: ConditionsAttributes | None = None


class CouponAttributes(CouponTerms):
    code: OwnCode | None = Field(default=None, description="Omitted: a random code")
    active: bool = True


CouponDocument = Document[Literal["coupon"], CouponAttributes]


class ConditionsOut(Kebab):
    categories: list[str]
    new_customers_only: bool


class CouponOut(Kebab):
    code: str
    name: str | None
    description: str | None
    discount_type: DiscountType
    discount_value: float | None
    min_order_amount: float | None
    max_discount_amount: float | None
    usage_limit: int | None
    usage_count: int
    per_user_limit: int | None
    starts_at: datetime | None
    expires_at: datetime | None
    conditions: ConditionsOut
    active: bool
    created_at: datetime


CouponResource = Single[Literal["coupon"], CouponOut]


def coupon_attributes(coupon: Coupon) -> CouponOut:
    return CouponOut(
        code=coupon.code,
        name=coupon.name,
        description=coupon.description,
        discount_type=coupon.discount_type,  # type: ignore[arg-type]
        discount_value=as_number(coupon.discount_value),
        min_order_amount=as_number(coupon.min_order_amount),
        max_discount_amount=as_number(coupon.max_discount_amount),
        usage_limit=coupon.usage_limit,
        usage_count=coupon.usage_count,
        per_user_limit=coupon.usage_limit_per_user,
        starts_at=coupon.starts_at,
        expires_at=coupon.expires_at,
        conditions=ConditionsOut(
            categories=coupon.applicable_to or [],
            new_customers_only=bool((coupon.conditions or {}).get("new_customers_only")),
        ),
        active=coupon.active,
        created_at=coupon.created_at,
    )


def native_terms(attributes: Any, **more: Any) -> CouponCreate:
    """The native coupon the document's terms make: per-user-limit is the native
    usage_limit_per_user, conditions.categories its applicable_to."""
    conditions = getattr(attributes, "conditions", None)
    return native_model(
        CouponCreate,
        COUPON_ATTRIBUTES,
        discount_type=attributes.discount_type,
        discount_value=attributes.discount_value,
        min_order_amount=attributes.min_order_amount,
        max_discount_amount=attributes.max_discount_amount,
        usage_limit=attributes.usage_limit,
        usage_limit_per_user=attributes.per_user_limit,
        starts_at=attributes.starts_at,
        expires_at=attributes.expires_at,
        conditions={"new_customers_only": conditions.new_customers_only} if conditions else None,
        applicable_to=conditions.categories if conditions else None,
        **more,
    )


@endpoint(
    bp,
    "POST",
    "/coupons",
    summary="Create a coupon",
    tag=TAG,
    access=Access.ADMIN,
    body=CouponDocument,
    responses={201: CouponResource},
    errors={409: ("code_taken",), 422: ("validation_error",)},
)
def blocks_create_coupon(body: CouponDocument) -> tuple[dict[str, Any], int]:
    attributes = body.attributes
    terms = native_terms(attributes, code=attributes.code, active=attributes.active)
    fields = terms.fields(sent_only=False)
    code, code_prefix = fields.pop("code"), fields.pop("code_prefix")
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        coupon = create_coupon(
            session,
            principal.tenant_id,
            principal.env,
            {**fields, "name": attributes.name, "description": attributes.description},
            code=code,
            code_prefix=code_prefix,
        )
        return one("coupon", str(coupon.id), coupon_attributes(coupon)), 201


class CouponsQuery(PageQuery):
    filter_active: bool | None = Field(default=None, alias="filter[active]")
    filter_expires_after: AwareDatetime | None = Field(
        default=None,
        alias="filter[expires-after]",
        description="Coupons that expire after this instant, or never",
    )
    search: str | None = Field(
        default=None, min_length=1, max_length=100, description="A part of the code or the name"
    )


@endpoint(
    bp,
    "GET",
    "/coupons",
    summary="List coupons, newest first",
    tag=TAG,
    access=Access.ADMIN,
    query=CouponsQuery,
    responses={200: Many[Literal["coupon"], CouponOut, PageMeta]},
)
def blocks_list_coupons(query: CouponsQuery) -> tuple[dict[str, Any], int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        coupons, total = list_coupons(
            session,
            principal.tenant_id,
            principal.env,
            active=query.filter_active,
            campaign=None,
            offset=query.offset,
            limit=query.page_size,
            expires_after=query.filter_expires_after,
            search=query.search,
        )
        data = [resource("coupon", str(coupon.id), coupon_attributes(coupon)) for coupon in coupons]
    meta = PageMeta(**query.meta_counts(total))
    return {"data": data, "meta": meta}, 200


@endpoint(
    bp,
    "GET",
    "/coupons/<id_or_code>",
    summary="Get a coupon by id or by code (its own or a generated one)",
    tag=TAG,
    access=Access.ADMIN,
    responses={200: CouponResource},
    errors=NOT_FOUND,
)
def blocks_get_coupon(id_or_code: str) -> tuple[dict[str, Any], int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        coupon = get_coupon(session, principal.tenant_id, principal.env, id_or_code)
        return one("coupon", str(coupon.id), coupon_attributes(coupon)), 200


class ItemAttributes(Attributes):
    product_id: ScopeId
    category: ScopeId | None = None
    quantity: Quantity
    price: Amount = Field(description="Of one unit")


class ValidationAttributes(Attributes):
    code: TypedCode
    user_id: ParticipantId
    order_amount: Amount | None = None
    items: list[ItemAttributes] | None = Field(default=None, max_length=500)


ValidationDocument = Document[Literal["coupon-validation"], ValidationAttributes]
ORDER_ATTRIBUTES = {"participant_id": "user-id"}


def _items(attributes: ValidationAttributes | RedemptionAttributes) -> list[dict[str, Any]] | None:
    if attributes.items is None:
        return None
    return [item.model_dump() for item in attributes.items]


class ValidationResult(Kebab):
    valid: bool
    coupon_code: str
    discount_type: DiscountType | None = None
    discount_value: float | None = None
    discount_amount: float | None = None
    final_amount: float | None = None
    error_code: str | None = Field(
        default=None,
        description="invalid_coupon, coupon_expired, coupon_usage_limit, coupon_already_used "
        "(the document's table), or the engine's own: coupon_not_started, "
        "coupon_not_eligible, coupon_min_order",
    )
    message: str


@endpoint(
    bp,
    "POST",
    "/coupons/validate",
    summary="Check a coupon for a user and an order (200 with the result, valid or not)",
    tag=TAG,
    access=Access.PARTICIPANT,
    body=ValidationDocument,
    responses={200: UnnamedSingle[Literal["coupon-validation-result"], ValidationResult]},
    errors={422: ("validation_error",), 429: ("rate_limit_exceeded",)},
)
def blocks_validate_coupon(body: ValidationDocument) -> tuple[dict[str, Any], int]:
    attributes = body.attributes
    take_family_unit(Family.COUPON_VALIDATION, attributes.user_id)
    request = native_model(
        ValidateRequest,
        ORDER_ATTRIBUTES,
        code=attributes.code,
        participant_id=attributes.user_id,
        order_amount=attributes.order_amount,
        items=_items(attributes),
    )
    principal = current_principal()
    payload = {**order_payload(request), "participant_id": request.participant_id}
    with runtime().session_factory() as session:
        answer = validate_code(session, principal.tenant_id, principal.env, payload)
    if answer.get("error_code") is not None:
        answer["error_code"] = document_code(answer["error_code"])
    answer.pop("currency", None)
    result = ValidationResult.model_validate(answer)
    return {"data": {"type": "coupon-validation-result", "attributes": result}}, 200


class RedemptionAttributes(Attributes):
    code: TypedCode
    user_id: ParticipantId
    order_id: str = Field(min_length=1, max_length=255)
    discount_amount: Amount | None = Field(
        default=None,
        description="What the caller computed; the answer has the engine's own, from "
        "order-amount (or items) when sent",
    )
    order_amount: Amount | None = None
    items: list[ItemAttributes] | None = Field(default=None, max_length=500)


RedemptionDocument = Document[Literal["coupon-redemption"], RedemptionAttributes]


class RedemptionOut(Kebab):
    code: str
    coupon_id: str
    user_id: str
    order_id: str
    order_amount: float | None
    discount_type: DiscountType
    discount_amount: float | None
    final_amount: float | None
    status: Literal["redeemed", "voided"]
    redeemed_at: datetime


RedemptionResource = Single[Literal["coupon-redemption"], RedemptionOut]


@translates(REDEEM_KIND)
def _redemption_document(result: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    attributes = RedemptionOut(
        code=result["coupon_code"],
        coupon_id=result["coupon_id"],
        user_id=result["participant_id"],
        order_id=result["order_id"],
        order_amount=result["order_amount"],
        discount_type=result["discount_type"],
        discount_amount=result["discount_amount"],
        final_amount=result["final_amount"],
        status=result["status"],
        redeemed_at=result["redeemed_at"],
    )
    return one("coupon-redemption", result["redemption_id"], attributes)


@endpoint(
    bp,
    "POST",
    "/coupons/redeem",
    summary="Record a coupon's use for an order (the same order-id replays its first redemption)",
    tag=TAG,
    access=Access.PARTICIPANT,
    body=RedemptionDocument,
    responses={201: RedemptionResource, 202: AcceptedDocument},
    errors={
        400: ("IDEMPOTENCY_KEY_INVALID", *(document_code(code) for code in REFUSALS)),
        422: WRITE_ERRORS[422],
    },
    headers=WRITE_HEADERS,
    write=True,
)
def blocks_redeem_coupon(body: RedemptionDocument) -> Response:
    attributes = body.attributes
    request = native_model(
        RedeemRequest,
        ORDER_ATTRIBUTES,
        code=attributes.code,
        participant_id=attributes.user_id,
        order_id=attributes.order_id,
        order_amount=attributes.order_amount,
        items=_items(attributes),
    )
    payload = {
        **order_payload(request),
        "participant_id": request.participant_id,
        "order_id": request.order_id,
    }
    return dialect_write(REDEEM_KIND, payload)
