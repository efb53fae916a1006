"""Accepted writes: recorded with their idempotency key, and replayed.

The web process records writes with `submit_operations` (one INSERT for a group of them,
see api/recording.py) and commits before telling anyone a write is accepted; a worker
runs them (app/operation_runs.py) and stores the exact response, so every replay of the
key answers the same (`operation_answer`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from app.errors import DomainError
from app.logs import REQUEST_ID
from app.models import Operation, OperationStatus
from app.operation_kinds import get_kind, partition_key

FINISHED = (OperationStatus.SUCCEEDED.value, OperationStatus.FAILED.value)
UNFINISHED = (OperationStatus.QUEUED.value, OperationStatus.PROCESSING.value)
# The key of an operation's error that tells the operator how its runs failed
# (app/operation_failures.py). Never part of an answer: an exception's text may quote SQL
# and its parameters.
FAILURE_DIAGNOSIS = "failures"


# Set on a session that recorded operations of its own (a worker's transaction making a
# claim for a completed challenge): the worker publishes them after the commit.
_TO_PUBLISH = "operations_to_publish"


def publish_after_commit(session: Session, operations: Sequence[Operation]) -> None:
    """Ask the worker running this transaction to publish `operations` once it commits
    (if it dies first, the sweeper publishes them: they are queued)."""
    if operations:
        session.info.setdefault(_TO_PUBLISH, []).extend(operations)


def operations_to_publish(session: Session) -> list[Operation]:
    return list(session.info.get(_TO_PUBLISH, ()))


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
    # The request's X-Request-ID (or, for a write a worker records, the id of the operation
    # it runs): the worker logs it while running the operation (app/logs.py).
    request_id: str | None = field(default_factory=REQUEST_ID.get)
    # Whether its request asked for `Prefer: respond-async` (True) or waits for the answer
    # (False); None when no request waits on it (Operation.async_requested).
    async_requested: bool | None = None


_OPERATIONS = cast(Table, Operation.__table__)
# One statement records any number of writes (the web process groups its concurrent
# requests' writes, see app/infra/group_commit.py). Its text never varies with their number, so
# it is prepared once per connection; and it is plain SQL, as building it through the
# expression layer per request cost more CPU than PostgreSQL's work. The arrays go in
# binary (%b): psycopg escapes text arrays element by element with a regex, which cost
# about 0.5 ms per award-batch payload.
# Every column but the payload, which the caller has already (an award batch's is large).
_RETURNED = tuple(column.name for column in _OPERATIONS.c if column.name != "payload")
_INSERT_OPERATIONS = """
INSERT INTO operations
    (id, tenant_id, env, kind, idempotency_key, fingerprint, payload, partition_key, status,
     attempts, request_id, async_requested)
SELECT id, tenant_id, env, kind, idempotency_key, fingerprint, payload::jsonb, partition_key,
       %(status)s, 0, request_id, async_requested
FROM unnest(%(ids)b::uuid[], %(tenant_ids)b::uuid[], %(envs)b::text[], %(kinds)b::text[],
            %(idempotency_keys)b::text[], %(fingerprints)b::text[], %(payloads)b::text[],
            %(partition_keys)b::text[], %(request_ids)b::text[], %(async_requested)b::bool[])
    AS w(id, tenant_id, env, kind, idempotency_key, fingerprint, payload, partition_key,
         request_id, async_requested)
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
                    "request_ids": [write.request_id for write in writes],
                    "async_requested": [write.async_requested for write in writes],
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
        else:
            answers.append(_replay(connection, write, request_fingerprint))
    return answers


def _replay(
    connection: Connection, write: Write, request_fingerprint: str
) -> Submission | Exception:
    """The earlier operation of a write's idempotency key, or why it cannot be replayed."""
    existing = connection.execute(
        _SELECT_BY_KEY,
        {
            "tenant_id": write.tenant_id,
            "env": write.env,
            "idempotency_key": write.idempotency_key,
        },
    ).one()
    if existing.fingerprint != request_fingerprint:
        return DomainError(
            "IDEMPOTENCY_KEY_REUSED",
            "This Idempotency-Key was already used with a different request",
            422,
        )
    return Submission(Operation(**existing._mapping), created=False)


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


def operation_answer(operation: Operation) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body a finished operation answers with, for every replay."""
    if operation.status == OperationStatus.SUCCEEDED.value:
        return int(operation.http_status or 200), dict(operation.result or {})
    if operation.status == OperationStatus.FAILED.value:
        error = client_error(operation.error) or {}
        return int(operation.http_status or error.get("status", 400)), error
    raise ValueError(f"operation {operation.id} has not finished")


def client_error(error: dict[str, Any] | None) -> dict[str, Any] | None:
    """An operation's error as its client sees it: without the operator's diagnosis."""
    if error is None:
        return None
    return {key: value for key, value in error.items() if key != FAILURE_DIAGNOSIS}


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
