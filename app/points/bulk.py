"""Bulk awards: a CSV or NDJSON file of up to 1,000,000 rows, awarded by the workers.

Upload (web process, one transaction): record the operation under its idempotency key,
stream the body through the parser into bulk_award_rows with COPY, a row at a time, so
memory stays flat whatever the file size; commit, then publish. A bad row is staged with
its error rather than failing the upload.

Processing (worker): each step awards the next BULK_CHUNK_ROWS staged rows set-wise in
one transaction that also advances the operation's progress cursor, then hands the
operation back for the next step (app.operation_kinds.StepTaken). A crash loses only the step
in flight, which never committed; whoever runs the operation next (the redelivered task
or the sweeper's republish) starts at the committed cursor, so no row is awarded twice.
"""

from __future__ import annotations

import csv
import enum
import hashlib
import io
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import IO, Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.errors import DomainError
from app.infra.pgcopy import COPY_NULL, copy_field, copy_lines, fetch_tuples
from app.models import Operation
from app.models.points import BulkAwardRow
from app.operation_kinds import StepTaken
from app.operations import Submission, submit_operation
from app.points.awards import apply_awards, cyclic_gc_paused
from app.points.items import (
    PARTICIPANT_ID_MAX_CHARS,
    REASON_MAX_CHARS,
    InvalidItem,
    check_action,
    check_amount,
    check_lot_terms,
    check_participant_id,
    check_reason,
)
from app.points.lots import LOT_TERM_FIELDS
from app.text import unknown_fields_message

AWARD_BULK_KIND = "points.award_bulk"
BULK_MAX_ROWS = 1_000_000
# Rows per worker transaction: large enough that per-step overhead (task round trip,
# commit, the tier and multiplier reads, about 70 ms here) is noise, small enough that a
# step holds its participant locks for about a second (a step costs ~50 us a row).
BULK_CHUNK_ROWS = 20_000
REPORT_PAGE_ROWS = 5_000
ERROR_REPORT_PATH = "/api/v1/gamify/points/award-bulk/{operation_id}/errors"
# The first three also make a header-less row; the others need a header naming them.
CSV_COLUMNS = ("participant_id", "amount", "reason", "action", *LOT_TERM_FIELDS)
NDJSON_FIELDS = frozenset(CSV_COLUMNS)
STAGED_COLUMNS = (
    "operation_id",
    "row_number",
    "participant_id",
    "amount",
    "reason",
    "action",
    "available_at",
    "expires_at",
    "error",
)
_DAYS_COLUMNS = frozenset({"expires_in_days", "pending_days"})
_AMOUNT_TEXT = re.compile(r"[+-]?\d{1,15}")
_HASH_READ_BYTES = 1 << 20


class UploadFormat(enum.StrEnum):
    CSV = "csv"
    NDJSON = "ndjson"


# (row_number, participant_id, amount, reason, action, available_at, expires_at, error):
# error is None for a valid row; the lot terms are resolved when the upload is staged.
StagedRow = tuple[
    int,
    str | None,
    int | None,
    str | None,
    str | None,
    datetime | None,
    datetime | None,
    str | None,
]
_NO_EXTRAS: dict[str, object] = {}


def invalid_upload(detail: str) -> DomainError:
    return DomainError("invalid_upload", detail, 422)


@dataclass
class BulkProgress:
    """What `operation.progress` holds; `done` is also the cursor (rows 1..done are done)."""

    total: int
    done: int = 0
    awarded: int = 0
    failed: int = 0
    points_credited: int = 0

    @classmethod
    def of(cls, operation: Operation) -> BulkProgress:
        return cls(**(operation.progress or {}))

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class _HashingReader(io.RawIOBase):
    """Passes a binary stream through, hashing every byte read."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._source.read(len(buffer))
        size = len(chunk)
        buffer[:size] = chunk
        self.sha256.update(chunk)
        return size


def clip_text(value: object, limit: int) -> str | None:
    """A bad row's text as the error report shows it: cut to the column, NUL replaced."""
    return value[:limit].replace("\x00", "\ufffd") if isinstance(value, str) else None


