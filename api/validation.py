"""The 422 `validation_error` answer, and checks on path parameters (which pydantic models
do not see)."""

from __future__ import annotations

from typing import Any

from app.errors import DomainError
from app.text import holds_nul

MAX_PARTICIPANT_ID_LENGTH = 255


def validation_failed(errors: list[dict[str, Any]]) -> DomainError:
    """422 `validation_error` listing each field error as {loc, msg, type}."""
    return DomainError(
        "validation_error", "Request validation failed", 422, extra={"errors": errors}
    )


def check_participant_id(participant_id: str) -> None:
    if not 1 <= len(participant_id) <= MAX_PARTICIPANT_ID_LENGTH:
        raise _invalid_participant_id("participant_id must be 1 to 255 characters", "string_length")
    if holds_nul(participant_id):
        raise _invalid_participant_id("must not contain NUL characters", "value_error")


def _invalid_participant_id(message: str, error_type: str) -> DomainError:
    return validation_failed(
        [{"loc": ["path", "participant_id"], "msg": message, "type": error_type}]
    )
