"""Bulk actions: a CSV or NDJSON file of up to 1,000,000 actions, applied by the workers
through the action pipeline, a chunk per transaction.

As bulk awards (app.points.bulk): the upload streams through the parser into
bulk_action_rows with COPY in the web's transaction (a bad row is staged with its error);
each worker step applies the next chunk of staged rows (app.points.balance_changes
.apply_changes, every rule, streak, challenge, badge and leaderboard included) and
advances the operation's progress cursor in the same transaction, so a crash replays
only the step in flight and no row is applied twice.

CSV: a header naming `participant_id`, `action`, optionally `occurred_at`, and any other
columns, each a property: an empty cell is no property, a number reads as a number,
`true`/`false` as a boolean, anything else as text. NDJSON: one object per line with the
fields of POST /actions (`participant_id`, `action`, `properties`, `occurred_at`).
"""

from __future__ import annotations

import csv
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.engagement.actions import parse_action_item
from app.engagement.pipeline import ActionWrite
from app.errors import DomainError
from app.infra.pgcopy import COPY_NULL, copy_field, fetch_tuples
from app.models import BulkActionRow, Operation
from app.operation_kinds import StepTaken
from app.operations import Submission
from app.points.awards import cyclic_gc_paused
from app.points.balance_changes import ActionApplied, apply_changes
from app.points.bulk import (
    BULK_MAX_ROWS,
    REPORT_PAGE_ROWS,
    UploadCounts,
    UploadFormat,
    clip_text,
    invalid_upload,
    stage_upload,
)
from app.points.items import ACTION_MAX_CHARS, PARTICIPANT_ID_MAX_CHARS, InvalidItem

ACTION_BULK_KIND = "actions.bulk"
# Rows per worker transaction: an action costs several times an award (its rules,
# streaks, challenges, badges and scores), so a step holds its locks about as long.
ACTION_BULK_CHUNK_ROWS = 5_000
ERROR_REPORT_PATH = "/api/v1/gamify/actions/bulk/{operation_id}/errors"
STAGED_COLUMNS = (
    "operation_id",
    "row_number",
    "participant_id",
    "action",
    "properties",
    "occurred_at",
    "error",
)
_FIXED_CSV_COLUMNS = ("participant_id", "action", "occurred_at")
_INTEGER = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")

# (row_number, participant_id, action, properties, occurred_at, error)
StagedAction = tuple[
    int, str | None, str | None, dict[str, Any] | None, datetime | None, str | None
]


@dataclass
class ActionBulkProgress:
    """What `operation.progress` holds; `done` is also the cursor (rows 1..done are done)."""

    total: int
    done: int = 0
    applied: int = 0
    failed: int = 0
    points_credited: int = 0

    @classmethod
    def of(cls, operation: Operation) -> ActionBulkProgress:
        return cls(**(operation.progress or {}))

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def csv_cell(text: str) -> object:
    """A CSV property cell as the value it spells (see the module's docstring)."""
    if _NUMBER.fullmatch(text):
        number = float(text)
        return (
            int(number)
            if number.is_integer() and "." not in text and "e" not in text.lower()
            else number
        )
    if text in ("true", "false"):
        return text == "true"
    return text


def _staged(row_number: int, raw: object, now: datetime) -> StagedAction:
    try:
        item = parse_action_item(raw, now)
    except InvalidItem as exc:
        named = raw.get("participant_id") if isinstance(raw, dict) else None
        action = raw.get("action") if isinstance(raw, dict) else None
        return (
            row_number,
            clip_text(named, PARTICIPANT_ID_MAX_CHARS),
            clip_text(action, ACTION_MAX_CHARS),
            None,
            None,
            str(exc)[:500],
        )
    return (
        row_number,
        item.participant_id,
        item.action,
        item.properties or None,
        item.occurred_at,
        None,
    )


def _csv_rows(text: IO[str], now: datetime) -> Iterator[StagedAction]:
    reader = csv.reader(text)
    header = next(reader, None)
    names = [name.strip() for name in header or ()]
    if (
        not names
        or names[:2] != ["participant_id", "action"]
        or len(set(names)) != len(names)
        or any(not name for name in names)
    ):
        raise invalid_upload(
            "The CSV needs a header: participant_id, action, then optionally occurred_at and "
            "property columns"
        )
    row_number = 0
    for fields in reader:
        if not fields:
            continue
        row_number += 1
        if len(fields) != len(names):
            yield (row_number, None, None, None, None, f"expected {len(names)} fields")
            continue
        raw: dict[str, Any] = {"participant_id": fields[0], "action": fields[1]}
        properties: dict[str, object] = {}
        for name, value in zip(names[2:], fields[2:], strict=True):
            if name == "occurred_at":
                if value.strip():
                    raw["occurred_at"] = value.strip()
            elif value != "":
                properties[name] = csv_cell(value)
        if properties:
            raw["properties"] = properties
        yield _staged(row_number, raw, now)


