"""Polling accepted operations."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint

from api.auth import current_principal
from api.endpoint import Access, endpoint
from api.runtime import runtime
from api.schemas import OperationView
from app.errors import NotFound
from app.models import Operation, OperationStatus
from app.operations import FINISHED, client_error, get_operation

bp = Blueprint("operations", __name__, url_prefix="/api/v1/gamify")


def operation_view(operation: Operation) -> dict[str, Any]:
    """The polling representation of an operation."""
    return {
        "operation_id": str(operation.id),
        "kind": operation.kind,
        "status": operation.status,
        "result": operation.result if operation.status == OperationStatus.SUCCEEDED else None,
        "error": (
            client_error(operation.error) if operation.status == OperationStatus.FAILED else None
        ),
        "progress": operation.progress,
        "created_at": operation.created_at,
        "finished_at": operation.finished_at,
    }


def _operation_not_found() -> NotFound:
    return NotFound("operation_not_found", "No operation exists for the supplied operation_id")


def find_operation(operation_id: str) -> Operation:
    """The caller's operation with that id; 404 operation_not_found for any other."""
    try:
        parsed = uuid.UUID(operation_id)
    except ValueError:
        raise _operation_not_found() from None
    principal = current_principal()
    with runtime().session_factory() as session:
        operation = get_operation(session, principal.tenant_id, principal.env, parsed)
    if operation is None:
        raise _operation_not_found()
    return operation


@endpoint(
    bp,
    "GET",
    "/operations/<operation_id>",
    summary="Status and result of a write",
    tag="operations",
    access=Access.PARTICIPANT,
    responses={200: OperationView},
    errors={404: ("operation_not_found",)},
)
def get_operation_status(operation_id: str) -> tuple[OperationView, int, dict[str, str]]:
    operation = find_operation(operation_id)
    headers = {} if operation.status in FINISHED else {"Retry-After": "1"}
    return OperationView.model_validate(operation_view(operation)), 200, headers
