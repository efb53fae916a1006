"""Awarding and deducting points: accepted as operations and executed by the workers."""

from __future__ import annotations

from flask import Blueprint, Response

from api.endpoint import Access, endpoint
from api.points.schemas import (
    AwardBatchRequest,
    AwardBatchResponse,
    AwardRequest,
    AwardResponse,
    DeductRequest,
    DeductResponse,
)
from api.schemas import OperationAccepted
from api.write_path import (
    IDEMPOTENCY_HEADER_DOC,
    PREFER_HEADER_DOC,
    accept_write,
)
from app.points.items import batch_entries
from app.points.kinds import AWARD_BATCH_KIND, AWARD_KIND, DEDUCT_KIND

bp = Blueprint("points_writes", __name__, url_prefix="/api/v1/gamify")

WRITE_HEADERS = (IDEMPOTENCY_HEADER_DOC, PREFER_HEADER_DOC)
IDEMPOTENCY_ERRORS: dict[int, tuple[str, ...]] = {
    400: ("IDEMPOTENCY_KEY_INVALID", "IDEMPOTENCY_KEY_MISMATCH"),
    422: ("validation_error", "IDEMPOTENCY_KEY_REUSED"),
}


@endpoint(
    bp,
    "POST",
    "/points/award",
    summary="Award points; the answer carries the new balance and any tier upgrade",
    tag="points",
    access=Access.PARTICIPANT,
    body=AwardRequest,
    responses={200: AwardResponse, 202: OperationAccepted},
    errors=IDEMPOTENCY_ERRORS,
    headers=WRITE_HEADERS,
    write=True,
)
def award(body: AwardRequest) -> Response:
    return accept_write(AWARD_KIND, body.payload(), body.idempotency_key)


@endpoint(
    bp,
    "POST",
    "/points/deduct",
    summary="Deduct points; 400 insufficient_points when the balance is short",
    tag="points",
    access=Access.PARTICIPANT,
    body=DeductRequest,
    responses={200: DeductResponse, 202: OperationAccepted},
    errors={
        **IDEMPOTENCY_ERRORS,
        400: (*IDEMPOTENCY_ERRORS[400], "insufficient_points"),
    },
    headers=WRITE_HEADERS,
    write=True,
)
def deduct(body: DeductRequest) -> Response:
    return accept_write(
        DEDUCT_KIND, body.model_dump(exclude={"idempotency_key"}), body.idempotency_key
    )


@endpoint(
    bp,
    "POST",
    "/points/award-batch",
    summary="Award points to up to 100 participants; each award succeeds or fails on its own",
    tag="points",
    access=Access.PARTICIPANT,
    body=AwardBatchRequest,
    responses={200: AwardBatchResponse, 202: OperationAccepted},
    errors=IDEMPOTENCY_ERRORS,
    headers=WRITE_HEADERS,
    write=True,
)
def award_batch(body: AwardBatchRequest) -> Response:
    return accept_write(
        AWARD_BATCH_KIND, {"awards": batch_entries(body.awards)}, body.idempotency_key
    )
