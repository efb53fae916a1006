"""One error body for every failure: {code, type, detail, status}."""

from __future__ import annotations

import logging

import redis
from flask import Flask, Response, jsonify
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from api.blocks.jsonapi import error_body as blocks_error_body
from api.blocks.jsonapi import in_dialect
from app.errors import DomainError
from app.metrics import backend_errors, rate_limited

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def error_response(error: DomainError) -> Response:
    if error.status == 429:
        rate_limited.labels(error.code).inc()
    # One error, two shapes: the 23blocks dialect answers JSON:API error documents.
    response = jsonify(blocks_error_body(error) if in_dialect() else error.as_body())
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(error: DomainError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        status = error.code or 500
        code = HTTP_CODES.get(status, "http_error")
        detail = {
            404: "Not found",
            405: "Method not allowed",
            413: "Request body too large",
        }.get(status, error.description or code)
        response = error_response(DomainError(code, detail, status))
        if status == 405 and error.get_response().headers.get("Allow"):
            response.headers["Allow"] = error.get_response().headers["Allow"]
        return response

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeout)
    def _database_down(error: Exception) -> Response:
        backend_errors.labels("postgres", "web").inc()
        log.warning("database unavailable: %s", error)
        response = error_response(
            DomainError("service_unavailable", "Database unavailable, retry shortly", 503)
        )
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    def _broker_down(error: Exception) -> Response:
        backend_errors.labels("redis", "web").inc()
        log.warning("redis unavailable: %s", error)
        response = error_response(
            DomainError("service_unavailable", "Broker unavailable, retry shortly", 503)
        )
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(DomainError("internal_error", "Internal server error", 500))
