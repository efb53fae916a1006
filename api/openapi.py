"""OpenAPI 3.1 generated from the endpoint declarations, and Swagger UI at /docs."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, send_from_directory
from openapi_ui_bundles import swagger_ui
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from api.endpoint import Access, EndpointDoc
from api.request_log import GIVEN_REQUEST_ID, REQUEST_ID_HEADER
from api.schemas import ErrorBody, OperationView
from api.webhooks.events import EVENT_DATA
from api.write_path import IDEMPOTENCY_HEADER_DOC, IDEMPOTENCY_KEY_PATTERN
from app.coupons.generation import GenerateProgress
from app.engagement.bulk_actions import ActionBulkProgress
from app.points.bulk import BulkProgress

bp = Blueprint("openapi", __name__)

_FLASK_PARAM = re.compile(r"<(?:(?P<converter>[a-z]+):)?(?P<name>[a-zA-Z_]+)>")
_REF = "#/components/schemas/{model}"
# The progress each kind of long job reports on its operation.
JOB_PROGRESS = (BulkProgress, ActionBulkProgress, GenerateProgress)

DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>rewards-engine API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
</body></html>"""


def _endpoint_docs(app: Flask) -> list[tuple[str, str, EndpointDoc]]:
    """(full URL rule, operationId, declaration) of every declared endpoint on `app`.

    The operationId is the view's name (`create_webhook`, `get_participant_badges`), which
    is what a generated client names its functions after; prefixed with its blueprint's
    name only where two blueprints use the same view name."""
    found: list[tuple[str, str, EndpointDoc]] = []
    for url_rule in app.url_map.iter_rules():
        doc = getattr(app.view_functions[url_rule.endpoint], "endpoint_doc", None)
        if doc is not None:
            found.append((url_rule.rule, url_rule.endpoint, doc))
    view_names = Counter(endpoint.rsplit(".", 1)[-1] for _, endpoint, _ in found)
    docs = []
    for rule, endpoint, doc in found:
        view_name = endpoint.rsplit(".", 1)[-1]
        operation_id = view_name if view_names[view_name] == 1 else endpoint.replace(".", "_")
        docs.append((rule, operation_id, doc))
    return sorted(docs, key=lambda item: (item[0], item[2].method))


def _path_and_params(rule: str) -> tuple[str, list[dict[str, Any]]]:
    params = []
    for match in _FLASK_PARAM.finditer(rule):
        schema: dict[str, Any] = {"type": "string"}
        if match["converter"] == "uuid":
            schema["format"] = "uuid"
        params.append({"name": match["name"], "in": "path", "required": True, "schema": schema})
    return _FLASK_PARAM.sub(r"{\g<name>}", rule), params


def _query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    # The JSON schema names properties by alias, as the query string does (`from`).
    properties = model.model_json_schema(ref_template=_REF)["properties"]
    params = []
    for name, info in model.model_fields.items():
        wire_name = info.alias or name
        params.append(
            {
                "name": wire_name,
                "in": "query",
                "required": info.is_required(),
                "schema": properties[wire_name],
                **({"description": info.description} if info.description else {}),
            }
        )
    return params


def _error_statuses(doc: EndpointDoc, *, has_path_params: bool) -> dict[int, list[str]]:
    """Every error status an endpoint can answer: its own, plus the plumbing's."""
    statuses: dict[int, list[str]] = {status: list(codes) for status, codes in doc.errors.items()}

    def add(status: int, code: str) -> None:
        codes = statuses.setdefault(status, [])
        if code not in codes:
            codes.append(code)

    takes_body = doc.body is not None or doc.body_doc is not None or bool(doc.raw_body_types)
    if takes_body:
        add(400, "invalid_json")
        add(413, "payload_too_large")
        add(415, "unsupported_media_type")
    if takes_body or doc.query is not None or has_path_params:
        add(422, "validation_error")
    if has_path_params:
        add(404, "not_found")
    if doc.access is not Access.PUBLIC:
        add(401, "unauthorized")
        add(403, "forbidden")
        add(429, "RATE_LIMIT_KEY_EXCEEDED")
    if doc.write:
        add(429, "RATE_LIMIT_PARTICIPANT_EXCEEDED")
    add(503, "service_unavailable")
    # Refused by the HTTP server before the app sees the request (see api/server.py).
    add(414, "uri_too_long")
    add(431, "request_header_fields_too_large")
    return statuses


Ref = Callable[[type[BaseModel], str], dict[str, Any]]


@dataclass(frozen=True)
class Dialect:
    """One wire dialect's document: which paths, and how its bodies and errors look."""

    title: str
    description: str
    path_prefix: str | None  # None: every path outside the other dialects' prefixes
    media_type: str = "application/json"
    error_model: type[BaseModel] = ErrorBody

    def includes(self, rule: str) -> bool:
        if self.path_prefix is None:
            return not any(rule.startswith(prefix) for prefix in OTHER_DIALECT_PREFIXES)
        return rule.startswith(self.path_prefix)


