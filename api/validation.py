"""Checks on path parameters, which pydantic models do not see."""

from __future__ import annotations

from app.errors import DomainError
from app.text import holds_nul

MAX_PARTICIPANT_ID_LENGTH = 255


def check_participant_id(participant_id: str) -> None:
    if not 1 <= len(participant_id) <= MAX_PARTICIPANT_ID_LENGTH:
        raise _invalid_participant_id("participant_id must be 1 to 255 characters", "string_length")
    if holds_nul(participant_id):
        raise _invalid_participant_id("must not contain NUL characters", "value_error")


def _invalid_participant_id(message: str, error_type: str) -> DomainError:
    return DomainError(
        "validation_error",
        "Request validation failed",
        422,
        extra={"errors": [{"loc": ["path", "participant_id"], "msg": message, "type": error_type}]},
    )
