"""A tenant environment's points program settings: default expiry, the expiring-soon
window, tier qualification, holidays.

Stored one row per tenant and environment in `program_settings`; no row means the
defaults, so a tenant that never changed its program costs no write and no row. Reads
(`load_program`) and the admin API go through the ORM; set-wise writers ask for what they
go by inside a statement they make anyway (`PROGRAM_SETTINGS`, `program_facts`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import Row, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.infra.pgcopy import fetch_tuples
from app.models import ProgramSettings
from app.outbox import ANY_SUBSCRIBED

POINTS_EXPIRY_DAYS_MIN, POINTS_EXPIRY_DAYS_MAX = 1, 36_500
EXPIRING_SOON_DAYS_MIN, EXPIRING_SOON_DAYS_MAX = 1, 365
DEFAULT_EXPIRING_SOON_DAYS = 30
TIER_WINDOW_DAYS_MIN, TIER_WINDOW_DAYS_MAX = 1, 3_650
HOLIDAYS_MAX = 366  # a year's worth, listed ahead
PROGRAM_FIELDS = frozenset(
    {"points_expiry_days", "expiring_soon_days", "tier_window_days", "holidays"}
)


@dataclass(frozen=True, slots=True)
class Program:
    """The settings the write paths and balance reads go by."""

    # Days until an award's points expire when the award names no expiry; None: never.
    points_expiry_days: int | None = None
    # How far ahead a balance's `expiring_soon` looks.
    expiring_soon_days: int = DEFAULT_EXPIRING_SOON_DAYS
    # Tiers qualify on points earned in this many days (rolling); None: lifetime points.
    tier_window_days: int | None = None
    # The days earning rules' `holiday` multipliers apply, sorted, distinct.
    holidays: tuple[date, ...] = ()


@dataclass(frozen=True, slots=True)
class StoredProgram:
    """The settings as the admin API shows them: when they last changed (None: never)."""

    program: Program
    updated_at: datetime | None


DEFAULT_PROGRAM = Program()
_STORED_COLUMNS = (
    ProgramSettings.points_expiry_days,
    ProgramSettings.expiring_soon_days,
    ProgramSettings.tier_window_days,
    ProgramSettings.holidays,
    ProgramSettings.updated_at,
)


def holidays_of(stored: list[str] | None) -> tuple[date, ...]:
    """The holidays as stored (ISO dates, already sorted and distinct), as dates."""
    return tuple(date.fromisoformat(day) for day in stored or ())


def stored_holidays(days: list[date]) -> list[str]:
    """Holidays as they are stored: ISO dates, sorted, each once."""
    return [day.isoformat() for day in sorted(set(days))]


def _stored(
    row: Row[int | None, int, int | None, list[str], datetime | None],
) -> StoredProgram:
    return StoredProgram(
        Program(
            row.points_expiry_days,
            row.expiring_soon_days,
            row.tier_window_days,
            holidays_of(row.holidays),
        ),
        row.updated_at,
    )


def read_program(session: Session, tenant_id: uuid.UUID, env: str) -> StoredProgram:
    row = session.execute(
        select(*_STORED_COLUMNS).where(
            ProgramSettings.tenant_id == tenant_id, ProgramSettings.env == env
        )
    ).first()
    return _stored(row) if row is not None else StoredProgram(DEFAULT_PROGRAM, None)


def load_program(session: Session, tenant_id: uuid.UUID, env: str) -> Program:
    """The program of one tenant environment: its stored settings, or the defaults."""
    return read_program(session, tenant_id, env).program


def update_program(
    session: Session, tenant_id: uuid.UUID, env: str, changes: dict[str, Any]
) -> StoredProgram:
    """Apply the given PROGRAM_FIELDS changes (values already validated; `holidays` as
    `stored_holidays` makes them); fields not given keep their values. Never commits.

    One upsert rather than read-then-write: two first changes of a tenant's program at
    once cannot both insert (the second updates the first's row), and neither loses the
    field the other set.
    """
    unknown = set(changes) - PROGRAM_FIELDS
    if unknown:
        raise ValueError(f"not program fields: {sorted(unknown)}")
    if not changes:
        return read_program(session, tenant_id, env)
    now = utcnow()
    defaults = {
        "points_expiry_days": DEFAULT_PROGRAM.points_expiry_days,
        "expiring_soon_days": DEFAULT_PROGRAM.expiring_soon_days,
        "tier_window_days": DEFAULT_PROGRAM.tier_window_days,
        "holidays": stored_holidays(list(DEFAULT_PROGRAM.holidays)),
    }
    before = read_program(session, tenant_id, env).program.tier_window_days
    statement = insert(ProgramSettings).values(
        tenant_id=tenant_id, env=env, **{**defaults, **changes}, updated_at=now
    )
    row = session.execute(
        statement.on_conflict_do_update(
            index_elements=[ProgramSettings.tenant_id, ProgramSettings.env],
            set_={**{name: statement.excluded[name] for name in changes}, "updated_at": now},
        ).returning(*_STORED_COLUMNS)
    ).one()
    if "tier_window_days" in changes and changes["tier_window_days"] != before:
        _reevaluate_tiers(session, tenant_id, env)
    return _stored(row)


# Every tiered participant of the program is due for evaluation (app.points.tier_sweeps)
# under the new window. Locked in the one lock order (external id), like every write to
# participants, so this cannot deadlock with the workers' batches; it waits for them.
_REEVALUATE_TIERS = text(
    """
    UPDATE participants SET tier_expires_at = NULL
    WHERE id IN (
        SELECT id FROM participants
        WHERE tenant_id = :tenant_id AND env = :env AND tier_code IS NOT NULL
        ORDER BY external_id
        FOR UPDATE
    )
    """
)


def _reevaluate_tiers(session: Session, tenant_id: uuid.UUID, env: str) -> None:
    session.execute(_REEVALUATE_TIERS, {"tenant_id": tenant_id, "env": env})


class ProgramFacts(NamedTuple):
    """What a set-wise writer goes by, asked once per batch."""

    default_expiry_days: int | None  # an award's expiry when it names none; None: never
    tier_window_days: int | None  # rolling tier qualification; None: lifetime points
    subscribed: bool  # an endpoint subscribes to the events the batch records


# Asked with the subscriber check of set-wise writers (app.outbox.ANY_SUBSCRIBED): one
# round trip for a pass's per-tenant questions.
PROGRAM_SETTINGS = """
    (SELECT json_build_array(points_expiry_days, tier_window_days) FROM program_settings
     WHERE tenant_id = %(tenant_id)s AND env = %(env)s)::text
"""
_PROGRAM_AND_SUBSCRIBED = "SELECT " + PROGRAM_SETTINGS + ", " + ANY_SUBSCRIBED


def program_settings_of(text: str | None) -> tuple[int | None, int | None]:
    """PROGRAM_SETTINGS's answer: (default expiry days, tier window days)."""
    if text is None:
        return None, None
    expiry_days, window_days = json.loads(text)
    return expiry_days, window_days


def program_facts(
    session: Session, tenant_id: uuid.UUID, env: str, event_types: Sequence[str]
) -> ProgramFacts:
    """The program's settings a writer goes by, and whether an endpoint subscribes to
    `event_types` (see app.outbox.endpoint_subscribes)."""
    [(settings, subscribed)] = fetch_tuples(
        session,
        _PROGRAM_AND_SUBSCRIBED,
        {"tenant_id": tenant_id, "env": env, "types": list(event_types)},
    )
    return ProgramFacts(*program_settings_of(settings), bool(subscribed))
