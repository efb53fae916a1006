"""Accepted writes: recorded with their idempotency key, executed by a worker, replayed.

The web process records writes with `submit_operations` (one INSERT for a group of them,
see api/recording.py) and commits before telling anyone a write is accepted; a worker
calls `execute_operations` (given ids) or `drain_partition` (every queued operation of one
partition), which run the kinds' handlers in the caller's transaction and store the exact
response, so every replay of the key answers the same.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, delete, select, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.errors import DomainError
from app.models import Operation, OperationStatus
from app.points.pgcopy import plain_array_literal

FINISHED = (OperationStatus.SUCCEEDED.value, OperationStatus.FAILED.value)
UNFINISHED = (OperationStatus.QUEUED.value, OperationStatus.PROCESSING.value)


@dataclass(frozen=True)
class StepTaken:
    """A handler's answer when it did one step of a long operation and more remain.

    The step's writes commit with the operation left unfinished (status processing, publish
    time reset so the sweeper leaves a live job alone); the worker publishes it again for
    the next step, and the sweeper does so if the worker dies first. A handler records how
    far it got on `operation.progress`, which commits atomically with the step.
    """


Handler = Callable[[Session, Operation], "dict[str, Any] | StepTaken"]


BatchAnswers = dict[uuid.UUID, "dict[str, Any] | DomainError"]
BatchHandler = Callable[[Session, list[Operation]], BatchAnswers]


@dataclass(frozen=True)
class OperationKind:
    """How one kind of write is executed and answered.

    Exactly one of:
    - `handler` runs one operation inside a savepoint and returns the success body (or
      StepTaken); raising DomainError rolls its writes back and records the error.
    - `batch_handler` runs many operations of one partition at once and answers each
      (body or DomainError); it decides before it writes, so a refused operation has
      written nothing, and it needs no savepoints. Up to `max_batch` per call.
    `partition` names what the kind serializes on (e.g. the reward): operations of one
    partition are drained together by one worker transaction, and one drain at a time
    runs them (workers/publish.py). `drains_side_by_side` is for a partition that only
    groups work which does not serialize (award batches of one tenant, spread over many
    participants): each drain then lets the next write wake another to run alongside.
    Kinds that name the same `lane` share its partitions, so their operations drain
    together, in the order they were accepted, through the one batch handler they share
    (a participant's awards and deductions).
    """

    name: str
    handler: Handler | None = None
    batch_handler: BatchHandler | None = None
    success_status: int = 200
    retain_forever: bool = False
    partition: Callable[[dict[str, Any]], str | None] = field(default=lambda payload: None)
    max_batch: int = 200
    drains_side_by_side: bool = False
    lane: str | None = None

    @property
    def partition_prefix(self) -> str:
        return self.lane or self.name


_KINDS: dict[str, OperationKind] = {}
# A partition key's prefix (see partition_key) -> the kind whose drain settings and batch
# handler run that partition.
_DRAINED_BY: dict[str, OperationKind] = {}


def register_kind(kind: OperationKind) -> OperationKind:
    if (kind.handler is None) == (kind.batch_handler is None):
        raise ValueError(
            f"operation kind {kind.name!r} needs exactly one of handler, batch_handler"
        )
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise ValueError(f"operation kind {kind.name!r} registered twice")
    if kind.lane is not None:
        sharing = _DRAINED_BY.get(kind.lane)
        if kind.batch_handler is None or (
            sharing is not None and sharing.batch_handler is not kind.batch_handler
        ):
            raise ValueError(f"kinds of lane {kind.lane!r} need one batch handler")
        _DRAINED_BY.setdefault(kind.lane, kind)
    _KINDS[kind.name] = kind
    _DRAINED_BY.setdefault(kind.name, kind)
    return kind


def get_kind(name: str) -> OperationKind:
    return _KINDS[name]


def partition_key(kind: str, tenant_id: uuid.UUID, env: str, payload: dict[str, Any]) -> str | None:
    registered = get_kind(kind)
    partition = registered.partition(payload)
    if partition is None:
        return None
    return f"{registered.partition_prefix}:{tenant_id}:{env}:{partition}"


def partition_kind(key: str) -> OperationKind:
    """The kind that drains a partition key (see partition_key): its batch handler and
    drain settings run the partition's operations, whichever kinds of its lane they are."""
    return _DRAINED_BY[key.split(":", 1)[0]]


def canonical_json(payload: dict[str, Any]) -> str:
    """The payload as the fingerprint reads it: sorted keys, no spaces."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(kind: str, payload: dict[str, Any], payload_json: str | None = None) -> str:
    """SHA-256 of the canonical JSON of [kind, payload]; `payload_json` is the payload's
    canonical_json when the caller has it already (it is the same text, spelled in parts)."""
    if payload_json is None:
        payload_json = canonical_json(payload)
    canonical = f"[{json.dumps(kind)},{payload_json}]"
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Submission:
    # A snapshot of the row, detached from any session: change the row with a statement.
    operation: Operation
    created: bool  # False: the idempotency key was seen before and this is a replay


@dataclass(frozen=True)
class Write:
    """One write to record: what a worker will execute, and the key its retries carry."""

    tenant_id: uuid.UUID
    env: str
    kind: str
    payload: dict[str, Any]
    idempotency_key: str | None
    # Chosen before recording, so a waiter can listen for the answer first; a replay's
    # operation keeps the id of the write that created it.
    operation_id: uuid.UUID = field(default_factory=uuid.uuid4)


_OPERATIONS = cast(Table, Operation.__table__)
# One statement records any number of writes (the web process groups its concurrent
# requests' writes, see app/group_commit.py). Its text never varies with their number, so
# it is prepared once per connection; and it is plain SQL, as building it through the
# expression layer per request cost more CPU than PostgreSQL's work. The arrays go in
# binary (%b): psycopg escapes text arrays element by element with a regex, which cost
# about 0.5 ms per award-batch payload.
# Every column but the payload, which the caller has already (an award batch's is large).
_RETURNED = tuple(column.name for column in _OPERATIONS.c if column.name != "payload")
_INSERT_OPERATIONS = """
INSERT INTO operations
    (id, tenant_id, env, kind, idempotency_key, fingerprint, payload, partition_key, status,
     attempts)
SELECT id, tenant_id, env, kind, idempotency_key, fingerprint, payload::jsonb, partition_key,
       %(status)s, 0
FROM unnest(%(ids)b::uuid[], %(tenant_ids)b::uuid[], %(envs)b::text[], %(kinds)b::text[],
            %(idempotency_keys)b::text[], %(fingerprints)b::text[], %(payloads)b::text[],
            %(partition_keys)b::text[])
    AS w(id, tenant_id, env, kind, idempotency_key, fingerprint, payload, partition_key)
ON CONFLICT (tenant_id, env, idempotency_key) DO NOTHING
RETURNING """ + ", ".join(_RETURNED)
_SELECT_BY_KEY = select(*_OPERATIONS.c).where(
    _OPERATIONS.c.tenant_id == bindparam("tenant_id"),
    _OPERATIONS.c.env == bindparam("env"),
    _OPERATIONS.c.idempotency_key == bindparam("idempotency_key"),
)


def submit_operations(
    connection: Connection, writes: Sequence[Write]
) -> list[Submission | Exception]:
    """Record writes with one INSERT; each answer is its write's new operation, or the
    earlier one with the same idempotency key (a replay), or the error for its caller alone.

    The unique (tenant, env, key) constraint decides between concurrent first attempts: an
    INSERT waits for the other to commit, then finds its row. Takes a Core connection (a
    session's is `session.connection()`), as the web hot path has no session.
    """
    for write in writes:
        get_kind(write.kind)  # unknown kinds are a programming error, not a client one
    ids = [write.operation_id for write in writes]
    # One serialization per write serves both the fingerprint and the stored payload.
    payloads = [canonical_json(write.payload) for write in writes]
    fingerprints = [
        fingerprint(write.kind, write.payload, payload_json)
        for write, payload_json in zip(writes, payloads, strict=True)
    ]
    try:
        inserted = {
            row.id: row
            for row in connection.exec_driver_sql(
                _INSERT_OPERATIONS,
                {
                    "status": OperationStatus.QUEUED.value,
                    "ids": ids,
                    "tenant_ids": [write.tenant_id for write in writes],
                    "envs": [write.env for write in writes],
                    "kinds": [write.kind for write in writes],
                    "idempotency_keys": [write.idempotency_key for write in writes],
                    "fingerprints": fingerprints,
                    "payloads": payloads,
                    "partition_keys": [
                        partition_key(write.kind, write.tenant_id, write.env, write.payload)
                        for write in writes
                    ],
                },
            )
        }
    except (DataError, IntegrityError):
        if (
            len(writes) == 1
            or connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT"
        ):
            raise
        # A row the database refuses (validation should have stopped it) must fail only its
        # own request: record each write alone (autocommit: nothing of the group was kept).
        return [_submit_alone(connection, write) for write in writes]
    answers: list[Submission | Exception] = []
    for write, operation_id, request_fingerprint in zip(writes, ids, fingerprints, strict=True):
        row = inserted.get(operation_id)
        if row is not None:
            # By position: a row's mapping view costs more than the zip.
            columns = dict(zip(_RETURNED, row, strict=True))
            answers.append(Submission(Operation(**columns, payload=write.payload), created=True))
            continue
        existing = connection.execute(
            _SELECT_BY_KEY,
            {
                "tenant_id": write.tenant_id,
                "env": write.env,
                "idempotency_key": write.idempotency_key,
            },
        ).one()
        if existing.fingerprint != request_fingerprint:
            answers.append(
                DomainError(
                    "IDEMPOTENCY_KEY_REUSED",
                    "This Idempotency-Key was already used with a different request",
                    422,
                )
            )
        else:
            answers.append(Submission(Operation(**existing._mapping), created=False))
    return answers


def _submit_alone(connection: Connection, write: Write) -> Submission | Exception:
    try:
        return submit_operations(connection, [write])[0]
    except DBAPIError as exc:
        return exc


def submit_operation(
    connection: Connection,
    *,
    tenant_id: uuid.UUID,
    env: str,
    kind: str,
    payload: dict[str, Any],
    idempotency_key: str | None,
) -> Submission:
    """Record one write (see submit_operations); raises its error."""
    [answer] = submit_operations(
        connection, [Write(tenant_id, env, kind, payload, idempotency_key)]
    )
    if isinstance(answer, Exception):
        raise answer
    return answer


def get_operation(
    session: Session, tenant_id: uuid.UUID, env: str, operation_id: uuid.UUID
) -> Operation | None:
    return session.execute(
        select(Operation).where(
            Operation.id == operation_id, Operation.tenant_id == tenant_id, Operation.env == env
        )
    ).scalar_one_or_none()


@dataclass(frozen=True)
class OperationsRun:
    finished: list[Operation]
    # Long operations that took a step and must be published again after the commit.
    continuing: list[Operation]


def execute_operations(session: Session, operation_ids: Sequence[uuid.UUID]) -> OperationsRun:
    """Execute the unfinished operations among `operation_ids` in the caller's transaction.

    Rows locked by another worker are skipped (it is running them); finished ones are left
    alone, so a redelivered task is harmless.
    """
    if not operation_ids:
        return OperationsRun([], [])
    locked = session.execute(
        select(Operation)
        .where(Operation.id.in_(operation_ids), Operation.status.in_(UNFINISHED))
        .with_for_update(skip_locked=True)
    ).scalars()
    by_id = {op.id: op for op in locked}
    return _execute_locked(session, [by_id[i] for i in operation_ids if i in by_id])


def drain_partition(session: Session, key: str, limit: int) -> OperationsRun:
    """Execute up to `limit` queued operations of one partition, oldest first, at once.

    SKIP LOCKED: concurrent drains of one partition take disjoint operations (the kind's
    own locks, e.g. the reward row, then serialize their writes). A batch kind's drain
    never goes through the ORM: its operations are read as detached snapshots and its
    answers written with one statement per batch (the unit of work's UPDATE per operation,
    twice over with the attempts counter, cost more than the claims themselves).
    """
    kind = partition_kind(key)
    if kind.batch_handler is None:
        queued = list(
            session.execute(
                select(Operation)
                .where(
                    Operation.partition_key == key,
                    Operation.status == OperationStatus.QUEUED.value,
                )
                .order_by(Operation.created_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        return _execute_locked(session, queued)
    rows = session.connection().execute(_LOCK_QUEUED, {"partition_key": key, "limit": limit})
    snapshots = [Operation(**row._mapping) for row in rows]
    for operation in snapshots:
        operation.attempts += 1  # written with its answer
    run = OperationsRun([], [])
    for chunk in _run_batches(session, kind, snapshots):
        _store_answers(session, chunk)
        run.finished.extend(chunk)
    return run


# What a batch handler reads of its operations (and what the drain writes back below).
_BATCH_COLUMNS = (
    "id", "tenant_id", "env", "kind", "idempotency_key", "payload", "partition_key", "status",
    "attempts",
)  # fmt: skip
_LOCK_QUEUED = (
    select(*(_OPERATIONS.c[name] for name in _BATCH_COLUMNS))
    .where(
        _OPERATIONS.c.partition_key == bindparam("partition_key"),
        _OPERATIONS.c.status == OperationStatus.QUEUED.value,
    )
    .order_by(_OPERATIONS.c.created_at)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
# One JSON document carries every answer of the batch: one parameter, one statement,
# whatever the batch size. The rows are locked by this transaction. The ids are given
# again as an array so that the rows are found by primary key: PostgreSQL guesses 100 rows
# for the JSON and, the table being small, may join them by scanning every operation.
_STORE_ANSWERS = """
    UPDATE operations AS o
    SET status = a.status, http_status = a.http_status, result = a.result, error = a.error,
        attempts = a.attempts, finished_at = a.finished_at
    FROM jsonb_to_recordset(CAST(%(answers)s AS jsonb)) AS a(
        id uuid, status text, http_status integer, result jsonb, error jsonb,
        attempts integer, finished_at timestamptz
    )
    WHERE o.id = ANY(CAST(%(ids)s AS uuid[])) AND o.id = a.id
"""


def _store_answers(session: Session, operations: list[Operation]) -> None:
    """Write finished snapshots' answers (as _finish set them) to their rows."""
    answers = [
        {
            "id": str(operation.id),
            "status": operation.status,
            "http_status": operation.http_status,
            "result": operation.result,
            "error": operation.error,
            "attempts": operation.attempts,
            "finished_at": cast(datetime, operation.finished_at).isoformat(),
        }
        for operation in operations
    ]
    ids = plain_array_literal(str(operation.id) for operation in operations)
    session.connection().exec_driver_sql(
        _STORE_ANSWERS, {"answers": json.dumps(answers), "ids": ids}
    )


def _finish(
    operation: Operation, kind: OperationKind, answer: dict[str, Any] | DomainError
) -> None:
    if isinstance(answer, DomainError):
        operation.status = OperationStatus.FAILED.value
        operation.http_status = answer.status
        operation.error = answer.as_body()
    else:
        operation.status = OperationStatus.SUCCEEDED.value
        operation.http_status = kind.success_status
        operation.result = answer
    operation.finished_at = utcnow()


def _execute_locked(session: Session, operations: list[Operation]) -> OperationsRun:
    """Run operations this transaction has locked: batch kinds together per partition
    (in order), the others one by one, each in its own savepoint."""
    run = OperationsRun([], [])
    batches: dict[tuple[str, str | None], list[Operation]] = {}
    for operation in operations:
        operation.attempts += 1
        kind = get_kind(operation.kind)
        if kind.batch_handler is not None:
            batch_key = (kind.partition_prefix, operation.partition_key)
            batches.setdefault(batch_key, []).append(operation)
            continue
        assert kind.handler is not None
        answer: dict[str, Any] | StepTaken | DomainError
        try:
            with session.begin_nested():
                answer = kind.handler(session, operation)
        except DomainError as error:
            answer = error
        if isinstance(answer, StepTaken):
            operation.status = OperationStatus.PROCESSING.value
            operation.enqueued_at = utcnow()
            run.continuing.append(operation)
            continue
        _finish(operation, kind, answer)
        run.finished.append(operation)
    for (prefix, _), batch in batches.items():
        for chunk in _run_batches(session, _DRAINED_BY[prefix], batch):
            run.finished.extend(chunk)
    session.flush()
    return run


def _run_batches(
    session: Session, kind: OperationKind, operations: list[Operation]
) -> Iterator[list[Operation]]:
    """Run a batch kind's operations, `max_batch` at a time; yields each finished chunk."""
    assert kind.batch_handler is not None
    for start in range(0, len(operations), kind.max_batch):
        chunk = operations[start : start + kind.max_batch]
        answers = kind.batch_handler(session, chunk)
        for operation in chunk:
            _finish(operation, get_kind(operation.kind), answers[operation.id])
        yield chunk


def claim_stalled_operations(
    session: Session, stalled_after: timedelta, limit: int = 1000
) -> list[Operation]:
    """Unfinished operations last published longer ago than `stalled_after`.

    Their publish time is reset, so concurrent sweepers do not republish the same ones;
    rows a worker holds locked are skipped, they are being run.
    """
    now = utcnow()
    candidates = (
        select(Operation.id)
        .where(Operation.status.in_(UNFINISHED), Operation.enqueued_at < now - stalled_after)
        .order_by(Operation.enqueued_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(
        session.execute(
            update(Operation)
            .where(Operation.id.in_(candidates))
            .values(enqueued_at=now)
            .returning(Operation)
        ).scalars()
    )


def purge_expired_idempotency_records(session: Session, retention: timedelta) -> int:
    """Delete finished operations past retention, except kinds whose key is kept forever."""
    forever = [name for name, kind in _KINDS.items() if kind.retain_forever]
    result = session.execute(
        delete(Operation).where(
            Operation.status.in_(FINISHED),
            Operation.finished_at < utcnow() - retention,
            Operation.kind.not_in(forever),
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def operation_answer(operation: Operation) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body a finished operation answers with, for every replay."""
    if operation.status == OperationStatus.SUCCEEDED.value:
        return int(operation.http_status or 200), dict(operation.result or {})
    if operation.status == OperationStatus.FAILED.value:
        error = dict(operation.error or {})
        return int(operation.http_status or error.get("status", 400)), error
    raise ValueError(f"operation {operation.id} has not finished")


def operation_view(operation: Operation) -> dict[str, Any]:
    """The polling representation of an operation."""
    return {
        "operation_id": str(operation.id),
        "kind": operation.kind,
        "status": operation.status,
        "result": operation.result if operation.status == OperationStatus.SUCCEEDED else None,
        "error": operation.error if operation.status == OperationStatus.FAILED else None,
        "progress": operation.progress,
        "created_at": operation.created_at,
        "finished_at": operation.finished_at,
    }


def find_finished_replay(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    env: str,
    kind: str,
    payload: dict[str, Any],
    idempotency_key: str,
) -> Operation | None:
    """The finished operation this request would replay, if there is one (no write)."""
    operation = session.execute(
        select(Operation).where(
            Operation.tenant_id == tenant_id,
            Operation.env == env,
            Operation.idempotency_key == idempotency_key,
        )
    ).scalar_one_or_none()
    if operation is None or operation.status not in FINISHED:
        return None
    if operation.fingerprint != fingerprint(kind, payload):
        return None
    return operation
