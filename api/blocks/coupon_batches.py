"""23blocks batches of unique coupon codes (POST /coupons/generate) and their download.

How the document's campaign maps to the engine: `campaign-id` is the native coupons'
`campaign`. Each generate request creates one native coupon (the request's discount
terms, campaign = campaign-id, its own code random and never handed out) and records the
native generation job of `count` single-use codes for it. A campaign is thus every coupon
generated under its id, and GET /coupons/download/{campaign_id} streams the generated
codes of all of them as CSV (the native per-coupon export, coupon after coupon).

The native generation is a job of the workers (a million codes take seconds). The
dialect answers as its sync writes do: it waits for the job up to the sync write timeout
and answers 201 with the codes made; a job still running then (or `Prefer:
respond-async`) is answered 202 with the operation to poll under /v1/rewards/operations,
whose result is the same generation document.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal
from urllib.parse import quote

from flask import Blueprint, Response, current_app, request
from pydantic import Field

from api.audit import audit_change
from api.auth import current_principal
from api.blocks.coupons import COUPON_ATTRIBUTES, CouponTerms, native_terms
from api.blocks.jsonapi import (
    PREFIX,
    Document,
    Kebab,
    UnnamedSingle,
    error_document,
    native_model,
)
from api.blocks.writes import RESULT_DOCUMENTS, AcceptedDocument, accepted_document, translates
from api.coupons.admin import codes_csv
from api.coupons.schemas import GenerateRequest
from api.endpoint import Access, endpoint
from api.runtime import runtime
from api.write_path import PREFER_HEADER_DOC, wants_async
from app.coupons.definitions import campaign_coupon_ids, create_coupon, generated_codes_page
from app.coupons.generation import GENERATE_KIND, GENERATE_MAX_CODES, record_generation
from app.errors import NotFound
from app.models import Coupon, Operation, OperationStatus
from app.operations import FINISHED, get_operation, operation_answer
from app.text import holds_nul

bp = Blueprint("blocks_coupon_batches", __name__, url_prefix=PREFIX)

TAG = "23blocks: coupons"
SAMPLE_CODES = 3
# A campaign id goes into the download URL's path: one segment of safe characters.
CampaignId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
# The document's codes read PREFIX-RANDOM: the dialect adds the hyphen (native prefixes
# hold up to 20 characters, so the document's prefix up to 19).
DocumentPrefix = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,18}$")]


class GenerationAttributes(CouponTerms):
    campaign_id: CampaignId
    count: int = Field(ge=1, le=GENERATE_MAX_CODES)
    prefix: DocumentPrefix | None = None
    length: int = Field(default=10, ge=6, le=32, description="Random characters per code")


GenerateDocument = Document[Literal["coupon-generation"], GenerationAttributes]


class GenerationOut(Kebab):
    campaign_id: str
    codes_generated: int
    sample_codes: list[str]
    download_url: str = Field(description="CSV of every generated code of the campaign")


GenerationResult = UnnamedSingle[Literal["coupon-generation-result"], GenerationOut]
GENERATION_ERRORS = {
    422: ("validation_error", "code_space_exhausted"),
}


def download_url(campaign: str) -> str:
    return f"{request.host_url.rstrip('/')}{PREFIX}/coupons/download/{quote(campaign)}"


@translates(GENERATE_KIND)
def _generation_document(result: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    with runtime().session_factory() as session:
        coupon = session.get(Coupon, uuid.UUID(result["coupon_id"]))
        assert coupon is not None and coupon.campaign is not None
        samples, _ = generated_codes_page(session, coupon.id, 0, SAMPLE_CODES)
        campaign = coupon.campaign
    attributes = GenerationOut(
        campaign_id=campaign,
        codes_generated=result["generated"],
        sample_codes=[code for code, _ in samples],
        download_url=download_url(campaign),
    )
    return {"data": {"type": "coupon-generation-result", "attributes": attributes}}


def _respond(document: dict[str, Any], status: int, headers: dict[str, str]) -> Response:
    response = Response(current_app.json.dumps(document), status, mimetype="application/json")
    response.headers.update(headers)
    return response


def _answer(operation: Operation) -> Response:
    """The finished job's document (or its errors), else 202 with the operation to poll."""
    if operation.status not in FINISHED:
        location = f"{PREFIX}/operations/{operation.id}"
        native = {"operation_id": str(operation.id), "status": operation.status}
        document = accepted_document({**native, "kind": operation.kind})
        return _respond(document, 202, {"Location": location, "Retry-After": "1"})
    status, body = operation_answer(operation)
    if operation.status == OperationStatus.SUCCEEDED.value:
        return _respond(RESULT_DOCUMENTS[GENERATE_KIND](body, operation.payload), 201, {})
    return _respond(error_document(status, body["code"], body["detail"], body), status, {})


