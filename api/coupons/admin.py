"""Admin: coupons (by id or by any of their codes), code generation, and the codes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from flask import Blueprint, Response, request

from api.audit import audit_change
from api.auth import current_principal
from api.coupons.schemas import (
    CouponCreate,
    CouponList,
    CouponsQuery,
    CouponUpdate,
    CouponView,
    GeneratedCode,
    GeneratedCodes,
    GenerateRequest,
)
from api.endpoint import Access, endpoint
from api.points.bulk import streamed_csv
from api.runtime import runtime
from api.schemas import OperationAccepted, PageQuery
from api.write_path import IDEMPOTENCY_HEADER_DOC, accepted_response, resolve_idempotency_key
from app.coupons.definitions import (
    coupon_view,
    create_coupon,
    deactivate_coupon,
    generated_codes_after,
    generated_codes_page,
    get_coupon,
    list_coupons,
    update_coupon,
)
from app.coupons.generation import record_generation
from app.models import Coupon, Operation

bp = Blueprint("coupons_admin", __name__, url_prefix="/api/v1/gamify/admin")

NOT_FOUND = {404: ("coupon_not_found",)}
# Codes per read of the CSV export: a million codes stream in 100 reads.
CSV_PAGE_CODES = 10_000


def _view(coupon: Coupon) -> CouponView:
    return CouponView.model_validate(coupon_view(coupon))


@endpoint(
    bp,
    "GET",
    "/coupons",
    summary="List coupons, newest first",
    tag="coupons admin",
    access=Access.ADMIN,
    query=CouponsQuery,
    responses={200: CouponList},
)
def list_coupon_definitions(query: CouponsQuery) -> tuple[CouponList, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        coupons, total = list_coupons(
            session,
            principal.tenant_id,
            principal.env,
            active=query.active,
            campaign=query.campaign,
            offset=query.offset,
            limit=query.page_size,
        )
        views = [_view(coupon) for coupon in coupons]
    return CouponList(coupons=views, total=total, page=query.page, page_size=query.page_size), 200


@endpoint(
    bp,
    "POST",
    "/coupons",
    summary="Create a coupon (with its code, or one generated after code_prefix)",
    tag="coupons admin",
    access=Access.ADMIN,
    body=CouponCreate,
    responses={201: CouponView},
    errors={409: ("code_taken",), 422: ("validation_error",)},
)
def create_coupon_definition(body: CouponCreate) -> tuple[CouponView, int]:
    principal = current_principal()
    fields = body.fields(sent_only=False)
    code, code_prefix = fields.pop("code"), fields.pop("code_prefix")
    with runtime().session_factory.begin() as session:
        coupon = create_coupon(
            session,
            principal.tenant_id,
            principal.env,
            fields,
            code=code,
            code_prefix=code_prefix.upper(),
        )
        audit_change(session, "coupon.created", coupon.id, {"code": coupon.code})
        return _view(coupon), 201


@endpoint(
    bp,
    "GET",
    "/coupons/<id_or_code>",
    summary="Get a coupon by id or by code (its own or a generated one)",
    tag="coupons admin",
    access=Access.ADMIN,
    responses={200: CouponView},
    errors=NOT_FOUND,
)
def get_coupon_definition(id_or_code: str) -> tuple[CouponView, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        return _view(get_coupon(session, principal.tenant_id, principal.env, id_or_code)), 200


@endpoint(
    bp,
    "PATCH",
    "/coupons/<id_or_code>",
    summary="Change a coupon (the fields sent; the result is checked as a whole)",
    tag="coupons admin",
    access=Access.ADMIN,
    body=CouponUpdate,
    responses={200: CouponView},
    errors={**NOT_FOUND, 422: ("validation_error",)},
)
def update_coupon_definition(id_or_code: str, body: CouponUpdate) -> tuple[CouponView, int]:
    principal = current_principal()
    changes = body.fields(sent_only=True)
    with runtime().session_factory.begin() as session:
        coupon = update_coupon(session, principal.tenant_id, principal.env, id_or_code, changes)
        audit_change(session, "coupon.updated", coupon.id, {"changed": sorted(changes)})
        return _view(coupon), 200


@endpoint(
    bp,
    "DELETE",
    "/coupons/<id_or_code>",
    summary="Deactivate a coupon: its codes are then invalid_coupon; it is still listed "
    "with active false",
    tag="coupons admin",
    access=Access.ADMIN,
    responses={204: None},
    errors=NOT_FOUND,
)
def deactivate_coupon_definition(id_or_code: str) -> Response:
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        coupon = deactivate_coupon(session, principal.tenant_id, principal.env, id_or_code)
        audit_change(session, "coupon.deactivated", coupon.id)
    return Response(status=204)


@endpoint(
    bp,
    "POST",
    "/coupons/<coupon_id>/generate",
    summary="Generate single-use codes of a coupon (up to 1,000,000); answers 202 and the "
    "operation to poll, whose result has `generated`",
    tag="coupons admin",
    access=Access.ADMIN,
    body=GenerateRequest,
    responses={202: OperationAccepted},
    errors={
        **NOT_FOUND,
        400: ("IDEMPOTENCY_KEY_INVALID",),
        422: ("validation_error", "IDEMPOTENCY_KEY_REUSED"),
    },
    headers=(IDEMPOTENCY_HEADER_DOC,),
)
def generate_coupon_codes(coupon_id: str, body: GenerateRequest) -> Response:
    operation = submit_code_generation(coupon_id, body, resolve_idempotency_key(None))
    # A generation is always answered at once, whatever it has done (its status says).
    return accepted_response(operation, async_requested=False)


def submit_code_generation(
    coupon_id: str, body: GenerateRequest, idempotency_key: str | None
) -> Operation:
    """Record a generation job of the coupon's codes (or find the earlier one of the key),
    audited, and publish it once committed: the API's view and the console's form."""
    principal = current_principal()
    rt = runtime()
    with rt.session_factory.begin() as session:
        coupon = get_coupon(session, principal.tenant_id, principal.env, coupon_id)
        submission = record_generation(
            session,
            tenant_id=principal.tenant_id,
            env=principal.env,
            coupon_id=coupon.id,
            count=body.count,
            prefix=body.prefix.upper(),
            length=body.length,
            idempotency_key=idempotency_key,
        )
        if submission.created:
            audit_change(session, "coupon.codes_generated", coupon.id, {"count": body.count})
    if submission.created:
        rt.recorder.publish([submission.operation])
    return submission.operation


def codes_csv(coupon_ids: Sequence[uuid.UUID], filename: str) -> Response:
    """Every generated code of the coupons, streamed a page at a time, coupon after
    coupon in code order (a campaign's download in the 23blocks dialect is several)."""

    def pages() -> Iterator[Sequence[Any]]:
        for coupon_id in coupon_ids:
            after = ""
            while True:
                with runtime().session_factory() as session:
                    page = generated_codes_after(session, coupon_id, after, CSV_PAGE_CODES)
                yield page
                if len(page) < CSV_PAGE_CODES:
                    break
                after = page[-1][0]

    return streamed_csv(
        ("code", "used", "redemption_id"),
        pages(),
        lambda row: (row[0], "true" if row[1] else "false", row[1] or ""),
        filename,
    )


@endpoint(
    bp,
    "GET",
    "/coupons/<coupon_id>/codes",
    summary="A coupon's generated codes in code order: paged JSON, or all of them as a "
    "streamed CSV (code,used,redemption_id) with Accept: text/csv",
    tag="coupons admin",
    access=Access.ADMIN,
    query=PageQuery,
    responses={200: GeneratedCodes},
    errors=NOT_FOUND,
)
def list_coupon_codes(coupon_id: str, query: PageQuery) -> Response | tuple[GeneratedCodes, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        coupon = get_coupon(session, principal.tenant_id, principal.env, coupon_id)
        if request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv":
            return codes_csv([coupon.id], f"coupon-{coupon.id}-codes.csv")
        page, total = generated_codes_page(session, coupon.id, query.offset, query.page_size)
    codes = [
        GeneratedCode(
            code=code,
            used=redemption_id is not None,
            redemption_id=str(redemption_id) if redemption_id else None,
        )
        for code, redemption_id in page
    ]
    return GeneratedCodes(codes=codes, total=total, page=query.page, page_size=query.page_size), 200
