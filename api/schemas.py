"""Response and request models shared by every feature."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from app.text import holds_nul


class ClientInput(BaseModel):
    """Anything a client sends: no string in it, however deeply nested, may hold U+0000."""

    # Fields whose items are validated one by one later, each bad one reported on its own.
    checked_per_item: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*")
    @classmethod
    def _refuse_nul(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name not in cls.checked_per_item and holds_nul(value):
            raise ValueError("must not contain NUL characters")
        return value


class RequestModel(ClientInput):
    """Base for request bodies: unknown fields are rejected with 422 (documented)."""

    model_config = ConfigDict(extra="forbid")


class QueryModel(ClientInput):
    """Base for query strings: unknown parameters are ignored, as browsers add their own."""

    model_config = ConfigDict(extra="ignore")


def _no_default_in_schema(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def kept_when_absent(description: str) -> Any:
    """A PATCH field: one not sent keeps its stored value, so the document shows no default.
    (The None default is never read: the view applies only the fields sent.)"""
    return Field(default=None, description=description, json_schema_extra=_no_default_in_schema)


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable error code")
    type: str = Field(description="Same value as code, for clients written against error.type")
    detail: str = Field(description="Human-readable message")
    status: int
    errors: list[FieldError] | None = Field(default=None, description="validation_error only")


class MessageBody(BaseModel):
    message: str


OperationState = Literal["queued", "processing", "succeeded", "failed"]


class OperationAccepted(BaseModel):
    operation_id: str
    status: OperationState
    kind: str


class OperationView(BaseModel):
    operation_id: str
    kind: str
    status: OperationState
    result: dict[str, Any] | None = None
    error: ErrorBody | None = None
    progress: dict[str, Any] | None = None
    created_at: datetime
    finished_at: datetime | None = None


class PageQuery(QueryModel):
    page: int = Field(default=1, ge=1, le=1_000_000)
    page_size: int = Field(default=50, ge=1, le=100)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size