@endpoint(
    bp,
    "POST",
    "/coupons/generate",
    summary="Generate a batch of unique single-use codes under a campaign: 201 once made "
    "(waited for as a sync write is), else 202 and the operation to poll",
    tag=TAG,
    access=Access.ADMIN,
    body=GenerateDocument,
    responses={201: GenerationResult, 202: AcceptedDocument},
    errors=GENERATION_ERRORS,
    headers=(PREFER_HEADER_DOC,),
)
def blocks_generate_coupons(body: GenerateDocument) -> Response:
    attributes = body.attributes
    terms = native_terms(attributes, campaign=attributes.campaign_id)
    prefix = f"{attributes.prefix.upper()}-" if attributes.prefix else ""
    job = native_model(
        GenerateRequest,
        COUPON_ATTRIBUTES,
        count=attributes.count,
        prefix=prefix,
        length=attributes.length,
    )
    fields = terms.fields(sent_only=False)
    del fields["code"], fields["code_prefix"]
    principal = current_principal()
    rt = runtime()
    with rt.session_factory.begin() as session:
        coupon = create_coupon(
            session,
            principal.tenant_id,
            principal.env,
            {**fields, "name": attributes.name, "description": attributes.description},
            code=None,
            code_prefix=prefix,
        )
        submission = record_generation(
            session,
            tenant_id=principal.tenant_id,
            env=principal.env,
            coupon_id=coupon.id,
            count=job.count,
            prefix=job.prefix,
            length=job.length,
            idempotency_key=None,
        )
        audit_change(session, "coupon.codes_generated", coupon.id, {"count": job.count})
    operation = submission.operation
    # Listening before the publish: the job's answer cannot arrive before anyone listens.
    waiter = None if wants_async() else rt.completions.expect(operation.id)
    try:
        rt.recorder.publish([operation])
        if waiter is not None:
            waiter.wait(rt.settings.sync_wait_timeout_seconds)
    finally:
        if waiter is not None:
            waiter.cancel()
    with rt.session_factory() as session:
        current = get_operation(session, principal.tenant_id, principal.env, operation.id)
        return _answer(current or operation)


def campaign_not_found() -> NotFound:
    return NotFound("campaign_not_found", "No coupon codes were generated under this campaign")


def _campaign_coupons(campaign: str) -> list[uuid.UUID]:
    principal = current_principal()
    with runtime().session_factory() as session:
        return campaign_coupon_ids(session, principal.tenant_id, principal.env, campaign)


@endpoint(
    bp,
    "GET",
    "/coupons/download/<campaign_id>",
    summary="Every code generated under a campaign, as a streamed CSV "
    "(code,used,redemption_id), coupon after coupon in code order",
    tag=TAG,
    access=Access.ADMIN,
    responses={200: None},
    errors={404: ("campaign_not_found",)},
)
def blocks_download_campaign_codes(campaign_id: str) -> Response:
    # An id no generation could have taken (a NUL, which PostgreSQL text cannot hold) names
    # no campaign.
    coupon_ids = [] if holds_nul(campaign_id) else _campaign_coupons(campaign_id)
    if not coupon_ids:
        raise campaign_not_found()

    return codes_csv(coupon_ids, f"campaign-{campaign_id}-codes.csv")
