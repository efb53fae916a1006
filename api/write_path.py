"""The web half of every write: idempotency, record, publish, wait (bounded), answer.

1. The operation row is committed before anything is published or answered, so an
   accepted write survives any crash after this point (the sweeper republishes it).
2. Sync by default: wait for the worker's "finished" nudge up to SYNC_WAIT_TIMEOUT_SECONDS,
   then answer exactly what the operation stored; past the timeout, answer 202.
3. `Prefer: respond-async`: answer 202 at once with a Location to poll.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask import Response, g, jsonify, request

from api.auth import current_principal, key_request_unit, key_unit_decided, rate_limit_headers
from api.runtime import runtime
from app.errors import DomainError
from app.infra.rate_limit import Decision, Limit
from app.metrics import sync_writes_deferred
from app.models import Operation
from app.operations import FINISHED, Write, find_finished_replay, get_operation, operation_answer
from app.tenancy import Principal

IDEMPOTENCY_KEY_PATTERN = re.compile(r"[A-Za-z0-9_\-:.]{1,255}")
OPERATIONS_PATH = "/api/v1/gamify/operations/"
IDEMPOTENCY_HEADER_DOC = (
    "Idempotency-Key",
    "1 to 255 characters of [A-Za-z0-9_-:.]; a retry with the same key returns the original result",
)
PREFER_HEADER_DOC = ("Prefer", "respond-async: answer 202 at once and poll the operation")


def _invalid_key(where: str) -> DomainError:
    return DomainError(
        "IDEMPOTENCY_KEY_INVALID",
        f"{where} must be 1 to 255 characters of A-Z, a-z, 0-9, _, -, : or .",
        400,
    )


def resolve_idempotency_key(body_key: str | None) -> str | None:
    """The key from the Idempotency-Key header or the body's idempotency_key."""
    header_key = request.headers.get("Idempotency-Key")
    if header_key is not None and not IDEMPOTENCY_KEY_PATTERN.fullmatch(header_key):
        raise _invalid_key("Idempotency-Key")
    if body_key is not None and not IDEMPOTENCY_KEY_PATTERN.fullmatch(body_key):
        raise _invalid_key("idempotency_key")
    if header_key is not None and body_key is not None and header_key != body_key:
        raise DomainError(
            "IDEMPOTENCY_KEY_MISMATCH",
            "The Idempotency-Key header and the body idempotency_key differ",
            400,
        )
    return header_key if header_key is not None else body_key


def wants_async() -> bool:
    preferences = request.headers.get("Prefer", "")
    return any(token.strip().lower() == "respond-async" for token in re.split(r"[,;]", preferences))


def _respond(status: int, body: dict[str, Any]) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


def _answer(operation: Operation) -> Response:
    return _respond(*operation_answer(operation))


def accepted_response(operation: Operation, *, async_requested: bool) -> Response:
    """202 with the operation to poll: every accepted write that has not finished."""
    response = jsonify(
        {"operation_id": str(operation.id), "status": operation.status, "kind": operation.kind}
    )
    response.status_code = 202
    response.headers["Location"] = f"{OPERATIONS_PATH}{operation.id}"
    response.headers["Retry-After"] = "1"
    if async_requested:
        response.headers["Preference-Applied"] = "respond-async"
    return response


def _participant_write_limit(principal: Principal) -> Limit:
    settings = runtime().settings
    return Limit(
        principal.participant_write_rate or settings.participant_write_rate,
        principal.participant_write_burst or settings.participant_write_burst,
    )


@dataclass(frozen=True)
class ParticipantQuota:
    """One unit taken from a participant's write cap (given back if the write is a replay)."""

    subject: str
    decision: Decision  # its limit is the one to give the unit back under


