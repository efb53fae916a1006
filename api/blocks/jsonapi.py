"""JSON:API documents of the 23blocks dialect: `{"data": {"type", "attributes"}}` with
kebab-case attribute names, and `{"errors": [...]}` error documents.

The dialect's models are ordinary pydantic models with a kebab-case alias generator, so the
same declaration validates requests, renders responses and feeds the dialect's OpenAPI
document (api/blocks/openapi.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, Generic, TypeVar

from flask import Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.schemas import ClientInput, QueryModel
from api.validation import validation_failed
from app.errors import DomainError

PREFIX = "/v1/rewards"
MEDIA_TYPE = "application/vnd.api+json"

T = TypeVar("T", bound=str)
A = TypeVar("A", bound=BaseModel)
M = TypeVar("M", bound=BaseModel)


def kebab(name: str) -> str:
    return name.replace("_", "-")


class Attributes(ClientInput):
    """A request's `attributes`: kebab-case names on the wire, unknown names refused."""

    model_config = ConfigDict(extra="forbid", alias_generator=kebab, validate_by_name=False)


class Kebab(BaseModel):
    """Response attributes (and meta): kebab-case names on the wire."""

    model_config = ConfigDict(alias_generator=kebab, serialize_by_alias=True, validate_by_name=True)


class Resource(ClientInput, Generic[T, A]):
    """A request document's primary data: its `type` must be the one the path takes."""

    model_config = ConfigDict(extra="forbid")
    type: T
    attributes: A


class Document(ClientInput, Generic[T, A]):
    model_config = ConfigDict(extra="forbid")
    data: Resource[T, A]

    @property
    def attributes(self) -> A:
        return self.data.attributes


class ResourceOut(BaseModel, Generic[T, A]):
    id: str
    type: T
    attributes: A


class Single(BaseModel, Generic[T, A]):
    data: ResourceOut[T, A]


class Listed(BaseModel, Generic[T, A]):
    """A list the reference answers without meta."""

    data: list[ResourceOut[T, A]]


class Many(BaseModel, Generic[T, A, M]):
    data: list[ResourceOut[T, A]]
    meta: M


class UnnamedOut(BaseModel, Generic[T, A]):
    """A computed result with no identity of its own (a validation result, a rank)."""

    type: T
    attributes: A


class UnnamedSingle(BaseModel, Generic[T, A]):
    data: UnnamedOut[T, A]


class PageQuery(QueryModel):
    """The document's paging parameters; list queries add their filters to it."""

    page_number: int = Field(default=1, alias="page[number]", ge=1, le=1_000_000)
    page_size: int = Field(default=20, alias="page[size]", ge=1, le=100)

    @property
    def offset(self) -> int:
        return (self.page_number - 1) * self.page_size

    def meta_counts(self, total: int) -> dict[str, int]:
        """The page meta's counts: how many match, in how many pages."""
        return {"total_count": total, "page_count": page_count(total, self.page_size)}


class PageMeta(Kebab):
    total_count: int
    page_count: int


def resource(resource_type: str, resource_id: str, attributes: BaseModel) -> dict[str, Any]:
    """One resource object, as a document's data or an item of its list."""
    return {"id": resource_id, "type": resource_type, "attributes": attributes}


def one(resource_type: str, resource_id: str, attributes: BaseModel) -> dict[str, Any]:
    return {"data": resource(resource_type, resource_id, attributes)}


def page_count(total: int, size: int) -> int:
    return math.ceil(total / size) if total else 0


# --- Errors ------------------------------------------------------------------------------

# Native codes the document names otherwise; every other native code passes through.
DOCUMENT_CODES = {
    "max_claims_reached": "reward_limit_reached",
    "reward_not_available": "reward_out_of_stock",
    "coupon_not_found": "invalid_coupon",
}
# The document's error table: its descriptions are the errors' titles.
DOCUMENT_TITLES = {
    "insufficient_points": "User doesn't have enough points",
    "invalid_coupon": "Coupon code is invalid",
    "coupon_expired": "Coupon has expired",
    "coupon_usage_limit": "Coupon usage limit reached",
    "coupon_already_used": "User already used this coupon",
    "reward_out_of_stock": "Reward is not available",
    "reward_limit_reached": "User reached redemption limit",
    "tier_not_found": "Tier doesn't exist",
    "badge_already_awarded": "User already has this badge",
    "referral_invalid": "Invalid referral code",
    "referral_self": "Cannot refer yourself",
    "streak_not_active": "No active streak for this type",
    "challenge_ended": "Challenge has ended",
    "challenge_not_enrolled": "User not enrolled in challenge",
}


def in_dialect() -> bool:
    """Whether the request being answered speaks the 23blocks dialect."""
    return request.path == PREFIX or request.path.startswith(PREFIX + "/")


def document_code(native_code: str) -> str:
    return DOCUMENT_CODES.get(native_code, native_code)


def _title(code: str, status: int) -> str:
    if code in DOCUMENT_TITLES:
        return DOCUMENT_TITLES[code]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _source(loc: list[Any]) -> dict[str, str]:
    """Where a field error points: a JSON pointer into the body, or the query parameter or
    path segment it is about."""
    where, *path = loc or ["body"]
    if where == "body":
        return {"pointer": "/" + "/".join(str(part) for part in path)}
    return {"parameter": str(path[0]) if path else str(where)}


def error_document(status: int, code: str, detail: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON:API errors document for a native error body's parts: one error object per
    field error of a validation error, else one."""
    code = document_code(code)
    status_text = str(status)
    field_errors = extra.get("errors")
    if code == "validation_error" and field_errors:
        return {
            "errors": [
                {
                    "status": status_text,
                    "code": code,
                    "title": "Invalid attribute"
                    if error["loc"][:1] == ["body"]
                    else "Invalid parameter",
                    "detail": error["msg"],
                    "source": _source(list(error["loc"])),
                }
                for error in field_errors
            ]
        }
    return {
        "errors": [
            {"status": status_text, "code": code, "title": _title(code, status), "detail": detail}
        ]
    }


def error_body(error: DomainError) -> dict[str, Any]:
    return error_document(error.status, error.code, error.detail, error.extra)


class ErrorObject(BaseModel):
    status: str = Field(description="The HTTP status, as a string")
    code: str
    title: str
    detail: str
    source: dict[str, str] | None = Field(
        default=None, description="{pointer: /data/attributes/<name>} or {parameter: <name>}"
    )


class ErrorsDocument(BaseModel):
    errors: list[ErrorObject]


def native_model(model: type[M], attribute_names: Mapping[str, str], **fields: Any) -> M:
    """The native request model the dialect's attributes translate to, so the native rules
    check them; a refusal points at the dialect's attribute (`attribute_names` maps native
    field names to the document's), or at the attributes as a whole."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_url=False, include_context=False, include_input=False):
            field = error["loc"][0] if error["loc"] else None
            attribute = attribute_names.get(str(field), kebab(str(field))) if field else None
            loc = ["body", "data", "attributes", *([attribute] if attribute else [])]
            errors.append({"loc": loc, "msg": error["msg"], "type": error["type"]})
        raise validation_failed(errors) from None


def set_media_type(response: Response) -> Response:
    """JSON answers in the dialect are JSON:API documents, and say so."""
    if in_dialect() and response.mimetype == "application/json":
        response.mimetype = MEDIA_TYPE
    return response


Translate = Callable[[dict[str, Any]], dict[str, Any]]


def respond(document: Mapping[str, Any], status: int, headers: Mapping[str, str] = {}) -> Response:
    response = jsonify(document)
    response.status_code = status
    response.headers.update(headers)
    return response