def _staged(
    row_number: int,
    participant_id: object,
    amount: object,
    reason: object,
    extras: dict[str, object],
    now: datetime,
) -> StagedRow:
    """A row checked; `extras` holds its action and lot terms, if any."""
    try:
        terms = check_lot_terms(extras, now) if extras else None
        # Staged as instants: an upload's key fingerprints its format and file hash only.
        available_at, expires_at = terms.resolve(now) if terms is not None else (None, None)
        return (
            row_number,
            check_participant_id(participant_id),
            check_amount(amount),
            check_reason(reason),
            check_action(extras.get("action")),
            available_at,
            expires_at,
            None,
        )
    except InvalidItem as exc:
        # Keep what can be kept so the error report shows which row it was.
        kept_amount = amount if type(amount) is int and abs(amount) < 2**63 else None
        return (
            row_number,
            clip_text(participant_id, PARTICIPANT_ID_MAX_CHARS),
            kept_amount,
            clip_text(reason, REASON_MAX_CHARS),
            None,
            None,
            None,
            str(exc),
        )


def _csv_extras(fields: list[str], columns: dict[str, int]) -> dict[str, object]:
    """A CSV row's action and lot terms, from the optional columns (empty means none)."""
    extras: dict[str, object] = {}
    for name, index in columns.items():
        if name in _OPTIONAL_CSV_COLUMNS and fields[index].strip():
            text = fields[index].strip()
            extras[name] = int(text) if name in _DAYS_COLUMNS and text.isdigit() else text
    return extras


def _amount_from_text(text: str) -> int | str:
    if len(text) <= 15 and text.isascii() and text.isdigit():  # the usual case, quickly
        return int(text)
    stripped = text.strip()
    return int(stripped) if _AMOUNT_TEXT.fullmatch(stripped) else stripped


_OPTIONAL_CSV_COLUMNS = frozenset(CSV_COLUMNS[3:])


def _invalid_row(row_number: int, error: str) -> StagedRow:
    return (row_number, None, None, None, None, None, None, error)


def _csv_rows(text: IO[str], now: datetime) -> Iterator[StagedRow]:
    reader = csv.reader(text)
    columns: dict[str, int] | None = None
    row_number = 0
    for fields in reader:
        if not fields:
            continue
        if columns is None and reader.line_num == 1 and fields[0].strip() == "participant_id":
            names = [name.strip() for name in fields]
            unknown = sorted(set(names) - set(CSV_COLUMNS))
            if unknown or "amount" not in names or len(set(names)) != len(names):
                raise invalid_upload(
                    "The CSV header must name participant_id, amount and optionally reason, "
                    "action, expires_in_days, expires_at, pending_days, available_at"
                )
            columns = {name: index for index, name in enumerate(names)}
            continue
        row_number += 1
        if columns is not None:
            if len(fields) != len(columns):
                yield _invalid_row(row_number, f"expected {len(columns)} fields")
                continue
            reason_index = columns.get("reason")
            participant_id = fields[columns["participant_id"]]
            amount_text = fields[columns["amount"]]
            reason = fields[reason_index] if reason_index is not None else None
            extras = _csv_extras(fields, columns) if len(columns) > 3 else _NO_EXTRAS
        else:
            if len(fields) not in (2, 3):
                yield _invalid_row(row_number, "expected participant_id,amount[,reason]")
                continue
            participant_id, amount_text = fields[0], fields[1]
            reason = fields[2] if len(fields) == 3 else None
            extras = _NO_EXTRAS
        yield _staged(
            row_number, participant_id, _amount_from_text(amount_text), reason or None, extras, now
        )


def _ndjson_rows(text: IO[str], now: datetime) -> Iterator[StagedRow]:
    row_number = 0
    for line in text:
        if not line.strip():
            continue
        row_number += 1
        try:
            document = json.loads(line)
        except ValueError:
            yield _invalid_row(row_number, "not valid JSON")
            continue
        if not isinstance(document, dict):
            yield _invalid_row(row_number, "each line must be a JSON object")
            continue
        unknown = set(document) - NDJSON_FIELDS
        if unknown:
            yield _invalid_row(row_number, unknown_fields_message(unknown))
            continue
        yield _staged(
            row_number,
            document.get("participant_id"),
            document.get("amount"),
            document.get("reason"),
            {name: document[name] for name in _OPTIONAL_CSV_COLUMNS if name in document},
            now,
        )


@dataclass
class UploadCounts:
    rows: int = 0
    invalid: int = 0


