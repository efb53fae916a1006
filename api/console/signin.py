"""Console sign-in: the session cookie, the CSRF check, and the sign-in and sign-out pages.

The cookie `rewards_console` carries only the session's random token, signed (itsdangerous)
with the console's secret; the session itself is a row in PostgreSQL
(app/console_sessions.py), read with its key on every request. Before a session exists,
the sign-in form's CSRF token is the one signed into the `rewards_console_login` cookie
(a double submit: a cross-site page can neither read the cookie nor forge its signature).
"""

from __future__ import annotations

import base64
import functools
import hmac
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Response, current_app, g, redirect, request, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response as BaseResponse

from api.audit import audit_change
from api.console import bp
from api.runtime import runtime
from app.config import Settings
from app.console_sessions import (
    LiveSession,
    SignInRefused,
    check_console_principal,
    end_console_session,
    find_live_session,
    open_console_session,
)
from app.tenancy import find_principal

SESSION_COOKIE = "rewards_console"
LOGIN_CSRF_COOKIE = "rewards_console_login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
COOKIE_PATH = "/console"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Reachable without a session (everything else under /console needs one).
OPEN_ENDPOINTS = frozenset({"console.login", "console.login_submit", "console.static"})
LOGIN_FORM_SECONDS = 3600
# Set on a view function (pages.accepts_upload): its request body may be this large.
UPLOAD_LIMIT_ATTRIBUTE = "console_max_body_bytes"
MAX_KEY_CHARS = 200
_HKDF_INFO = b"rewards-engine console cookies"

# The session's console view of the request: see signed_in().
ConsoleSignIn = LiveSession


class ConsoleOff(Exception):
    """Neither CONSOLE_SECRET_KEY nor SECRET_KEY is set: nothing to sign cookies with."""


class CsrfRefused(Exception):
    """An unsafe request without the form token of its session (or of the sign-in form)."""


@functools.lru_cache(maxsize=8)
def _derived_secret(key: str) -> bytes:
    return base64.urlsafe_b64encode(
        HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(key.encode())
    )


def cookie_secret(settings: Settings) -> bytes:
    """CONSOLE_SECRET_KEY; unset, a key derived (HKDF) from SECRET_KEY's newest key, so
    the webhook sealing key itself never signs anything."""
    if settings.console_secret_key is not None:
        return settings.console_secret_key.get_secret_value().encode()
    keys = settings.secret_keys()
    if not keys:
        raise ConsoleOff
    return _derived_secret(keys[0])


def _serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(cookie_secret(runtime().settings), salt=salt)


def session_lifetime() -> timedelta:
    return timedelta(seconds=runtime().settings.console_session_seconds)


def signed_in() -> ConsoleSignIn:
    """The request's live console session (only views past the sign-in check call it)."""
    return g.console_sign_in  # type: ignore[no-any-return]


def current_sign_in() -> ConsoleSignIn | None:
    return g.get("console_sign_in")


def _set_cookie(response: BaseResponse, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Lax",
        # Behind a TLS proxy, gunicorn sets the scheme from X-Forwarded-Proto (trusted from
        # FORWARDED_ALLOW_IPS), so this is true there too.
        secure=request.is_secure,
    )


def _session_token() -> str | None:
    signed = request.cookies.get(SESSION_COOKIE)
    if not signed:
        return None
    try:
        token = _serializer("console-session").loads(
            signed, max_age=runtime().settings.console_session_seconds
        )
    except BadSignature:
        return None
    return token if isinstance(token, str) else None


def _load_sign_in() -> ConsoleSignIn | None:
    token = _session_token()
    if token is None:
        return None
    with runtime().session_factory.begin() as session:
        return find_live_session(session, token)


def _presented_csrf_token() -> str:
    return request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""


def _tokens_match(presented: str, expected: str) -> bool:
    return bool(presented) and hmac.compare_digest(presented.encode(), expected.encode())


