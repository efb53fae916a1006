"""OpenAPI 3.1 generated from the endpoint declarations, and Swagger UI at /docs."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, send_from_directory
from openapi_ui_bundles import swagger_ui
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from api.endpoint import Access, EndpointDoc
from api.schemas import ErrorBody, OperationAccepted

bp = Blueprint("openapi", __name__)

_FLASK_PARAM = re.compile(r"<(?:(?P<converter>[a-z]+):)?(?P<name>[a-zA-Z_]+)>")
_REF = "#/components/schemas/{model}"

DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>rewards-engine API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
</body></html>"""


def _endpoint_docs(app: Flask) -> list[tuple[str, EndpointDoc]]:
    """(full URL rule, declaration) of every declared endpoint registered on `app`."""
    docs = []
    for rule in app.url_map.iter_rules():
        doc = getattr(app.view_functions[rule.endpoint], "endpoint_doc", None)
        if doc is not None:
            docs.append((rule.rule, doc))
    return sorted(docs, key=lambda item: (item[0], item[1].method))


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
    add(503, "service_unavailable")
    # Refused by the HTTP server before the app sees the request (see api/server.py).
    add(414, "uri_too_long")
    add(431, "request_header_fields_too_large")
    return statuses


Ref = Callable[[type[BaseModel], str], dict[str, Any]]


def build_openapi(app: Flask) -> dict[str, Any]:
    docs = _endpoint_docs(app)
    models: set[tuple[type[BaseModel], JsonSchemaMode]] = {(ErrorBody, "serialization")}
    for _, doc in docs:
        if doc.body is not None or doc.body_doc is not None:
            models.add((doc.body or doc.body_doc, "validation"))  # type: ignore[arg-type]
        for model in doc.responses.values():
            if model is not None:
                models.add((model, "serialization"))
    refs, defs = models_json_schema(
        sorted(models, key=lambda item: (item[0].__name__, item[1])), ref_template=_REF
    )

    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        return refs[(model, mode)]  # type: ignore[index]

    paths: dict[str, dict[str, Any]] = {}
    for rule, doc in docs:
        path, params = _path_and_params(rule)
        paths.setdefault(path, {})[doc.method.lower()] = _operation(doc, path, params, ref)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "rewards-engine",
            "version": "1.0.0",
            "description": "Points, tiers and rewards with idempotent claims.",
        },
        "paths": paths,
        "components": {
            "schemas": dict(defs.get("$defs", {})),
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "Bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }


def _operation(
    doc: EndpointDoc, path: str, params: list[dict[str, Any]], ref: Ref
) -> dict[str, Any]:
    """One path operation: parameters, responses, security and request body."""
    if doc.query is not None:
        params += _query_params(doc.query)
    params += [
        {
            "name": name,
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": description,
        }
        for name, description in doc.headers
    ]
    operation: dict[str, Any] = {
        "summary": doc.summary,
        "tags": [doc.tag],
        "operationId": f"{doc.method.lower()}_{path.strip('/').replace('/', '_')}".replace("{", "")
        .replace("}", "")
        .replace("-", "_"),
        "parameters": params,
        "responses": _responses(doc, bool(params), ref),
    }
    if doc.access is not Access.PUBLIC:
        operation["security"] = [{"ApiKey": []}, {"Bearer": []}]
    body = _request_body(doc, ref)
    if body is not None:
        operation["requestBody"] = body
    return operation


def _responses(doc: EndpointDoc, has_params: bool, ref: Ref) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, model in sorted(doc.responses.items()):
        entry: dict[str, Any] = {"description": "OK" if status < 300 else str(status)}
        if status == 202 and model is OperationAccepted:
            entry["description"] = "Accepted; poll the Location header"
        if model is not None:
            entry["content"] = {"application/json": {"schema": ref(model, "serialization")}}
        responses[str(status)] = entry
    for status, codes in sorted(_error_statuses(doc, has_path_params=has_params).items()):
        if str(status) in responses:
            continue
        responses[str(status)] = {
            "description": "Error: " + ", ".join(codes),
            "content": {"application/json": {"schema": ref(ErrorBody, "serialization")}},
        }
    return responses


def _request_body(doc: EndpointDoc, ref: Ref) -> dict[str, Any] | None:
    content: dict[str, Any] = {}
    json_body = doc.body or doc.body_doc
    if json_body is not None:
        content["application/json"] = {"schema": ref(json_body, "validation")}
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