def _staging_lines(
    operation_id: uuid.UUID, rows: Iterator[StagedRow], counts: UploadCounts
) -> Iterator[str]:
    operation_field = str(operation_id)
    for row_number, participant_id, amount, reason, action, available_at, expires_at, error in rows:
        if row_number > BULK_MAX_ROWS:
            raise DomainError(
                "too_many_rows", f"A bulk award takes at most {BULK_MAX_ROWS} rows", 413
            )
        counts.rows += 1
        if error is not None:
            counts.invalid += 1
        yield (
            f"{operation_field}\t{row_number}\t{copy_field(participant_id)}"
            f"\t{COPY_NULL if amount is None else amount}"
            f"\t{COPY_NULL if reason is None else copy_field(reason)}"
            f"\t{COPY_NULL if action is None else copy_field(action)}"
            f"\t{COPY_NULL if available_at is None else available_at.isoformat()}"
            f"\t{COPY_NULL if expires_at is None else expires_at.isoformat()}"
            f"\t{COPY_NULL if error is None else copy_field(error)}\n"
        )


def _parsed(upload_format: UploadFormat, text: IO[str]) -> Iterator[StagedRow]:
    now = utcnow()
    if upload_format is UploadFormat.CSV:
        return _csv_rows(text, now)
    return _ndjson_rows(text, now)


