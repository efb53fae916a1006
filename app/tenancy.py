"""Tenants and API keys: creation, revocation and key lookup.

Keys come in two styles of prefix, which only tell a reader what a key is: lookup goes by
the secret's hash, so every style authenticates the same way. The native style is
`bq_live_` / `bq_test_`; the 23blocks style is `sk_live_` / `sk_test_` for secret keys
(the powers their scopes give, like any native key) and `pk_live_` / `pk_test_` for
publishable ones, which carry the `publishable` scope and never an admin scope (what a
publishable key may call is the API's to enforce, by `Principal.is_publishable`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.errors import DomainError, NotFound
from app.models import ApiKey, Environment, Tenant

ADMIN_SCOPES = frozenset({"admin", "gamify:admin"})
PUBLISHABLE_SCOPE = "publishable"
KNOWN_SCOPES = ADMIN_SCOPES | {PUBLISHABLE_SCOPE}


class KeyStyle(StrEnum):
    BQ = "bq"  # native: bq_live_ / bq_test_
    BLOCKS = "blocks"  # 23blocks: sk_ (secret) or pk_ (publishable), then live_ / test_


KEY_PREFIXES = {Environment.LIVE: "bq_live_", Environment.TEST: "bq_test_"}
_ENV_PARTS = {Environment.LIVE: "live_", Environment.TEST: "test_"}
# The stored hint: the key's prefix and this many of its random characters, enough to tell
# keys apart in a list without weakening the secret.
KEY_HINT_RANDOM_CHARS = 4


def key_prefix(style: KeyStyle, env: Environment, *, publishable: bool) -> str:
    if style is KeyStyle.BQ:
        if publishable:
            raise DomainError(
                "invalid_scope", "A publishable key is of the blocks style (pk_live_/pk_test_)"
            )
        return KEY_PREFIXES[env]
    return ("pk_" if publishable else "sk_") + _ENV_PARTS[env]


@dataclass(frozen=True)
class Principal:
    """Who is calling: resolved from an API key, cached by the API for a short TTL."""

    key_id: uuid.UUID
    tenant_id: uuid.UUID
    env: str
    scopes: frozenset[str]
    expires_at: datetime | None
    tenant_disabled: bool
    # The tenant's override of the participant write cap (None: the service default).
    participant_write_rate: float | None = None
    participant_write_burst: int | None = None

    @property
    def is_admin(self) -> bool:
        return bool(self.scopes & ADMIN_SCOPES)

    @property
    def is_publishable(self) -> bool:
        return "publishable" in self.scopes


@dataclass(frozen=True)
class IssuedKey:
    key: str
    key_id: uuid.UUID
    env: str
    scopes: list[str]
    expires_at: datetime | None


def hash_key(secret: str) -> str:
    # The secret carries 192 random bits, so a fast hash is enough: there is nothing to
    # brute-force, and a slow hash would cost every uncached request.
    return hashlib.sha256(secret.encode()).hexdigest()


def create_tenant(session: Session, name: str) -> Tenant:
    tenant = Tenant(id=uuid.uuid4(), name=name)
    session.add(tenant)
    session.flush()
    return tenant


def get_tenant(session: Session, tenant_id: uuid.UUID) -> Tenant:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("tenant_not_found", f"No tenant {tenant_id}")
    return tenant


def set_tenant_disabled(session: Session, tenant_id: uuid.UUID, disabled: bool) -> Tenant:
    tenant = get_tenant(session, tenant_id)
    tenant.is_disabled = disabled
    return tenant


def set_tenant_limits(
    session: Session, tenant_id: uuid.UUID, rate: float | None, burst: int | None
) -> Tenant:
    """Override (or with None, reset) the tenant's participant write cap."""
    if (rate is None) != (burst is None):
        raise DomainError("invalid_limits", "Give both --rate and --burst, or --reset")
    if rate is not None and (rate <= 0 or burst is None or burst < 1):
        raise DomainError("invalid_limits", "rate must be > 0 and burst >= 1")
    tenant = get_tenant(session, tenant_id)
    tenant.participant_write_rate = rate
    tenant.participant_write_burst = burst
    return tenant


def create_api_key(
    session: Session,
    tenant_id: uuid.UUID,
    env: Environment,
    scopes: list[str],
    expires_at: datetime | None = None,
    style: KeyStyle = KeyStyle.BQ,
) -> IssuedKey:
    """A new key of `style`; with the `publishable` scope among `scopes` it is publishable
    (pk_..., blocks style only) and may carry no admin scope."""
    get_tenant(session, tenant_id)
    unknown = sorted(set(scopes) - KNOWN_SCOPES)
    if unknown:
        raise DomainError(
            "invalid_scope",
            f"Unknown scope(s): {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_SCOPES))}",
        )
    publishable = PUBLISHABLE_SCOPE in scopes
    if publishable and ADMIN_SCOPES & set(scopes):
        raise DomainError("invalid_scope", "A publishable key cannot carry an admin scope")
    prefix = key_prefix(style, env, publishable=publishable)
    secret = prefix + secrets.token_urlsafe(24)
    key = ApiKey(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        env=env.value,
        key_hash=hash_key(secret),
        key_hint=secret[: len(prefix) + KEY_HINT_RANDOM_CHARS],
        scopes=sorted(set(scopes)),
        expires_at=expires_at,
    )
    session.add(key)
    session.flush()
    return IssuedKey(secret, key.id, key.env, key.scopes, expires_at)


def revoke_api_key(session: Session, key_id: uuid.UUID) -> ApiKey:
    key = session.get(ApiKey, key_id, with_for_update=True)
    if key is None:
        raise NotFound("key_not_found", f"No API key {key_id}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    return key


def find_principal(session: Session, secret: str) -> Principal | None:
    """The principal for a presented secret, or None if it is unknown or revoked."""
    digest = hash_key(secret)
    row = session.execute(
        select(ApiKey, Tenant)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
    ).first()
    if row is None:
        return None
    key, tenant = row
    # The index lookup already matched; compare again in constant time so the answer
    # never depends on how much of a near-miss hash matched.
    if not hmac.compare_digest(key.key_hash, digest):
        return None
    return principal_of(key, tenant)


def principal_of(key: ApiKey, tenant: Tenant) -> Principal:
    """What a request (or a console session) may do with `key` of `tenant`."""
    return Principal(
        key_id=key.id,
        tenant_id=key.tenant_id,
        env=key.env,
        scopes=frozenset(key.scopes),
        expires_at=key.expires_at,
        tenant_disabled=tenant.is_disabled,
        participant_write_rate=tenant.participant_write_rate,
        participant_write_burst=tenant.participant_write_burst,
    )
