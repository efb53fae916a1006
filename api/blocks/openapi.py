"""The dialect's own OpenAPI document, generated from the models that validate it."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from api.blocks.jsonapi import MEDIA_TYPE, PREFIX, ErrorsDocument
from api.openapi import Dialect, build_openapi

bp = Blueprint("blocks_openapi", __name__, url_prefix=PREFIX)

BLOCKS = Dialect(
    title="rewards-engine: 23blocks Rewards Block dialect",
    description="The 23blocks Rewards Block API (JSON:API, kebab-case attributes), served "
    "by the same engine and data as the native API.",
    path_prefix=PREFIX + "/",
    media_type=MEDIA_TYPE,
    error_model=ErrorsDocument,
)


@bp.get("/openapi.json")
def blocks_openapi_json() -> Response:
    spec = current_app.extensions.get("blocks_openapi_spec")
    if spec is None:
        spec = current_app.extensions["blocks_openapi_spec"] = build_openapi(current_app, BLOCKS)
    response = jsonify(spec)
    response.mimetype = "application/json"  # the document itself is not a JSON:API document
    return response
