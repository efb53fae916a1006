"""Reward definitions: create, read, update, deactivate, and the live inventory figure."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, case, cast, func, literal, not_, null, or_, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.db import flush_or_conflict
from app.errors import DomainError, NotFound
from app.models import Reward

CODELESS_TYPES = frozenset({"points_multiplier"})
_SLUG_TAKEN = {
    "uq_rewards_tenant_id_env_slug": ("slug_taken", "Another reward already has this slug")
}
# The `popular` sort counts the claims of the last this many UTC days, today included.
POPULAR_DAYS = 30
CatalogSort = Literal["points_cost", "-points_cost", "popular"]


def reward_not_found() -> NotFound:
    return NotFound("reward_not_found", "Reward not found")


def parse_reward_id(value: str) -> uuid.UUID:
    """A path's reward id; anything that is not a UUID names no reward."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise reward_not_found() from None


def generates_codes_when_exhausted(reward: Reward) -> bool:
    return bool((reward.config or {}).get("generate_when_exhausted"))


# generates_codes_when_exhausted in SQL: the config value is true as Python's bool() would
# judge it (config is free-form JSON).
_GENERATES_CODES = cast(
    func.coalesce(Reward.config["generate_when_exhausted"], cast(literal("null"), JSONB)),
    JSONB,
).not_in([cast(literal(falsy), JSONB) for falsy in ("null", "false", "0", '""', "[]", "{}")])

# available_codes(reward) != 0 in SQL, for the catalog's `available` filter.
IN_STOCK: ColumnElement[bool] = and_(
    or_(Reward.total_inventory.is_(None), Reward.total_inventory > Reward.claims_count),
    or_(
        Reward.codes_loaded == 0,
        Reward.codes_allocated < Reward.codes_loaded,
        _GENERATES_CODES,
    ),
)


def recent_claims_deltas(counted: Iterable[tuple[date, int]], today: date) -> list[int] | None:
    """What claims counted on these days (+1 a claim, -1 a cancel) add to each slot of a
    reward's ring of recent claims (Reward.recent_claims; a day's slot is its ordinal
    modulo POPULAR_DAYS); days out of the POPULAR_DAYS days through `today` add nothing.
    None: nothing to add. The claim transaction's writer moves the ring on in SQL
    (app.rewards.claim_writes, the function reward_recent_claims of migration 0010)."""
    deltas = [0] * POPULAR_DAYS
    changed = False
    for day, delta in counted:
        if today - timedelta(days=POPULAR_DAYS) < day <= today:
            deltas[day.toordinal() % POPULAR_DAYS] += delta
            changed = True
    return deltas if changed else None


# The reward's claims of the POPULAR_DAYS (30) days through :today (an ordinal, as
# date.toordinal counts), from its ring: the slots of the days that both the window and
# the ring's own 30 days hold (a ring not moved on since holds stale slots before them).
_MOST_RECENT_CLAIMS_FIRST = """
    (SELECT coalesce(sum(rewards.recent_claims[day % 30 + 1]), 0)
     FROM generate_series(
         greatest(:today, rewards.recent_claims_through - DATE '0001-01-01' + 1) - 29,
         rewards.recent_claims_through - DATE '0001-01-01' + 1
     ) AS day) DESC
"""


def available_codes(reward: Reward) -> int | None:
    """Units a claim can still take right now; None means unlimited.

    total_inventory caps the number of claims whatever the code source; pre-loaded codes
    cap it too unless the reward generates codes once they run out.
    """
    remaining: int | None = None
    if reward.total_inventory is not None:
        remaining = max(reward.total_inventory - reward.claims_count, 0)
    if reward.codes_loaded > 0 and not generates_codes_when_exhausted(reward):
        unallocated = reward.codes_loaded - reward.codes_allocated
        remaining = unallocated if remaining is None else min(remaining, unallocated)
    return remaining