def _sha256_of(body: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := body.read(_HASH_READ_BYTES):
        digest.update(chunk)
    return digest.hexdigest()


# Lines for COPY into an upload's staging table from its text, counting its rows.
StagingLines = Callable[[uuid.UUID, IO[str], "UploadCounts"], Iterator[str]]


def stage_upload(
    session: Session,
    *,
    kind: str,
    tenant_id: uuid.UUID,
    env: str,
    idempotency_key: str | None,
    upload_format: UploadFormat,
    body: IO[bytes],
    table: str,
    columns: tuple[str, ...],
    staging_lines: StagingLines,
    progress: Callable[[int], dict[str, Any]],
) -> Submission:
    """Record a bulk upload (of `kind`) and stage its rows into `table`, or find the
    earlier upload with this key; `progress` is the new job's progress for its row count.

    A concurrent upload with the same key waits on the operation's unique key until this
    transaction ends, then sees the finished upload (or inserts its own if this one failed).
    """
    submission = submit_operation(
        session.connection(),
        tenant_id=tenant_id,
        env=env,
        kind=kind,
        payload={"format": upload_format.value},
        idempotency_key=idempotency_key,
    )
    operation = submission.operation
    if not submission.created:
        # The key fingerprints only the format; the file itself is compared by hash.
        if _sha256_of(body) != operation.payload.get("content_sha256"):
            raise DomainError(
                "IDEMPOTENCY_KEY_REUSED",
                "This Idempotency-Key was already used with a different request",
                422,
            )
        return submission
    hashing = _HashingReader(body)
    text = io.TextIOWrapper(io.BufferedReader(hashing), encoding="utf-8-sig", newline="")
    counts = UploadCounts()
    try:
        copy_lines(session, table, columns, staging_lines(operation.id, text, counts))
    except UnicodeDecodeError:
        raise invalid_upload("The upload is not UTF-8 text") from None
    except csv.Error as exc:
        raise invalid_upload(f"The CSV is malformed: {exc}") from None
    if counts.rows == 0:
        raise DomainError("empty_upload", "The upload holds no rows", 422)
    operation.payload = {
        "format": upload_format.value,
        "content_sha256": hashing.sha256.hexdigest(),
        "rows": counts.rows,
        "invalid_rows": counts.invalid,
    }
    operation.progress = progress(counts.rows)
    session.execute(
        update(Operation)
        .where(Operation.id == operation.id)
        .values(payload=operation.payload, progress=operation.progress)
    )
    return submission


def stage_bulk_award(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    env: str,
    idempotency_key: str | None,
    upload_format: UploadFormat,
    body: IO[bytes],
) -> Submission:
    """Record a bulk award and stage its rows (stage_upload)."""
    return stage_upload(
        session,
        kind=AWARD_BULK_KIND,
        tenant_id=tenant_id,
        env=env,
        idempotency_key=idempotency_key,
        upload_format=upload_format,
        body=body,
        table=BulkAwardRow.__tablename__,
        columns=STAGED_COLUMNS,
        staging_lines=lambda operation_id, text, counts: _staging_lines(
            operation_id, _parsed(upload_format, text), counts
        ),
        progress=lambda rows: BulkProgress(total=rows).as_json(),
    )


# Plain rows, not ORM objects: a step reads BULK_CHUNK_ROWS of them. Rows
# that failed validation are left for the error report.
_CHUNK = """
    SELECT row_number, participant_id, amount, reason, action, available_at, expires_at
    FROM bulk_award_rows
    WHERE operation_id = %(operation_id)s AND row_number BETWEEN %(first)s AND %(last)s
      AND error IS NULL AND participant_id IS NOT NULL AND amount IS NOT NULL
    ORDER BY row_number
"""


def award_bulk_step(session: Session, operation: Operation) -> dict[str, Any] | StepTaken:
    """Award the next chunk of staged rows; the operation's handler, one step per call."""
    progress = BulkProgress.of(operation)
    first = progress.done + 1
    last = min(progress.done + BULK_CHUNK_ROWS, progress.total)
    with cyclic_gc_paused():
        rows = fetch_tuples(
            session, _CHUNK, {"operation_id": operation.id, "first": first, "last": last}
        )
        # Each ledger line and event names its row: {"bulk_row": n}.
        awards = [
            (
                participant_id,
                amount,
                reason,
                f'{{"bulk_row": {row_number}}}',
                action,
                available_at,
                expires_at,
            )
            for row_number, participant_id, amount, reason, action, available_at, expires_at in rows
        ]
        totals = apply_awards(
            session,
            operation.tenant_id,
            operation.env,
            awards,
            operation_fields=[str(operation.id)] * len(awards),
        )
    progress.done = last
    progress.awarded += totals.awarded
    progress.failed += last - first + 1 - len(awards)
    progress.points_credited += totals.points_credited
    operation.progress = progress.as_json()
    if progress.done < progress.total:
        return StepTaken()
    return {
        "total_rows": progress.total,
        "awarded": progress.awarded,
        "failed": progress.failed,
        "points_credited": progress.points_credited,
        "error_report": ERROR_REPORT_PATH.format(operation_id=operation.id),
    }


@dataclass(frozen=True, slots=True)
class FailedRow:
    row_number: int
    participant_id: str | None
    amount: int | None
    reason: str | None
    error: str


def failed_rows_page(
    session: Session, operation: Operation, after_row: int, limit: int = REPORT_PAGE_ROWS
) -> list[FailedRow]:
    """Failed rows among those processed so far, after `after_row`, in row order."""
    processed = BulkProgress.of(operation).done
    rows = session.execute(
        select(
            BulkAwardRow.row_number,
            BulkAwardRow.participant_id,
            BulkAwardRow.amount,
            BulkAwardRow.reason,
            BulkAwardRow.error,
        )
        .where(
            BulkAwardRow.operation_id == operation.id,
            BulkAwardRow.row_number > after_row,
            BulkAwardRow.row_number <= processed,
            BulkAwardRow.error.is_not(None),
        )
        .order_by(BulkAwardRow.row_number)
        .limit(limit)
    )
    return [
        FailedRow(row_number, participant_id, amount, reason, error or "")
        for row_number, participant_id, amount, reason, error in rows
    ]


def list_bulk_awards(
    session: Session, tenant_id: uuid.UUID, env: str, *, offset: int, limit: int
) -> tuple[list[Operation], int]:
    """The tenant's bulk awards still kept (IDEMPOTENCY_RETENTION_HOURS), newest first,
    and how many there are: one statement, on the partial index ix_operations_bulk_jobs."""
    conditions = (
        Operation.tenant_id == tenant_id,
        Operation.env == env,
        Operation.kind == AWARD_BULK_KIND,
    )
    rows = session.execute(
        select(Operation, func.count().over())
        .where(*conditions)
        .order_by(Operation.created_at.desc(), Operation.id)
        .offset(offset)
        .limit(limit)
    ).all()
    if rows:
        return [operation for operation, _ in rows], int(rows[0][1])
    if offset == 0:
        return [], 0
    # A page past the end: its total is still worth saying.
    total = session.execute(select(func.count()).select_from(Operation).where(*conditions))
    return [], int(total.scalar_one())
