"""API-key authentication: X-API-Key, or Authorization: Bearer."""

from __future__ import annotations

from flask import g, request

from api.auth_cache import is_missing
from api.runtime import runtime
from app.clock import utcnow
from app.errors import DomainError
from app.infra.rate_limit import Decision, Limit
from app.tenancy import Principal, find_principal, hash_key


def _unauthorized() -> DomainError:
    return DomainError("unauthorized", "Missing, invalid, expired or revoked API key", 401)


def _presented_secret() -> str | None:
    secret = request.headers.get("X-API-Key")
    if secret:
        return secret.strip()
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def authenticate(
    *, require_admin: bool, take_key_unit: bool = True, publishable_allowed: bool = False
) -> Principal:
    """The request's principal. With `take_key_unit=False` the key's request unit is left
    for the write path to take with the participant's (see api/write_path.py), or for
    `settle_key_unit` if the request ends before that. A publishable key (pk_..., made to
    sit in a browser) is refused where `publishable_allowed` is False."""
    secret = _presented_secret()
    if not secret or len(secret) > 200:
        raise _unauthorized()
    rt = runtime()
    digest = hash_key(secret)
    cached = rt.key_cache.get(digest)
    if is_missing(cached):
        with rt.session_factory() as session:
            principal = find_principal(session, secret)
        rt.key_cache.put(digest, principal)
    else:
        principal = cached  # type: ignore[assignment]
    if principal is None:
        raise _unauthorized()
    if principal.expires_at is not None and principal.expires_at <= utcnow():
        raise _unauthorized()
    if principal.tenant_disabled:
        raise DomainError("forbidden", "Tenant is disabled", 403)
    if principal.is_publishable and not publishable_allowed:
        raise DomainError(
            "forbidden", "A publishable key may only read and record streak actions", 403
        )
    if require_admin and not principal.is_admin:
        raise DomainError("forbidden", "API key is missing the admin or gamify:admin scope", 403)
    g.principal = principal
    g.key_unit_taken = False
    if take_key_unit:
        settle_key_unit()
    return principal


def key_request_unit(principal: Principal) -> tuple[str, Limit]:
    """The subject and limit of an API key's request cap."""
    settings = runtime().settings
    return f"key:{principal.key_id}", Limit(settings.key_request_rate, settings.key_request_burst)


def key_unit_decided(decision: Decision | None) -> None:
    """Record that this request's key unit was taken; raise its 429 if it was refused."""
    g.key_unit_taken = True
    if decision is not None and not decision.allowed:
        raise DomainError(
            "RATE_LIMIT_KEY_EXCEEDED",
            f"Too many requests for this API key; retry after {decision.retry_after_seconds} s",
            429,
            headers=rate_limit_headers(decision),
        )


def settle_key_unit() -> None:
    """Take the request's key unit unless it was taken already: a key over its cap is
    answered 429 whatever else the request would have got."""
    if g.get("key_unit_taken", True):
        return
    key_unit_decided(runtime().rate_limiter.take(*key_request_unit(current_principal())))


def rate_limit_headers(decision: Decision) -> dict[str, str]:
    """Retry-After (on refusals) and the RateLimit-* fields of the IETF draft."""
    headers = {
        "RateLimit-Limit": str(decision.limit.burst),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(max(0, -(-decision.reset_ms // 1000))),
    }
    if not decision.allowed:
        headers["Retry-After"] = str(decision.retry_after_seconds)
    return headers


def current_principal() -> Principal:
    return g.principal  # type: ignore[no-any-return]