# available_codes(reward) in SQL, beside it so the two cannot drift apart (the console's
# low-stock list reads it). Each limit that does not apply is NULL, and PostgreSQL's
# least() and greatest() skip NULLs (so each NULL is spelled out): both NULL is unlimited.
AVAILABLE_UNITS: ColumnElement[int | None] = func.least(
    case(
        (Reward.total_inventory.is_(None), null()),
        else_=func.greatest(Reward.total_inventory - Reward.claims_count, 0),
    ),
    case(
        (
            and_(Reward.codes_loaded > 0, not_(_GENERATES_CODES)),
            Reward.codes_loaded - Reward.codes_allocated,
        ),
        else_=null(),
    ),
)


def _check_window(available_from: datetime | None, expires_at: datetime | None) -> None:
    if available_from is not None and expires_at is not None and expires_at <= available_from:
        raise DomainError("validation_error", "expires_at must be later than available_from", 422)


def _check_config(reward_type: str, config: dict[str, Any] | None) -> None:
    if reward_type != "points_multiplier":
        return
    multiplier = (config or {}).get("multiplier")
    if not isinstance(multiplier, int | float) or isinstance(multiplier, bool) or multiplier <= 0:
        raise DomainError(
            "validation_error",
            "points_multiplier rewards need config.multiplier, a number greater than 0",
            422,
        )
    days = (config or {}).get("duration_days")
    if days is not None and (not isinstance(days, int) or isinstance(days, bool) or days < 1):
        raise DomainError(
            "validation_error", "config.duration_days must be a whole number of days >= 1", 422
        )


def create_reward(
    session: Session, tenant_id: uuid.UUID, env: str, values: dict[str, Any]
) -> Reward:
    _check_window(values.get("available_from"), values.get("expires_at"))
    _check_config(values["type"], values.get("config"))
    reward = Reward(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        env=env,
        # 32 random bits, unique per tenant and environment (the constraint has the last word).
        lookup_code=f"gamify_{secrets.token_hex(4)}",
        codes_loaded=0,
        codes_allocated=0,
        claims_count=0,
        created_at=utcnow(),
        **values,
    )
    session.add(reward)
    flush_or_conflict(session, _SLUG_TAKEN)
    return reward


def get_reward(
    session: Session, tenant_id: uuid.UUID, env: str, reward_id: uuid.UUID, *, lock: bool = False
) -> Reward:
    query = select(Reward).where(
        Reward.id == reward_id, Reward.tenant_id == tenant_id, Reward.env == env
    )
    if lock:
        query = query.with_for_update()
    reward = session.execute(query).scalar_one_or_none()
    if reward is None:
        raise reward_not_found()
    return reward


def update_reward(
    session: Session, tenant_id: uuid.UUID, env: str, reward_id: uuid.UUID, changes: dict[str, Any]
) -> Reward:
    reward = get_reward(session, tenant_id, env, reward_id, lock=True)
    if "type" in changes:
        if changes.pop("type") != reward.type:
            raise DomainError(
                "validation_error", "The reward type cannot be changed after creation", 422
            )
    _check_window(
        changes.get("available_from", reward.available_from),
        changes.get("expires_at", reward.expires_at),
    )
    if "config" in changes:
        _check_config(reward.type, changes["config"])
    for name, value in changes.items():
        setattr(reward, name, value)
    reward.updated_at = utcnow()
    flush_or_conflict(session, _SLUG_TAKEN)
    return reward


def deactivate_reward(
    session: Session, tenant_id: uuid.UUID, env: str, reward_id: uuid.UUID
) -> Reward:
    return update_reward(session, tenant_id, env, reward_id, {"is_active": False})


def list_rewards_admin(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    *,
    is_active: bool | None,
    reward_type: str | None,
    offset: int,
    limit: int,
) -> tuple[list[Reward], int]:
    conditions = [Reward.tenant_id == tenant_id, Reward.env == env]
    if is_active is not None:
        conditions.append(Reward.is_active.is_(is_active))
    if reward_type is not None:
        conditions.append(Reward.type == reward_type)
    count = select(func.count()).select_from(Reward).where(*conditions)
    total = session.execute(count).scalar_one()
    rewards = session.execute(
        select(Reward)
        .where(*conditions)
        .order_by(Reward.created_at.desc(), Reward.id)
        .offset(offset)
        .limit(limit)
    ).scalars()
    return list(rewards), int(total)


