"""Polling a write accepted through the dialect (the 202's Location)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from api.blocks.jsonapi import PREFIX, Kebab, Single, error_document, one
from api.blocks.writes import RESULT_DOCUMENTS
from api.endpoint import Access, endpoint
from api.operations import find_operation
from app.models import Operation, OperationStatus
from app.operations import FINISHED, operation_answer

bp = Blueprint("blocks_operations", __name__, url_prefix=PREFIX)


class OperationAttributes(Kebab):
    kind: str
    status: str
    result: dict[str, Any] | None = None
    errors: list[dict[str, Any]] | None = None


def _attributes(operation: Operation) -> OperationAttributes:
    attributes = OperationAttributes(kind=operation.kind, status=operation.status)
    if operation.status not in FINISHED:
        return attributes
    status, body = operation_answer(operation)
    if operation.status == OperationStatus.SUCCEEDED.value:
        translate = RESULT_DOCUMENTS.get(operation.kind)
        attributes.result = translate(body, operation.payload) if translate else body
    else:
        attributes.errors = error_document(status, body["code"], body["detail"], body)["errors"]
    return attributes


@endpoint(
    bp,
    "GET",
    "/operations/<operation_id>",
    summary="Status of a write answered 202; once finished, its document or its errors",
    tag="23blocks: operations",
    access=Access.PARTICIPANT,
    responses={200: Single[str, OperationAttributes]},
    errors={404: ("operation_not_found",)},
)
def blocks_get_operation(operation_id: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    operation = find_operation(operation_id)
    headers = {} if operation.status in FINISHED else {"Retry-After": "1"}
    return one("operation", str(operation.id), _attributes(operation)), 200, headers