def _take_write_units(
    principal: Principal, kind: str, payload: dict[str, Any], idempotency_key: str | None
) -> ParticipantQuota | Operation | None:
    """Take the API key's request unit and, if the write names one participant, a unit of
    that participant's write cap: one Redis call (the endpoint is declared `write=True`).

    Returns the participant's unit taken; or, for a request over the participant's cap
    that replays a finished idempotency key, that operation (replays never count); None
    when the write names no single participant or Redis is unreachable (fail open).
    """
    assert not g.key_unit_taken, "an endpoint that records writes is declared write=True"
    units = [key_request_unit(principal)]
    participant_id = payload.get("participant_id")
    if isinstance(participant_id, str):
        subject = f"pw:{principal.tenant_id}:{principal.env}:{participant_id}"
        units.append((subject, _participant_write_limit(principal)))
    decisions = runtime().rate_limiter.take_in_order(units)
    key_unit_decided(decisions[0] if decisions else None)
    if decisions is None or len(units) == 1:
        return None
    decision = decisions[1]
    if decision.allowed:
        return ParticipantQuota(subject, decision)
    if idempotency_key is not None:
        with runtime().session_factory() as session:
            replay = find_finished_replay(
                session,
                tenant_id=principal.tenant_id,
                env=principal.env,
                kind=kind,
                payload=payload,
                idempotency_key=idempotency_key,
            )
        if replay is not None:
            return replay
    raise DomainError(
        "RATE_LIMIT_PARTICIPANT_EXCEEDED",
        f"Too many writes for this participant; retry after {decision.retry_after_seconds} s",
        429,
        headers=rate_limit_headers(decision),
    )


def accept_write(kind: str, payload: dict[str, Any], body_idempotency_key: str | None) -> Response:
    """Accept one write: `payload` is what the worker executes (without the key); the
    key comes from the Idempotency-Key header or the body's `idempotency_key`."""
    idempotency_key = resolve_idempotency_key(body_idempotency_key)
    principal = current_principal()
    limited = _take_write_units(principal, kind, payload, idempotency_key)
    if isinstance(limited, Operation):
        return _answer(limited)
    response = _record_and_answer(principal, kind, payload, idempotency_key, limited)
    if limited is not None:
        response.headers.update(rate_limit_headers(limited.decision))
    return response


def _record_and_answer(
    principal: Principal,
    kind: str,
    payload: dict[str, Any],
    idempotency_key: str | None,
    quota: ParticipantQuota | None,
) -> Response:
    rt = runtime()
    async_requested = wants_async()
    write = Write(
        principal.tenant_id,
        principal.env,
        kind,
        payload,
        idempotency_key,
        async_requested=async_requested,
    )
    # A sync request listens before its write can reach a worker, so the answer cannot
    # arrive before anyone listens for it.
    waiter = None if async_requested else rt.completions.expect(write.operation_id)
    try:
        submission = rt.recorder.record(write)
        operation = submission.operation
        if not submission.created and quota is not None:
            # A replay is not a new write: its unit goes back.
            rt.rate_limiter.give_back(quota.subject, quota.decision.limit)
        if operation.status in FINISHED:
            return _answer(operation)
        if waiter is None:
            return accepted_response(operation, async_requested=True)
        if not submission.created:
            # A replay of a write still running: listen for that operation, then read it
            # again, in case it finished between the lookup and the listening.
            waiter.cancel()
            waiter = rt.completions.expect(operation.id)
            current = _read_operation(principal, operation)
            if current is not None and current.status in FINISHED:
                return _answer(current)
        finished = waiter.wait(rt.settings.sync_wait_timeout_seconds)
    finally:
        if waiter is not None:
            waiter.cancel()
    if finished is not None:
        return _respond(finished.status, finished.body)
    # No answer in time (or it was lost): the database has the last word.
    current = _read_operation(principal, operation)
    if current is not None and current.status in FINISHED:
        return _answer(current)
    sync_writes_deferred.labels(kind).inc()
    return accepted_response(current or operation, async_requested=False)


def _read_operation(principal: Principal, operation: Operation) -> Operation | None:
    with runtime().session_factory() as session:
        return get_operation(session, principal.tenant_id, principal.env, operation.id)
