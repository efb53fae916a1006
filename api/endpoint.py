"""The one way to declare an HTTP endpoint: route, access, request and response models.

The declaration drives request validation (pydantic), authentication and the generated
OpenAPI document, so the docs cannot drift from what the code accepts and returns.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ValidationError

from api.auth import authenticate, settle_key_unit
from api.validation import validation_failed
from app.errors import DomainError

M = TypeVar("M", bound=BaseModel)


class Access(enum.Enum):
    PUBLIC = "public"
    PARTICIPANT = "participant"  # any valid key
    ADMIN = "admin"  # a key with the admin or gamify:admin scope


@dataclass(frozen=True)
class EndpointDoc:
    method: str
    rule: str
    summary: str
    tag: str
    access: Access
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    responses: dict[int, type[BaseModel] | None]
    errors: dict[int, tuple[str, ...]] = field(default_factory=dict)
    raw_body_types: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    # A JSON body the view parses itself (because it also takes other media types).
    body_doc: type[BaseModel] | None = None
    # Records a write (api/write_path.accept_write): rate-limited per participant too.
    write: bool = False
    # A publishable key (pk_...) may call it: the reads a browser may make.
    publishable: bool = False


def request_invalid(where: str, exc: ValidationError) -> DomainError:
    return validation_failed(
        [
            {"loc": [where, *error["loc"]], "msg": error["msg"], "type": error["type"]}
            for error in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
    )


ViewResult = Response | tuple[Any, int] | tuple[Any, int, dict[str, str]]


def endpoint(
    blueprint: Blueprint,
    method: str,
    rule: str,
    *,
    summary: str,
    tag: str,
    access: Access,
    responses: dict[int, type[BaseModel] | None],
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    errors: Mapping[int, tuple[str, ...]] | None = None,
    max_body_bytes: int | None = None,
    raw_body_types: tuple[str, ...] = (),
    headers: tuple[tuple[str, str], ...] = (),
    body_doc: type[BaseModel] | None = None,
    write: bool = False,
    publishable: bool | None = None,
) -> Callable[[Callable[..., ViewResult]], Callable[..., ViewResult]]:
    """Register `view` on `blueprint`; it receives path args plus `body`/`query` models.

    `write=True` for views that record a write with api/write_path.accept_write: the API
    key's request unit is then taken there, with the participant's write unit in the same
    Redis call, instead of before the view. A request that ends before that still takes
    it, and a key over its cap is answered 429 either way.

    `publishable`: whether a publishable key may call it; by default, the participant
    reads (GET) may, and nothing else.
    """
    if publishable is None:
        publishable = method == "GET" and access is Access.PARTICIPANT
    doc = EndpointDoc(
        method=method,
        rule=rule,
        summary=summary,
        tag=tag,
        access=access,
        body=body,
        query=query,
        responses=responses,
        errors=dict(errors or {}),
        raw_body_types=raw_body_types,
        headers=headers,
        body_doc=body_doc,
        write=write,
        publishable=publishable,
    )

    def decorate(view: Callable[..., ViewResult]) -> Callable[..., ViewResult]:
        @functools.wraps(view)
        def handle(**path_args: Any) -> Response:
            if max_body_bytes is not None:
                request.max_content_length = max_body_bytes
            if access is not Access.PUBLIC:
                authenticate(
                    require_admin=access is Access.ADMIN,
                    take_key_unit=not write,
                    publishable_allowed=publishable,
                )
            try:
                kwargs: dict[str, Any] = dict(path_args)
                if query is not None:
                    kwargs["query"] = parse_query(query)
                if body is not None:
                    kwargs["body"] = parse_json_body(body)
                result = view(**kwargs)
            except Exception:
                settle_key_unit()  # refused before the write path: the key's 429 first
                raise
            settle_key_unit()
            return render(result)

        handle.endpoint_doc = doc  # type: ignore[attr-defined]
        blueprint.add_url_rule(rule, endpoint=view.__name__, view_func=handle, methods=[method])
        return view

    return decorate


def parse_query(model: type[M]) -> M:
    """The query string validated against `model`. Every declared parameter takes one
    value: a repeated one (`?a=1&a=2`) is refused rather than silently cut to its first."""
    declared = {info.alias or name for name, info in model.model_fields.items()}
    repeated = [
        name for name in request.args if name in declared and len(request.args.getlist(name)) > 1
    ]
    if repeated:
        raise validation_failed(
            [
                {"loc": ["query", name], "msg": "must be given once", "type": "repeated"}
                for name in repeated
            ]
        )
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise request_invalid("query", exc) from None


def parse_json_body(model: type[M]) -> M:
    """The request's JSON body validated against `model`; an empty body reads as {}.

    Parsed by pydantic from the raw bytes in strict mode: JSON types must match the
    schema (no "1" for 1, no 0 for false), as the OpenAPI document promises.
    """
    raw = request.get_data(cache=True)
    if raw and not request.is_json:
        raise DomainError("unsupported_media_type", "Content-Type must be application/json", 415)
    try:
        return model.model_validate_json(raw or b"{}", strict=True)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise DomainError("invalid_json", "Request body is not valid JSON", 400) from None
        raise request_invalid("body", exc) from None


def render(result: ViewResult) -> Response:
    if isinstance(result, Response):
        return result
    payload, status, *rest = result
    if isinstance(payload, BaseModel):
        payload = payload.model_dump(mode="json")
    response = jsonify(payload)
    response.status_code = status
    if rest:
        response.headers.update(rest[0])
    return response