OTHER_DIALECT_PREFIXES = ("/v1/rewards/",)
NATIVE = Dialect(
    title="rewards-engine",
    description="Points, tiers and rewards with idempotent claims.",
    path_prefix=None,
)


def build_openapi(app: Flask, dialect: Dialect = NATIVE) -> dict[str, Any]:
    docs = [item for item in _endpoint_docs(app) if dialect.includes(item[0])]
    error_model = dialect.error_model
    models: set[tuple[type[BaseModel], JsonSchemaMode]] = {(error_model, "serialization")}
    for _, _, doc in docs:
        if doc.body is not None or doc.body_doc is not None:
            models.add((doc.body or doc.body_doc, "validation"))  # type: ignore[arg-type]
        for model in doc.responses.values():
            if model is not None:
                models.add((model, "serialization"))
    if dialect is NATIVE:
        for model in set(EVENT_DATA.values()):
            models.add((model, "serialization"))
    refs, defs = models_json_schema(
        sorted(models, key=lambda item: (item[0].__name__, item[1])), ref_template=_REF
    )

    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        return refs[(model, mode)]  # type: ignore[index]

    schemas = dict(defs.get("$defs", {}))
    _type_operation_results(schemas, docs, ref)
    paths: dict[str, dict[str, Any]] = {}
    for rule, operation_id, doc in docs:
        path, params = _path_and_params(rule)
        paths.setdefault(path, {})[doc.method.lower()] = _operation(
            doc, operation_id, params, ref, dialect
        )
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": dialect.title, "version": "1.0.0", "description": dialect.description},
        "paths": paths,
    }
    if dialect is NATIVE:
        spec["webhooks"] = {
            event_type: _webhook(event_type, ref(model, "serialization"))
            for event_type, model in sorted(EVENT_DATA.items())
        }
    return spec | {
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "Bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }


def _type_operation_results(
    schemas: dict[str, Any], docs: list[tuple[str, str, EndpointDoc]], ref: Ref
) -> None:
    """An operation's `result` is the success body of the write that recorded it: one of
    the write endpoints' 200/201 bodies, rather than any object."""
    view = schemas.get(OperationView.__name__)
    if view is None:
        return
    bodies = {
        model
        for _, _, doc in docs
        if doc.write
        for status, model in doc.responses.items()
        if status in (200, 201) and model is not None
    }
    view["properties"]["result"] = {
        "anyOf": [
            *(ref(model, "serialization") for model in sorted(bodies, key=lambda m: m.__name__)),
            # A long job's (a bulk upload's, a code generation's) summary of what it did.
            {"type": "object", "title": "JobSummary"},
            {"type": "null"},
        ],
        "description": "The success body of the write, as its endpoint answers it, or a "
        "long job's summary",
    }
    # A long job's progress: what its dataclass holds (as_json), by the dataclass's name.
    for progress in JOB_PROGRESS:
        schemas[progress.__name__] = TypeAdapter(progress).json_schema(mode="serialization")
    view["properties"]["progress"] = {
        "anyOf": [
            *({"$ref": _REF.format(model=progress.__name__)} for progress in JOB_PROGRESS),
            {"type": "null"},
        ],
        "description": "How far a long job (a bulk upload, a code generation) has come",
    }


def _webhook(event_type: str, data_schema: dict[str, Any]) -> dict[str, Any]:
    """What the engine POSTs to an endpoint subscribed to `event_type` (Standard Webhooks:
    signed with the webhook-id, webhook-timestamp and webhook-signature headers)."""
    return {
        "post": {
            "summary": f"{event_type}, signed per Standard Webhooks",
            "operationId": "on_" + event_type.replace(".", "_"),
            "tags": ["webhooks"],
            "parameters": [
                {"name": name, "in": "header", "required": True, "schema": {"type": "string"}}
                for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["type", "timestamp", "data"],
                            "properties": {
                                "type": {"const": event_type},
                                "timestamp": {"type": "string", "format": "date-time"},
                                "data": data_schema,
                            },
                        }
                    }
                },
            },
            "responses": {"2XX": {"description": "Received; anything else is retried"}},
        }
    }


