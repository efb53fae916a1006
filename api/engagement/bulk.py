"""Admin: bulk actions from a CSV or NDJSON upload, and their per-row error reports."""

from __future__ import annotations

from flask import Blueprint, Response

from api.endpoint import Access, endpoint
from api.points.bulk import (
    BULK_BODY_LIMIT_BYTES,
    MEDIA_TYPES,
    accept_upload,
    error_report,
    find_upload,
)
from api.schemas import OperationAccepted
from api.write_path import IDEMPOTENCY_HEADER_DOC
from app.engagement.bulk_actions import ACTION_BULK_KIND, failed_actions_page, stage_bulk_actions
from app.errors import NotFound

bp = Blueprint("actions_bulk", __name__, url_prefix="/api/v1/gamify")

REPORT_HEADER = ("row", "participant_id", "action", "error")


@endpoint(
    bp,
    "POST",
    "/actions/bulk",
    summary=(
        "Record actions from a file of up to 1,000,000 rows (CSV with a header "
        "participant_id,action[,occurred_at][,property columns...], or NDJSON objects like "
        "POST /actions); answers 202 and the operation to poll"
    ),
    tag="actions",
    access=Access.ADMIN,
    responses={202: OperationAccepted},
    errors={
        400: ("IDEMPOTENCY_KEY_INVALID",),
        413: ("payload_too_large", "too_many_rows"),
        415: ("unsupported_media_type",),
        422: ("invalid_upload", "empty_upload", "IDEMPOTENCY_KEY_REUSED"),
    },
    max_body_bytes=BULK_BODY_LIMIT_BYTES,
    raw_body_types=tuple(MEDIA_TYPES),
    headers=(IDEMPOTENCY_HEADER_DOC,),
)
def actions_bulk() -> Response:
    return accept_upload(stage_bulk_actions)


@endpoint(
    bp,
    "GET",
    "/actions/bulk/<operation_id>/errors",
    summary="CSV of the rows that failed (row, participant_id, action, error), so far",
    tag="actions",
    access=Access.ADMIN,
    responses={200: None},
    errors={404: ("operation_not_found",)},
)
def actions_bulk_errors(operation_id: str) -> Response:
    operation = find_upload(
        operation_id,
        ACTION_BULK_KIND,
        NotFound("operation_not_found", "No bulk action upload has this operation_id"),
    )
    return error_report(
        operation,
        REPORT_HEADER,
        failed_actions_page,
        lambda row: (row.row_number, row.participant_id, row.action, row.error),
        f"actions-bulk-{operation.id}-errors.csv",
    )
