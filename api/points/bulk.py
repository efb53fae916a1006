"""Admin: bulk awards from a CSV or NDJSON upload, and their per-row error reports."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator

from flask import Blueprint, Response, request, stream_with_context

from api.auth import current_principal
from api.endpoint import Access, endpoint
from api.runtime import runtime
from api.schemas import OperationAccepted
from api.write_path import IDEMPOTENCY_HEADER_DOC, accepted_response, resolve_idempotency_key
from app.errors import DomainError, NotFound
from app.models import Operation
from app.operations import get_operation
from app.points.bulk import AWARD_BULK_KIND, UploadFormat, failed_rows_page, stage_bulk_award

bp = Blueprint("points_bulk", __name__, url_prefix="/api/v1/gamify")

# Rows are streamed into the database as they arrive, so this bounds abuse, not memory:
# a million rows of id, amount and a short reason fit comfortably.
BULK_BODY_LIMIT_BYTES = 256 * 1024 * 1024
MEDIA_TYPES = {
    "text/csv": UploadFormat.CSV,
    "application/x-ndjson": UploadFormat.NDJSON,
    "application/ndjson": UploadFormat.NDJSON,
    "application/jsonl": UploadFormat.NDJSON,
}
REPORT_HEADER = ("row", "participant_id", "amount", "reason", "error")


def upload_format_of_request() -> UploadFormat:
    upload_format = MEDIA_TYPES.get(request.mimetype)
    if upload_format is None:
        raise DomainError(
            "unsupported_media_type",
            "Content-Type must be text/csv or application/x-ndjson",
            415,
        )
    return upload_format


@endpoint(
    bp,
    "POST",
    "/points/award-bulk",
    summary=(
        "Award points from a file of up to 1,000,000 rows (CSV participant_id,amount[,reason] "
        "with an optional header, or NDJSON objects); answers 202 and the operation to poll"
    ),
    tag="points",
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
def award_bulk() -> Response:
    principal = current_principal()
    upload_format = upload_format_of_request()
    key = resolve_idempotency_key(None)
    rt = runtime()
    with rt.session_factory.begin() as session:
        submission = stage_bulk_award(
            session,
            tenant_id=principal.tenant_id,
            env=principal.env,
            idempotency_key=key,
            upload_format=upload_format,
            body=request.stream,
        )
    if submission.created:
        rt.recorder.publish([submission.operation])
    # A bulk job is always answered at once, whatever it has done (its status says).
    return accepted_response(submission.operation, async_requested=False)


def _bulk_operation(operation_id: str) -> Operation:
    not_found = NotFound("operation_not_found", "No bulk award exists with this operation_id")
    try:
        parsed = uuid.UUID(operation_id)
    except ValueError:
        raise not_found from None
    principal = current_principal()
    with runtime().session_factory() as session:
        operation = get_operation(session, principal.tenant_id, principal.env, parsed)
    if operation is None or operation.kind != AWARD_BULK_KIND:
        raise not_found
    return operation


def _report_lines(operation: Operation) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(REPORT_HEADER)
    after_row = 0
    while True:
        with runtime().session_factory() as session:
            page = failed_rows_page(session, operation, after_row)
        for row in page:
            writer.writerow((row.row_number, row.participant_id, row.amount, row.reason, row.error))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if not page:
            return
        after_row = page[-1].row_number


@endpoint(
    bp,
    "GET",
    "/points/award-bulk/<operation_id>/errors",
    summary=(
        "CSV of the rows that failed (row, participant_id, amount, reason, error), "
        "among the rows processed so far"
    ),
    tag="points",
    access=Access.ADMIN,
    responses={200: None},
    errors={404: ("operation_not_found",)},
)
def bulk_error_report(operation_id: str) -> Response:
    operation = _bulk_operation(operation_id)
    return Response(
        stream_with_context(_report_lines(operation)),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="award-bulk-{operation.id}-errors.csv"'
        },
    )
