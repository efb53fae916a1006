"""Coupons as an admin defines them: create, read (by id or by any of its codes), change,
deactivate; and the listing of a coupon's generated codes.

The callers check the fields' shapes (api.coupons.schemas); this checks what needs the
whole coupon (a discount type's own fields, the window) and keeps the coupon's own code
in coupon_codes, where every code of the tenant environment is unique.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.coupons.rules import as_number, new_customers_only
from app.errors import Conflict, DomainError, NotFound
from app.infra.pgcopy import fetch_tuples
from app.models import Coupon, CouponCode
from app.text import holds_nul, random_code

# The random part of a coupon's own code when none is given: ~50 bits.
OWN_CODE_RANDOM_CHARS = 10
# The fields a PATCH may change (the code, the live usage_count, created_at may not).
COUPON_FIELDS = (
    "campaign",
    "discount_type",
    "discount_value",
    "buy_quantity",
    "get_quantity",
    "currency",
    "min_order_amount",
    "max_discount_amount",
    "conditions",
    "usage_limit",
    "usage_limit_per_user",
    "active",
    "starts_at",
    "expires_at",
    "applicable_to",
    "coupon_metadata",
)


def coupon_not_found() -> NotFound:
    return NotFound("coupon_not_found", "No coupon exists with this id or code")


def code_taken() -> Conflict:
    return Conflict("code_taken", "This code is already in use by a coupon")


def normalize_code(code: str) -> str:
    """Codes are matched without regard to case or surrounding blanks (people type them)."""
    return code.strip().upper()


def _invalid(detail: str) -> DomainError:
    return DomainError("validation_error", detail, 422)


def check_terms(fields: dict[str, Any]) -> None:
    """Refuse a coupon whose fields do not make one discount (its type's own fields) or
    whose window is empty. `fields` holds every COUPON_FIELDS value."""
    kind, value = fields["discount_type"], fields["discount_value"]
    if kind == "percentage" and (value is None or not Decimal(0) < value <= 100):
        raise _invalid("A percentage coupon needs discount_value above 0 and at most 100")
    if kind == "fixed" and (value is None or value <= 0):
        raise _invalid("A fixed coupon needs discount_value above 0")
    if kind == "buy_x_get_y" and (fields["buy_quantity"] is None or fields["get_quantity"] is None):
        raise _invalid("A buy_x_get_y coupon needs buy_quantity and get_quantity")
    if kind != "buy_x_get_y" and (
        fields["buy_quantity"] is not None or fields["get_quantity"] is not None
    ):
        raise _invalid("buy_quantity and get_quantity belong to buy_x_get_y coupons")
    starts_at, expires_at = fields["starts_at"], fields["expires_at"]
    if starts_at is not None and expires_at is not None and expires_at <= starts_at:
        raise _invalid("expires_at must be later than starts_at")


def coupon_fields(coupon: Coupon) -> dict[str, Any]:
    return {name: getattr(coupon, name) for name in COUPON_FIELDS}


# The code row of a new coupon; nothing when the code is taken (by any coupon).
_CLAIM_CODE = """
    INSERT INTO coupon_codes (tenant_id, env, code, coupon_id, single_use)
    VALUES (%(tenant_id)s, %(env)s, %(code)s, %(coupon_id)s, false)
    ON CONFLICT DO NOTHING
    RETURNING code
"""


def _claim_code(session: Session, coupon: Coupon, code: str) -> bool:
    params = {
        "tenant_id": coupon.tenant_id,
        "env": coupon.env,
        "code": code,
        "coupon_id": coupon.id,
    }
    return bool(fetch_tuples(session, _CLAIM_CODE, params))


def create_coupon(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    fields: dict[str, Any],
    *,
    code: str | None,
    code_prefix: str,
) -> Coupon:
    """Create a coupon with `code`, or a random one after `code_prefix`; 409 code_taken
    when the code is any coupon's."""
    check_terms(fields)
    coupon = Coupon(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        env=env,
        code="",
        usage_count=0,
        created_at=utcnow(),
        **fields,
    )
    if code is not None:
        coupon.code = normalize_code(code)
        if not _claim_code(session, coupon, coupon.code):
            raise code_taken()
    else:
        # A clash of ~50 random bits is out of reach, but the key has the last word.
        coupon.code = random_code(OWN_CODE_RANDOM_CHARS, code_prefix)
        while not _claim_code(session, coupon, coupon.code):
            coupon.code = random_code(OWN_CODE_RANDOM_CHARS, code_prefix)
    session.add(coupon)
    session.flush()
    return coupon


def _parse_id(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def get_coupon(
    session: Session, tenant_id: uuid.UUID, env: str, id_or_code: str, *, lock: bool = False
) -> Coupon:
    """The coupon with this id, or with this code (its own or one generated for it)."""
    if holds_nul(id_or_code):
        raise coupon_not_found()  # a path PostgreSQL could not even compare
    query = select(Coupon).where(Coupon.tenant_id == tenant_id, Coupon.env == env)
    coupon_id = _parse_id(id_or_code)
    if coupon_id is not None:
        query = query.where(Coupon.id == coupon_id)
    else:
        query = query.join(CouponCode, CouponCode.coupon_id == Coupon.id).where(
            CouponCode.tenant_id == tenant_id,
            CouponCode.env == env,
            CouponCode.code == normalize_code(id_or_code),
        )
    if lock:
        # A change reads the coupon as the last change or redemption left it.
        query = query.with_for_update(of=Coupon)
    coupon = session.execute(query).scalar_one_or_none()
    if coupon is None:
        raise coupon_not_found()
    return coupon


def update_coupon(
    session: Session, tenant_id: uuid.UUID, env: str, id_or_code: str, changes: dict[str, Any]
) -> Coupon:
    unknown = set(changes) - set(COUPON_FIELDS)
    if unknown:
        raise ValueError(f"not coupon fields: {sorted(unknown)}")
    coupon = get_coupon(session, tenant_id, env, id_or_code, lock=True)
    check_terms({**coupon_fields(coupon), **changes})
    if "expires_at" in changes and changes["expires_at"] != coupon.expires_at:
        coupon.expired_event_at = None  # a new expiry is announced again when it comes
    for name, value in changes.items():
        setattr(coupon, name, value)
    coupon.updated_at = utcnow()
    session.flush()
    return coupon


def deactivate_coupon(session: Session, tenant_id: uuid.UUID, env: str, id_or_code: str) -> Coupon:
    return update_coupon(session, tenant_id, env, id_or_code, {"active": False})


def list_coupons(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    *,
    active: bool | None,
    campaign: str | None,
    offset: int,
    limit: int,
    expires_after: datetime | None = None,
    search: str | None = None,
) -> tuple[list[Coupon], int]:
    """Newest first, with the total that matches. `expires_after`: coupons that expire
    after it or never; `search`: a part of the coupon's own code or of its name."""
    conditions = [Coupon.tenant_id == tenant_id, Coupon.env == env]
    if active is not None:
        conditions.append(Coupon.active.is_(active))
    if campaign is not None:
        conditions.append(Coupon.campaign == campaign)
    if expires_after is not None:
        conditions.append(or_(Coupon.expires_at.is_(None), Coupon.expires_at > expires_after))
    if search is not None:
        conditions.append(
            or_(
                Coupon.code.icontains(search, autoescape=True),
                Coupon.name.icontains(search, autoescape=True),
            )
        )
    total = session.execute(select(func.count()).select_from(Coupon).where(*conditions))
    coupons = session.execute(
        select(Coupon)
        .where(*conditions)
        .order_by(Coupon.created_at.desc(), Coupon.id)
        .offset(offset)
        .limit(limit)
    ).scalars()
    return list(coupons), int(total.scalar_one())


def coupon_view(coupon: Coupon) -> dict[str, Any]:
    return {
        "id": str(coupon.id),
        "code": coupon.code,
        "campaign": coupon.campaign,
        "discount_type": coupon.discount_type,
        "discount_value": as_number(coupon.discount_value),
        "buy_quantity": coupon.buy_quantity,
        "get_quantity": coupon.get_quantity,
        "currency": coupon.currency,
        "min_order_amount": as_number(coupon.min_order_amount),
        "max_discount_amount": as_number(coupon.max_discount_amount),
        "conditions": {"new_customers_only": new_customers_only(coupon)},
        "usage_limit": coupon.usage_limit,
        "usage_limit_per_user": coupon.usage_limit_per_user,
        "usage_count": coupon.usage_count,
        "active": coupon.active,
        "starts_at": coupon.starts_at,
        "expires_at": coupon.expires_at,
        "applicable_to": coupon.applicable_to or [],
        "metadata": coupon.coupon_metadata,
        "created_at": coupon.created_at,
        "updated_at": coupon.updated_at,
    }


# A page of a coupon's generated codes in code order, after `after` (keyset: the CSV
# export reads a million codes a page at a time without counting past them).
_CODES_AFTER = """
    SELECT code, redemption_id FROM coupon_codes
    WHERE coupon_id = %(coupon_id)s AND single_use AND code > %(after)s
    ORDER BY code
    LIMIT %(limit)s
"""
_CODES_PAGE = """
    SELECT code, redemption_id FROM coupon_codes
    WHERE coupon_id = %(coupon_id)s AND single_use
    ORDER BY code
    OFFSET %(offset)s LIMIT %(limit)s
"""
_CODES_COUNT = "SELECT count(*) FROM coupon_codes WHERE coupon_id = %(coupon_id)s AND single_use"


def generated_codes_after(
    session: Session, coupon_id: uuid.UUID, after: str, limit: int
) -> Sequence[Any]:
    """(code, redemption_id) rows of the coupon's generated codes after `after`."""
    return fetch_tuples(
        session, _CODES_AFTER, {"coupon_id": coupon_id, "after": after, "limit": limit}
    )


def generated_codes_page(
    session: Session, coupon_id: uuid.UUID, offset: int, limit: int
) -> tuple[Sequence[Any], int]:
    """A page of (code, redemption_id) rows, and how many generated codes there are."""
    params = {"coupon_id": coupon_id, "offset": offset, "limit": limit}
    [(total,)] = fetch_tuples(session, _CODES_COUNT, params)
    return fetch_tuples(session, _CODES_PAGE, params), int(total)


def campaign_coupon_ids(
    session: Session, tenant_id: uuid.UUID, env: str, campaign: str
) -> list[uuid.UUID]:
    """The ids of the tenant environment's coupons of `campaign`, oldest first."""
    return list(
        session.scalars(
            select(Coupon.id)
            .where(Coupon.tenant_id == tenant_id, Coupon.env == env, Coupon.campaign == campaign)
            .order_by(Coupon.created_at, Coupon.id)
        )
    )
