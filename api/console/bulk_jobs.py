"""Bulk jobs in the console: upload an award file, list the recent jobs, and a job's page
with a progress bar that updates itself, its counts and its error CSV.

The upload goes through the API's own path (api/points/bulk.py `start_upload`, with
app.points.bulk's parser and rules), the form's token as its idempotency key, so a form
submitted twice starts one job; the error CSV is the API's report.
"""

from __future__ import annotations

from typing import Any

from flask import Response, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from api.console import bp
from api.console.forms import FieldErrors, parse_console_query
from api.console.pages import FORM_TOKEN_FIELD, accepts_upload, render_page, signed_in
from api.points.bulk import (
    BULK_BODY_LIMIT_BYTES,
    award_error_report,
    find_award_upload,
    start_upload,
)
from api.runtime import runtime
from api.schemas import PageQuery
from api.write_path import IDEMPOTENCY_KEY_PATTERN
from app.errors import DomainError
from app.models import Operation
from app.operations import FINISHED, client_error
from app.points.bulk import BulkProgress, UploadFormat, list_bulk_awards, stage_bulk_award

AUDIT_ACTION = "points.bulk_award_started"
# A file named so is read as NDJSON (the API's application/x-ndjson); any other as CSV.
NDJSON_SUFFIXES = (".ndjson", ".jsonl")
# Refusals of the upload that are about the file itself: said beside the file field.
FILE_ERROR_CODES = {
    code: "file"
    for code in ("invalid_upload", "empty_upload", "too_many_rows", "IDEMPOTENCY_KEY_REUSED")
}
# How often the job page asks for its progress while the job runs.
POLL_SECONDS = 1


def job_view(operation: Operation) -> dict[str, Any]:
    """What the job page and its progress fragment show."""
    progress = BulkProgress.of(operation)
    payload = operation.payload or {}
    return {
        "id": str(operation.id),
        "status": operation.status,
        "finished": operation.status in FINISHED,
        "progress": progress,
        "percent": int(100 * progress.done / progress.total) if progress.total else 0,
        "invalid_rows": payload.get("invalid_rows", 0),
        "format": payload.get("format", ""),
        "error": client_error(operation.error),
        "created_at": operation.created_at,
        "finished_at": operation.finished_at,
    }


def _bulk_page(errors: FieldErrors | None = None, status: int = 200) -> Response:
    query = parse_console_query(PageQuery)
    principal = signed_in().principal
    with runtime().session_factory() as session:
        jobs, total = list_bulk_awards(
            session, principal.tenant_id, principal.env, offset=query.offset, limit=query.page_size
        )
    return render_page(
        "console/bulk_jobs.html",
        title="Bulk jobs",
        status=status,
        jobs=[job_view(job) for job in jobs],
        total=total,
        page=query.page,
        page_size=query.page_size,
        errors=errors,
        max_megabytes=BULK_BODY_LIMIT_BYTES // (1024 * 1024),
    )


@bp.get("/bulk")
def bulk_jobs() -> Response:
    return _bulk_page()


@bp.post("/bulk")
@accepts_upload(BULK_BODY_LIMIT_BYTES)
def upload_bulk_job() -> BaseResponse:
    upload = request.files.get("file")
    token = request.form.get(FORM_TOKEN_FIELD, "")
    errors = FieldErrors()
    if upload is None or not upload.filename:
        errors.add("file", "Choose a CSV file to upload")
    if not IDEMPOTENCY_KEY_PATTERN.fullmatch(token):
        errors.add(None, "The form has lost its token: reload the page and submit it again.")
    if errors or upload is None:
        return _bulk_page(errors, 422)
    upload_format = (
        UploadFormat.NDJSON
        if (upload.filename or "").lower().endswith(NDJSON_SUFFIXES)
        else UploadFormat.CSV
    )
    try:
        submission = start_upload(
            stage_bulk_award,
            upload_format=upload_format,
            idempotency_key=token,
            body=upload.stream,
            audit_action=AUDIT_ACTION,
        )
    except DomainError as error:
        return _bulk_page(FieldErrors.from_error(error, FILE_ERROR_CODES), error.status)
    return redirect(url_for("console.bulk_job", operation_id=submission.operation.id), 303)


@bp.get("/bulk/<operation_id>")
def bulk_job(operation_id: str) -> Response:
    job = job_view(find_award_upload(operation_id))
    return render_page(
        "console/bulk_job.html", title="Bulk job", job=job, poll_seconds=POLL_SECONDS
    )


@bp.get("/bulk/<operation_id>/progress")
def bulk_job_progress(operation_id: str) -> Response:
    """The job page's progress fragment, which htmx asks for every second until the job
    has finished (the finished fragment no longer asks)."""
    job = job_view(find_award_upload(operation_id))
    return render_page(
        "console/bulk_job_progress.html", title="Bulk job", job=job, poll_seconds=POLL_SECONDS
    )


@bp.get("/bulk/<operation_id>/errors.csv")
def bulk_job_errors(operation_id: str) -> Response:
    return award_error_report(find_award_upload(operation_id))