def _operation(
    doc: EndpointDoc, operation_id: str, params: list[dict[str, Any]], ref: Ref, dialect: Dialect
) -> dict[str, Any]:
    """One path operation: parameters, responses, security and request body."""
    has_path_params = bool(params)  # only the path's, so far
    if doc.query is not None:
        params += _query_params(doc.query)
    params += [
        {
            "name": name,
            "in": "header",
            "required": False,
            "schema": HEADER_SCHEMAS.get(name, {"type": "string"}),
            "description": description,
        }
        for name, description in doc.headers
    ]
    params.append(REQUEST_ID_PARAM)
    operation: dict[str, Any] = {
        "summary": doc.summary,
        "tags": [doc.tag],
        "operationId": operation_id,
        "parameters": params,
        "responses": _responses(doc, has_path_params, ref, dialect),
    }
    if doc.access is not Access.PUBLIC:
        operation["security"] = [{"ApiKey": []}, {"Bearer": []}]
    body = _request_body(doc, ref, dialect.media_type)
    if body is not None:
        operation["requestBody"] = body
    return operation


def _responses(
    doc: EndpointDoc, has_path_params: bool, ref: Ref, dialect: Dialect
) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, model in sorted(doc.responses.items()):
        entry: dict[str, Any] = {"description": "OK" if status < 300 else str(status)}
        headers = dict(ALWAYS_HEADERS)
        if status == 202:
            entry["description"] = "Accepted; poll the Location header"
            headers |= ACCEPTED_HEADERS
        if doc.write:
            headers |= RATE_LIMIT_HEADERS
        entry["headers"] = headers
        if model is not None:
            entry["content"] = {dialect.media_type: {"schema": ref(model, "serialization")}}
        responses[str(status)] = entry
    for status, codes in sorted(_error_statuses(doc, has_path_params=has_path_params).items()):
        if str(status) in responses:
            continue
        headers = dict(ALWAYS_HEADERS)
        if status == 429:
            headers |= RATE_LIMIT_HEADERS | RETRY_AFTER
        elif status == 503:
            headers |= RETRY_AFTER
        responses[str(status)] = {
            "description": "Error: " + ", ".join(codes),
            "headers": headers,
            "content": {dialect.media_type: {"schema": ref(dialect.error_model, "serialization")}},
        }
    return responses


def _header(description: str, schema_type: str = "string") -> dict[str, Any]:
    return {"description": description, "schema": {"type": schema_type}}


ALWAYS_HEADERS = {
    "X-Request-ID": _header("The caller's X-Request-ID, or one made for this request"),
}
RETRY_AFTER = {"Retry-After": _header("Seconds to wait before trying again", "integer")}
ACCEPTED_HEADERS = {
    "Location": _header("The operation to poll: /api/v1/gamify/operations/{operation_id}"),
    "Preference-Applied": _header("respond-async, when the request asked for it"),
    **RETRY_AFTER,
}
RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": _header("The participant's write burst", "integer"),
    "RateLimit-Remaining": _header("Writes the participant may still make now", "integer"),
    "RateLimit-Reset": _header("Seconds until the burst is whole again", "integer"),
}
# Anchored: OpenAPI patterns match anywhere in the value; ours must match all of it.
HEADER_SCHEMAS: dict[str, dict[str, Any]] = {
    IDEMPOTENCY_HEADER_DOC[0]: {
        "type": "string",
        "pattern": f"^{IDEMPOTENCY_KEY_PATTERN.pattern}$",
    },
}
REQUEST_ID_PARAM = {
    "name": REQUEST_ID_HEADER,
    "in": "header",
    "required": False,
    # No pattern: an unfit id is replaced, not refused.
    "schema": {"type": "string"},
    "description": (
        f"Carried into the answer, the logs and the operation when it is {GIVEN_REQUEST_ID.pattern}"
        "; otherwise (or when missing) one is made"
    ),
}


def _request_body(doc: EndpointDoc, ref: Ref, media_type: str) -> dict[str, Any] | None:
    content: dict[str, Any] = {}
    json_body = doc.body or doc.body_doc
    if json_body is not None:
        content[media_type] = {"schema": ref(json_body, "validation")}
    for media_type in doc.raw_body_types:
        # Raw text uploads: any bytes are a body; the rows inside are checked one by one.
        content[media_type] = {"schema": {"type": "string", "format": "binary"}}
    if not content:
        return None
    required = bool(doc.raw_body_types) or any(
        field.is_required() for field in (json_body.model_fields.values() if json_body else [])
    )
    return {"required": required, "content": content}


@bp.get("/openapi.json")
def openapi_json() -> Response:
    spec = current_app.extensions.get("openapi_spec")
    if spec is None:
        spec = current_app.extensions["openapi_spec"] = build_openapi(current_app)
    return jsonify(spec)


@bp.get("/docs")
def docs_page() -> Response:
    return Response(DOCS_HTML, mimetype="text/html")


@bp.get("/docs/assets/<path:filename>")
def docs_assets(filename: str) -> Response:
    return send_from_directory(swagger_ui.static_path, filename, max_age=86400)