@dataclass(frozen=True, slots=True)
class CatalogFilters:
    """What a participant's catalog page asks for. `available`: True, in stock only;
    False, out of stock only; None, both. Free rewards cost 0 for max_points and sorts."""

    reward_type: str | None = None
    category: str | None = None
    max_points: int | None = None
    available: bool | None = None
    sort: CatalogSort | None = None


def list_claimable_rewards(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    filters: CatalogFilters,
    *,
    offset: int,
    limit: int,
) -> tuple[list[Reward], int]:
    """A page of the active rewards that have not expired, and how many there are.

    Two statements on the (tenant, env, is_active) index: the count, and the page, whose
    `popular` sort sums each reward's ring of recent claims (its own row: no other table
    is read). Catalog order (newest first) breaks ties.
    """
    now = utcnow()
    cost = func.coalesce(Reward.points_cost, 0)
    conditions: list[ColumnElement[bool]] = [
        Reward.tenant_id == tenant_id,
        Reward.env == env,
        Reward.is_active.is_(True),
        or_(Reward.expires_at.is_(None), Reward.expires_at > now),
    ]
    if filters.reward_type is not None:
        conditions.append(Reward.type == filters.reward_type)
    if filters.category is not None:
        conditions.append(Reward.category == filters.category)
    if filters.max_points is not None:
        conditions.append(cost <= filters.max_points)
    if filters.available is not None:
        conditions.append(IN_STOCK if filters.available else not_(IN_STOCK))
    total = session.execute(select(func.count()).select_from(Reward).where(*conditions))
    query = select(Reward).where(*conditions)
    if filters.sort == "points_cost":
        query = query.order_by(cost)
    elif filters.sort == "-points_cost":
        query = query.order_by(cost.desc())
    elif filters.sort == "popular":
        query = query.order_by(
            text(_MOST_RECENT_CLAIMS_FIRST).bindparams(today=now.date().toordinal())
        )
    query = query.order_by(Reward.created_at.desc(), Reward.id).offset(offset).limit(limit)
    return list(session.execute(query).scalars()), int(total.scalar_one())


def admin_view(reward: Reward) -> dict[str, Any]:
    return {
        "id": str(reward.id),
        "lookup_code": reward.lookup_code,
        "name": reward.name,
        "type": reward.type,
        "description": reward.description,
        "points_cost": reward.points_cost,
        "max_claims_per_user": reward.max_claims_per_user,
        "total_inventory": reward.total_inventory,
        "available_codes": available_codes(reward),
        "config": reward.config,
        "is_active": reward.is_active,
        "available_from": reward.available_from,
        "expires_at": reward.expires_at,
        "code_expiry_days": reward.code_expiry_days,
        **_presentation(reward),
        "created_at": reward.created_at,
        "updated_at": reward.updated_at,
    }


def _presentation(reward: Reward) -> dict[str, Any]:
    """What the admin and the catalog both show of a reward beyond its rules."""
    return {
        "category": reward.category,
        "image_url": reward.image_url,
        "slug": reward.slug,
        "custom_attributes": reward.custom_attributes,
        "media": reward.media,
        "redemption_count": reward.claims_count,
    }


def catalog_view(reward: Reward) -> dict[str, Any]:
    return {
        "id": str(reward.id),
        "name": reward.name,
        "type": reward.type,
        "description": reward.description,
        "points_cost": reward.points_cost,
        "available_codes": available_codes(reward),
        "max_claims_per_user": reward.max_claims_per_user,
        "available_from": reward.available_from,
        "expires_at": reward.expires_at,
        **_presentation(reward),
    }


def find_reward_id(
    session: Session, tenant_id: uuid.UUID, env: str, id_or_slug: str
) -> uuid.UUID | None:
    """The tenant environment's reward with that id, or else that slug."""
    query = select(Reward.id).where(Reward.tenant_id == tenant_id, Reward.env == env)
    try:
        query = query.where(Reward.id == uuid.UUID(id_or_slug))
    except ValueError:
        query = query.where(Reward.slug == id_or_slug)
    return session.execute(query).scalar_one_or_none()
