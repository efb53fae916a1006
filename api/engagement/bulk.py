"""Admin: bulk actions from a CSV or NDJSON upload, and their per-row error reports."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator

from flask import Blueprint, Response, request, stream_with_context

from api.auth import current_principal
from api.endpoint import Access, endpoint
from api.points.bulk import BULK_BODY_LIMIT_BYTES, MEDIA_TYPES, upload_format_of_request
from api.runtime import runtime
from api.schemas import OperationAccepted
from api.write_path import IDEMPOTENCY_HEADER_DOC, accepted_response, resolve_idempotency_key
from app.engagement.bulk_actions import ACTION_BULK_KIND, failed_actions_page, stage_bulk_actions
from app.errors import NotFound
from app.models import Operation
from app.operations import get_operation

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
    principal = current_principal()
    upload_format = upload_format_of_request()
    key = resolve_idempotency_key(None)
    rt = runtime()
    with rt.session_factory.begin() as session:
        submission = stage_bulk_actions(
            session,
            tenant_id=principal.tenant_id,
            env=principal.env,
            idempotency_key=key,
            upload_format=upload_format,
            body=request.stream,
        )
    if submission.created:
        rt.recorder.publish([submission.operation])
    return accepted_response(submission.operation, async_requested=False)


def _bulk_operation(operation_id: str) -> Operation:
    not_found = NotFound("operation_not_found", "No bulk action upload has this operation_id")
    try:
        parsed = uuid.UUID(operation_id)
    except ValueError:
        raise not_found from None
    principal = current_principal()
    with runtime().session_factory() as session:
        operation = get_operation(session, principal.tenant_id, principal.env, parsed)
    if operation is None or operation.kind != ACTION_BULK_KIND:
        raise not_found
    return operation


def _report_lines(operation: Operation) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(REPORT_HEADER)
    after_row = 0
    while True:
        with runtime().session_factory() as session:
            page = failed_actions_page(session, operation, after_row)
        for row in page:
            writer.writerow((row.row_number, row.participant_id, row.action, row.error))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if not page:
            return
        after_row = page[-1].row_number


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
    operation = _bulk_operation(operation_id)
    return Response(
        stream_with_context(_report_lines(operation)),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="actions-bulk-{operation.id}-errors.csv"'
        },
    )
