"""Admin console sessions: opened with an admin-scoped API key, kept in PostgreSQL.

The browser holds a random token; the table keeps its SHA-256 (a copy of the table signs
nobody in). A session lives until it is ended (sign-out) or expires, and only as long as
the key it was opened with would still be accepted by the API: every request reads the
session together with its key and tenant (one query), so a revoked or expired key, a
disabled tenant or a key no longer admin-scoped ends the session at its next request.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.models import ApiKey, ConsoleSession, Tenant
from app.tenancy import Principal, hash_key, principal_of


class SignInRefused(Exception):
    """An API key the console will not open a session for; `reason` says why, for the form."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class OpenedSession:
    session_id: uuid.UUID
    token: str  # shown to the browser once (in its cookie); only its hash is stored
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class LiveSession:
    """A session that may act now, with the principal its key resolves to."""

    session_id: uuid.UUID
    csrf_token: str
    expires_at: datetime
    principal: Principal


def _new_token() -> str:
    return secrets.token_urlsafe(32)


def check_console_principal(principal: Principal | None) -> Principal:
    """The principal if its key may sign in to the console, by the API's own rules (known,
    not revoked, not expired, tenant enabled) plus an admin scope; else SignInRefused."""
    if principal is None or (principal.expires_at is not None and principal.expires_at <= utcnow()):
        raise SignInRefused("This API key is unknown, expired or revoked.", 401)
    if principal.tenant_disabled:
        raise SignInRefused("This key's tenant is disabled.", 403)
    if not principal.is_admin:
        raise SignInRefused(
            "This key is not admin-scoped: the console needs a key with the admin or "
            "gamify:admin scope. Participant and publishable keys cannot sign in.",
            403,
        )
    return principal


def open_console_session(
    session: Session, principal: Principal, lifetime: timedelta
) -> OpenedSession:
    """A new session for an admin principal (checked by check_console_principal)."""
    token = _new_token()
    opened = ConsoleSession(
        id=uuid.uuid4(),
        token_hash=hash_key(token),
        tenant_id=principal.tenant_id,
        env=principal.env,
        key_id=principal.key_id,
        csrf_token=_new_token(),
        expires_at=utcnow() + lifetime,
    )
    session.add(opened)
    session.flush()
    return OpenedSession(opened.id, token, opened.csrf_token, opened.expires_at)


def find_live_session(session: Session, token: str) -> LiveSession | None:
    """The live session of `token`, or None. A session whose key may no longer sign in
    (revoked, expired, tenant disabled, admin scope gone) is ended here, so it stays ended
    even if the key's trouble is undone later; the caller commits."""
    now = utcnow()
    row = session.execute(
        select(ConsoleSession, ApiKey, Tenant)
        .join(ApiKey, ApiKey.id == ConsoleSession.key_id)
        .join(Tenant, Tenant.id == ConsoleSession.tenant_id)
        .where(
            ConsoleSession.token_hash == hash_key(token),
            ConsoleSession.ended_at.is_(None),
            ConsoleSession.expires_at > now,
        )
    ).first()
    if row is None:
        return None
    console_session, key, tenant = row
    principal = principal_of(key, tenant)
    key_revoked = key.revoked_at is not None
    try:
        if key_revoked:
            raise SignInRefused("revoked", 401)
        check_console_principal(principal)
    except SignInRefused:
        console_session.ended_at = now
        return None
    return LiveSession(
        console_session.id, console_session.csrf_token, console_session.expires_at, principal
    )


def end_console_session(session: Session, session_id: uuid.UUID) -> None:
    """Sign-out: the session's token opens nothing any more."""
    session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.id == session_id, ConsoleSession.ended_at.is_(None))
        .values(ended_at=utcnow())
    )
