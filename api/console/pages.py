"""The console's page frame: rendering with the layout, the nav, HTML error pages, the
response headers every page gets, and queued writes through the API's write path."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Response, abort, current_app, g, render_template, request, url_for
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from api.console import bp
from api.console.signin import (
    CSRF_FIELD,
    UPLOAD_LIMIT_ATTRIBUTE,
    ConsoleOff,
    CsrfRefused,
    current_sign_in,
    signed_in,
)
from api.write_path import accept_write
from app.errors import DomainError

__all__ = [
    "NAV",
    "WriteAnswer",
    "accepts_upload",
    "is_htmx",
    "render_page",
    "signed_in",
    "submit_write",
]

V = TypeVar("V", bound=Callable[..., Any])

# (label, endpoint): an entry is shown once a module declares its endpoint, so pages built
# later appear by themselves.
NAV: tuple[tuple[str, str], ...] = (
    ("Overview", "console.overview"),
    ("Rewards", "console.rewards"),
    ("Participants", "console.participants"),
    ("Bulk jobs", "console.bulk_jobs"),
    ("Webhooks", "console.webhooks"),
    ("Program", "console.program"),
    ("Audit log", "console.audit_log"),
)
# A form's idempotency token (the Idempotency-Key of the write it submits).
FORM_TOKEN_FIELD = "form_token"  # noqa: S105 (a field name, not a secret)


def render_page(template: str, *, title: str, status: int = 200, **context: Any) -> Response:
    """`template` (extending console/layout.html) as an HTML response titled `title`."""
    body = render_template(template, title=title, **context)
    return Response(body, status=status, mimetype="text/html")


def is_htmx() -> bool:
    """Whether htmx sent the request (it then wants a fragment, not a page)."""
    return request.headers.get("HX-Request") == "true"


def accepts_upload(max_bytes: int) -> Callable[[V], V]:
    """Let a view's request body be up to `max_bytes` (uploads); put it under @bp.post."""

    def mark(view: V) -> V:
        setattr(view, UPLOAD_LIMIT_ATTRIBUTE, max_bytes)
        return view

    return mark


def new_form_token() -> str:
    return "console-" + secrets.token_urlsafe(18)


@bp.app_template_global()
def csrf_field() -> Markup:
    """The hidden CSRF field of the signed-in session's forms."""
    sign_in = current_sign_in()
    token = sign_in.csrf_token if sign_in is not None else ""
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, token)


@bp.app_template_global()
def form_token() -> Markup:
    """A hidden field with a fresh idempotency token: a form posted twice writes once."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(
        FORM_TOKEN_FIELD, new_form_token()
    )


def _in_section(endpoint: str, href: str) -> bool:
    # A section's inner pages live under its address (/console/rewards/<id>,
    # /console/participants/view, ...), whatever their endpoints are named; the overview's
    # address, /console/, is above every page, so only itself counts for it.
    current = request.endpoint or ""
    if current == endpoint:
        return True
    return endpoint != "console.overview" and request.path.startswith(href.rstrip("/") + "/")


@bp.context_processor
def layout_context() -> dict[str, Any]:
    sign_in = current_sign_in()
    nav = [
        (label, href, _in_section(endpoint, href))
        for label, endpoint in NAV
        if endpoint in current_app.view_functions
        for href in (url_for(endpoint),)
    ]
    return {"console": sign_in, "nav": nav, "csrf_token": sign_in.csrf_token if sign_in else ""}


@bp.url_value_preprocessor
def refuse_nul_in_path(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    """An id in the path holding U+0000 names nothing: PostgreSQL text cannot store it,
    and a query with it fails (a 500) instead of finding nothing."""
    if values and any("\x00" in str(value) for value in values.values()):
        abort(404)


@bp.after_request
def page_headers(response: Response) -> Response:
    # Every answer but our static files shows a tenant's data (pages, and the CSV
    # downloads of coupon codes and failed rows): never stored by a browser or a proxy.
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
    # Pages are never framed, and run scripts only our own.
    if response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
        )
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
    return response


def _error_page(status: int, heading: str, detail: str) -> Response:
    if is_htmx():
        return render_page("console/alert.html", title=heading, status=status, detail=detail)
    return render_page(
        "console/error.html", title=heading, status=status, heading=heading, detail=detail
    )


@bp.errorhandler(CsrfRefused)
def csrf_refused(_: CsrfRefused) -> Response:
    return _error_page(
        400,
        "Form refused",
        "This form was sent without a valid form token (CSRF), so nothing was done. "
        "Reload the page (sign in again if your session ended) and submit it again.",
    )


@bp.errorhandler(ConsoleOff)
def console_off(_: ConsoleOff) -> Response:
    return _error_page(
        503,
        "Console not configured",
        "The console signs its cookies with CONSOLE_SECRET_KEY, or a key derived from "
        "SECRET_KEY; neither is set on this server.",
    )


@bp.errorhandler(DomainError)
def domain_error(error: DomainError) -> Response:
    response = _error_page(error.status, "Request refused", f"{error.detail} ({error.code})")
    response.headers.update(error.headers)
    return response


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException) -> Response:
    status = error.code or 500
    messages = {
        404: ("Not found", "There is nothing at this address."),
        405: ("Method not allowed", "This page does not take that kind of request."),
        413: ("Too large", "The upload is larger than this page accepts."),
    }
    heading, detail = messages.get(status, (error.name, error.description or error.name))
    return _error_page(status, heading, detail)


@dataclass(frozen=True)
class WriteAnswer:
    """What the write path answered: 200 with the result, 202 still running, or a refusal
    (the API's error body: code, detail, status)."""

    status: int
    body: dict[str, Any]

    @property
    def succeeded(self) -> bool:
        return self.status == 200

    @property
    def accepted(self) -> bool:
        return self.status == 202

    @property
    def detail(self) -> str:
        return str(self.body.get("detail", ""))


def submit_write(kind: str, payload: dict[str, Any], idempotency_key: str) -> WriteAnswer:
    """Submit a queued write exactly as the API does (rate limits, operation row,
    idempotency on `idempotency_key`, workers, bounded wait); a refusal raised before the
    write is recorded (429, a reused key) comes back as an answer too."""
    g.key_unit_taken = False  # the write path takes the key's unit with the participant's
    try:
        response = accept_write(kind, payload, idempotency_key)
    except DomainError as error:
        return WriteAnswer(error.status, error.as_body())
    return WriteAnswer(response.status_code, response.get_json())