def _login_form_token() -> str | None:
    signed = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not signed:
        return None
    try:
        token = _serializer("console-login").loads(signed, max_age=LOGIN_FORM_SECONDS)
    except BadSignature:
        return None
    return token if isinstance(token, str) else None


def _sign_in_again() -> BaseResponse:
    target = url_for("console.login", next=request.full_path.rstrip("?"))
    if request.headers.get("HX-Request"):
        response = Response("Signed out", status=401)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target, 303)


@bp.before_request
def require_sign_in_and_csrf() -> BaseResponse | None:
    """Every console request: the audit marker; then, but for the open endpoints, a live
    session; and for every unsafe method the CSRF token, before any view runs."""
    g.audit_via = "console"
    view = current_app.view_functions.get(request.endpoint or "")
    upload_limit = getattr(view, UPLOAD_LIMIT_ATTRIBUTE, None)
    if upload_limit is not None:
        request.max_content_length = upload_limit  # before the form is read below
    cookie_secret(runtime().settings)  # raises ConsoleOff: the error page says what to set
    if request.endpoint in OPEN_ENDPOINTS:
        if request.method in UNSAFE_METHODS:
            expected = _login_form_token()
            if expected is None or not _tokens_match(_presented_csrf_token(), expected):
                raise CsrfRefused
        return None
    sign_in = _load_sign_in()
    if request.method in UNSAFE_METHODS and (
        sign_in is None or not _tokens_match(_presented_csrf_token(), sign_in.csrf_token)
    ):
        raise CsrfRefused
    if sign_in is None:
        return _sign_in_again()
    g.console_sign_in = sign_in
    # The API's helpers (audit_change, accept_write) read the principal from here.
    g.principal = sign_in.principal
    g.key_unit_taken = True  # console reads are not metered as API requests
    return None


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/console/"):
            return target
    return url_for("console.overview")


def _login_page(
    status: int, message: str | None = None, *, field_error: str | None = None
) -> BaseResponse:
    from api.console.pages import render_page

    form_token = _login_form_token() or secrets.token_urlsafe(32)
    response = render_page(
        "console/login.html",
        title="Sign in",
        status=status,
        login_csrf_token=form_token,
        message=message,
        field_error=field_error,
        next_path=request.values.get("next", ""),
    )
    _set_cookie(
        response,
        LOGIN_CSRF_COOKIE,
        _serializer("console-login").dumps(form_token),
        LOGIN_FORM_SECONDS,
    )
    return response


@bp.get("/login")
def login() -> BaseResponse:
    if _load_sign_in() is not None:
        return redirect(url_for("console.overview"), 303)
    ended = request.args.get("next") and request.cookies.get(SESSION_COOKIE)
    return _login_page(200, "Your session has ended; sign in again." if ended else None)


@bp.post("/login")
def login_submit() -> BaseResponse:
    secret = request.form.get("api_key", "").strip()
    if not secret:
        return _login_page(400, field_error="Enter an API key.")
    rt = runtime()
    try:
        with rt.session_factory.begin() as session:
            principal = check_console_principal(
                find_principal(session, secret) if len(secret) <= MAX_KEY_CHARS else None
            )
            opened = open_console_session(session, principal, session_lifetime())
            g.principal = principal
            audit_change(session, "console.signed_in", opened.session_id)
    except SignInRefused as refused:
        return _login_page(refused.status, field_error=refused.reason)
    response = redirect(_safe_next(request.form.get("next")), 303)
    _set_cookie(
        response,
        SESSION_COOKIE,
        _serializer("console-session").dumps(opened.token),
        rt.settings.console_session_seconds,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=COOKIE_PATH)
    return response


@bp.post("/logout")
def logout() -> BaseResponse:
    sign_in = signed_in()
    with runtime().session_factory.begin() as session:
        end_console_session(session, sign_in.session_id)
        audit_change(session, "console.signed_out", sign_in.session_id)
    response = redirect(url_for("console.login"), 303)
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="Lax")
    return response