def _ndjson_rows(text: IO[str], now: datetime) -> Iterator[StagedAction]:
    row_number = 0
    for line in text:
        if not line.strip():
            continue
        row_number += 1
        try:
            document = json.loads(line)
        except ValueError:
            yield (row_number, None, None, None, None, "not valid JSON")
            continue
        yield _staged(row_number, document, now)


def _staging_lines(
    operation_id: uuid.UUID, rows: Iterator[StagedAction], counts: UploadCounts
) -> Iterator[str]:
    operation_field = str(operation_id)
    for row_number, participant_id, action, properties, occurred_at, error in rows:
        if row_number > BULK_MAX_ROWS:
            raise DomainError(
                "too_many_rows", f"A bulk upload takes at most {BULK_MAX_ROWS} rows", 413
            )
        counts.rows += 1
        if error is not None:
            counts.invalid += 1
        yield (
            f"{operation_field}\t{row_number}\t{copy_field(participant_id)}"
            f"\t{copy_field(action)}"
            f"\t{COPY_NULL if properties is None else copy_field(json.dumps(properties))}"
            f"\t{COPY_NULL if occurred_at is None else occurred_at.isoformat()}"
            f"\t{COPY_NULL if error is None else copy_field(error)}\n"
        )


def _parsed(upload_format: UploadFormat, text: IO[str]) -> Iterator[StagedAction]:
    now = utcnow()
    if upload_format is UploadFormat.CSV:
        return _csv_rows(text, now)
    return _ndjson_rows(text, now)


def stage_bulk_actions(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    env: str,
    idempotency_key: str | None,
    upload_format: UploadFormat,
    body: IO[bytes],
) -> Submission:
    """Record a bulk action upload and stage its rows (app.points.bulk.stage_upload)."""
    return stage_upload(
        session,
        kind=ACTION_BULK_KIND,
        tenant_id=tenant_id,
        env=env,
        idempotency_key=idempotency_key,
        upload_format=upload_format,
        body=body,
        table=BulkActionRow.__tablename__,
        columns=STAGED_COLUMNS,
        staging_lines=lambda operation_id, text, counts: _staging_lines(
            operation_id, _parsed(upload_format, text), counts
        ),
        progress=lambda rows: ActionBulkProgress(total=rows).as_json(),
    )


_CHUNK = """
    SELECT participant_id, action, properties, occurred_at
    FROM bulk_action_rows
    WHERE operation_id = %(operation_id)s AND row_number BETWEEN %(first)s AND %(last)s
      AND error IS NULL
    ORDER BY row_number
"""


def action_bulk_step(session: Session, operation: Operation) -> dict[str, Any] | StepTaken:
    """Apply the next chunk of staged actions; the operation's handler, a step per call.
    An action without its own moment happened when the upload was accepted."""
    progress = ActionBulkProgress.of(operation)
    first = progress.done + 1
    last = min(progress.done + ACTION_BULK_CHUNK_ROWS, progress.total)
    with cyclic_gc_paused():
        rows = fetch_tuples(
            session, _CHUNK, {"operation_id": operation.id, "first": first, "last": last}
        )
        writes = [
            ActionWrite(
                operation.id,
                participant_id,
                action,
                properties or {},
                occurred_at or operation.created_at,
            )
            for participant_id, action, properties, occurred_at in rows
        ]
        decisions = apply_changes(session, operation.tenant_id, operation.env, writes)
    progress.done = last
    progress.applied += len(writes)
    progress.failed += last - first + 1 - len(writes)
    progress.points_credited += sum(
        each.outcome.amount
        for decision in decisions
        if isinstance(decision, ActionApplied)
        for each in decision.credits
    )
    operation.progress = progress.as_json()
    if progress.done < progress.total:
        return StepTaken()
    return {
        "total_rows": progress.total,
        "applied": progress.applied,
        "failed": progress.failed,
        "points_credited": progress.points_credited,
        "error_report": ERROR_REPORT_PATH.format(operation_id=operation.id),
    }


@dataclass(frozen=True, slots=True)
class FailedAction:
    row_number: int
    participant_id: str | None
    action: str | None
    error: str


def failed_actions_page(
    session: Session, operation: Operation, after_row: int, limit: int = REPORT_PAGE_ROWS
) -> list[FailedAction]:
    """Failed rows among those processed so far, after `after_row`, in row order."""
    processed = ActionBulkProgress.of(operation).done
    rows = session.execute(
        select(
            BulkActionRow.row_number,
            BulkActionRow.participant_id,
            BulkActionRow.action,
            BulkActionRow.error,
        )
        .where(
            BulkActionRow.operation_id == operation.id,
            BulkActionRow.row_number > after_row,
            BulkActionRow.row_number <= processed,
            BulkActionRow.error.is_not(None),
        )
        .order_by(BulkActionRow.row_number)
        .limit(limit)
    )
    return [
        FailedAction(row_number, participant_id, action, error or "")
        for row_number, participant_id, action, error in rows
    ]
