"""Writes in the 23blocks dialect: the native write path (operation, idempotency, workers,
`Prefer: respond-async`) with its answer translated into the dialect's documents."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from flask import Response, current_app

from api.blocks.jsonapi import PREFIX, Kebab, Single, error_document
from api.write_path import IDEMPOTENCY_HEADER_DOC, PREFER_HEADER_DOC, accept_write

# What every dialect write takes and may answer, besides its own refusals.
WRITE_HEADERS = (IDEMPOTENCY_HEADER_DOC, PREFER_HEADER_DOC)
WRITE_ERRORS: dict[int, tuple[str, ...]] = {
    400: ("IDEMPOTENCY_KEY_INVALID",),
    422: ("validation_error", "IDEMPOTENCY_KEY_REUSED"),
}

# A write's success document, from the native result and the payload that produced it.
TranslateResult = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]

# Each kind's dialect document, for polling a write accepted through the dialect.
RESULT_DOCUMENTS: dict[str, TranslateResult] = {}


def translates(kind: str) -> Callable[[TranslateResult], TranslateResult]:
    """Register `translate` as the dialect's document of `kind`'s result."""

    def register(translate: TranslateResult) -> TranslateResult:
        RESULT_DOCUMENTS[kind] = translate
        return translate

    return register


class AcceptedAttributes(Kebab):
    status: str
    kind: str


# 202: the write is recorded and runs; poll its Location (/v1/rewards/operations/{id}).
AcceptedDocument = Single[Literal["operation"], AcceptedAttributes]


def accepted_document(operation: dict[str, Any]) -> dict[str, Any]:
    return {
        "data": {
            "id": operation["operation_id"],
            "type": "operation",
            "attributes": {"status": operation["status"], "kind": operation["kind"]},
        }
    }


def dialect_write(kind: str, payload: dict[str, Any], *, success_status: int = 201) -> Response:
    """Record `payload` as a `kind` write and answer as the dialect does: its success
    document (from the kind's registered translation) with `success_status`, its errors as
    a JSON:API errors document, or 202 with the operation to poll under /v1/rewards."""
    response = accept_write(kind, payload, None)
    native = response.get_json()
    status = response.status_code
    if status == 202:
        document = accepted_document(native)
        response.headers["Location"] = f"{PREFIX}/operations/{native['operation_id']}"
    elif status < 300:
        document = RESULT_DOCUMENTS[kind](native, payload)
        status = success_status
    else:
        document = error_document(status, native["code"], native["detail"], native)
    response.set_data(current_app.json.dumps(document))
    response.status_code = status
    return response
