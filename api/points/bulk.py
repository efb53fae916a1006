"""Admin: bulk awards from a CSV or NDJSON upload, and their per-row error reports."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, Protocol

from flask import Blueprint, Response, request, stream_with_context
from sqlalchemy.orm import Session

from api.audit import audit_change
from api.auth import current_principal
from api.endpoint import Access, endpoint
from api.runtime import runtime
from api.schemas import OperationAccepted
from api.write_path import IDEMPOTENCY_HEADER_DOC, accepted_response, resolve_idempotency_key
from app.errors import DomainError, NotFound
from app.models import Operation
from app.operations import Submission, get_operation
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


def _upload_format() -> UploadFormat:
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
    return accept_upload(stage_bulk_award)


class StageUpload(Protocol):
    def __call__(
        self,
        session: Session,
        *,
        tenant_id: uuid.UUID,
        env: str,
        idempotency_key: str | None,
        upload_format: UploadFormat,
        body: IO[bytes],
    ) -> Submission: ...


def accept_upload(stage: StageUpload) -> Response:
    """Stage the request's file as a bulk job (`stage`: a caller of
    app.points.bulk.stage_upload) and answer 202 with the operation to poll, new or
    replayed."""
    upload_format = _upload_format()
    key = resolve_idempotency_key(None)
    submission = start_upload(
        stage, upload_format=upload_format, idempotency_key=key, body=request.stream
    )
    # A bulk job is always answered at once, whatever it has done (its status says).
    return accepted_response(submission.operation, async_requested=False)


def start_upload(
    stage: StageUpload,
    *,
    upload_format: UploadFormat,
    idempotency_key: str | None,
    body: IO[bytes],
    audit_action: str | None = None,
) -> Submission:
    """Stage `body` as the calling key's bulk job (`stage`: a caller of
    app.points.bulk.stage_upload), or find the one recorded under `idempotency_key`; a new
    job is published once committed. The API's upload and the console's both start here.

    `audit_action` records a new job in the audit log, in the transaction that records
    it (the console's uploads: every change made there is audited; a replay is none)."""
    principal = current_principal()
    rt = runtime()
    with rt.session_factory.begin() as session:
        submission = stage(
            session,
            tenant_id=principal.tenant_id,
            env=principal.env,
            idempotency_key=idempotency_key,
            upload_format=upload_format,
            body=body,
        )
        if submission.created and audit_action is not None:
            payload = submission.operation.payload
            audit_change(
                session,
                audit_action,
                submission.operation.id,
                {name: payload.get(name) for name in ("format", "rows", "invalid_rows")},
            )
    if submission.created:
        rt.recorder.publish([submission.operation])
    return submission


def find_upload(operation_id: str, kind: str, not_found: NotFound) -> Operation:
    """The caller's bulk job of `kind` with this id."""
    try:
        parsed = uuid.UUID(operation_id)
    except ValueError:
        raise not_found from None
    principal = current_principal()
    with runtime().session_factory() as session:
        operation = get_operation(session, principal.tenant_id, principal.env, parsed)
    if operation is None or operation.kind != kind:
        raise not_found
    return operation


class FailedRowsPage(Protocol):
    def __call__(self, session: Session, operation: Operation, after_row: int) -> Sequence[Any]: ...


def error_report(
    operation: Operation,
    header: tuple[str, ...],
    page_of: FailedRowsPage,
    fields: Callable[[Any], tuple[object, ...]],
    filename: str,
) -> Response:
    """The job's failed rows as a streamed CSV: `page_of` reads them a page at a time in
    row order (each has `row_number`), `fields` spells one as a CSV row."""

    def pages() -> Iterator[Sequence[Any]]:
        after_row = 0
        while True:
            with runtime().session_factory() as session:
                page = page_of(session, operation, after_row)
            yield page
            if not page:
                return
            after_row = page[-1].row_number

    return streamed_csv(header, pages(), fields, filename)


def streamed_csv(
    header: tuple[str, ...],
    pages: Iterator[Sequence[Any]],
    fields: Callable[[Any], tuple[object, ...]],
    filename: str,
) -> Response:
    """A CSV download streamed a page of rows at a time (`pages` reads each when the
    client is ready for it), `fields` spelling one row."""

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        for page in pages:
            for row in page:
                writer.writerow(fields(row))
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        if buffer.getvalue():
            yield buffer.getvalue()  # the header of a download with no page

    return Response(
        stream_with_context(lines()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


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
    return award_error_report(find_award_upload(operation_id))


def find_award_upload(operation_id: str) -> Operation:
    """The caller's bulk award with this id (404 operation_not_found for any other)."""
    return find_upload(
        operation_id,
        AWARD_BULK_KIND,
        NotFound("operation_not_found", "No bulk award exists with this operation_id"),
    )


def award_error_report(operation: Operation) -> Response:
    """The bulk award's failed rows as a CSV download (the API's and the console's)."""
    return error_report(
        operation,
        REPORT_HEADER,
        failed_rows_page,
        lambda row: (row.row_number, row.participant_id, row.amount, row.reason, row.error),
        f"award-bulk-{operation.id}-errors.csv",
    )
