"""A tenant environment's referral program: what each side is paid, what completes a
referral (and the least amount that qualifies), the referrer's limit, how long a pending
referral lasts, the codes' length, whether it runs.

One row per tenant and environment in `referral_programs`; no row means not configured,
and the program is inactive until an admin configures it (PUT replaces the whole).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.models import ReferralProgram

DEFAULT_CODE_LENGTH = 8
CODE_LENGTH_MIN, CODE_LENGTH_MAX = 6, 32
REFERRAL_POINTS_MAX = 1_000_000  # what one award may pay (app.points.items)
EXPIRATION_DAYS_MAX = 3650


@dataclass(frozen=True, slots=True)
class ReferralTerms:
    """The program's settings as the writes go by them."""

    referrer_points: int
    referee_points: int
    completion_action: str | None  # None: referrals complete only by hand
    max_referrals_per_referrer: int | None  # None: no limit
    code_length: int = DEFAULT_CODE_LENGTH
    active: bool = True
    # A completion qualifies only with an amount at least this; None: any amount, or none.
    min_qualifying_amount: Decimal | None = None
    # A referral tracked while this is set expires that many days after; None: never.
    expiration_days: int | None = None


@dataclass(frozen=True, slots=True)
class StoredReferralProgram:
    terms: ReferralTerms | None  # None: never configured
    updated_at: datetime | None


_COLUMNS = (
    ReferralProgram.referrer_points,
    ReferralProgram.referee_points,
    ReferralProgram.completion_action,
    ReferralProgram.max_referrals_per_referrer,
    ReferralProgram.code_length,
    ReferralProgram.active,
    ReferralProgram.min_qualifying_amount,
    ReferralProgram.expiration_days,
    ReferralProgram.updated_at,
)


def read_referral_program(
    session: Session, tenant_id: uuid.UUID, env: str
) -> StoredReferralProgram:
    row = session.execute(
        select(*_COLUMNS).where(ReferralProgram.tenant_id == tenant_id, ReferralProgram.env == env)
    ).first()
    if row is None:
        return StoredReferralProgram(None, None)
    terms = ReferralTerms(
        row.referrer_points,
        row.referee_points,
        row.completion_action,
        row.max_referrals_per_referrer,
        row.code_length,
        row.active,
        row.min_qualifying_amount,
        row.expiration_days,
    )
    return StoredReferralProgram(terms, row.updated_at)


def referral_terms(session: Session, tenant_id: uuid.UUID, env: str) -> ReferralTerms | None:
    """The program's terms; None when it was never configured."""
    return read_referral_program(session, tenant_id, env).terms


def put_referral_program(
    session: Session, tenant_id: uuid.UUID, env: str, terms: ReferralTerms
) -> StoredReferralProgram:
    """Replace the program's settings (validated already), in one upsert: two first
    configurations at once cannot both insert. Never commits."""
    now = utcnow()
    values = {
        "referrer_points": terms.referrer_points,
        "referee_points": terms.referee_points,
        "completion_action": terms.completion_action,
        "max_referrals_per_referrer": terms.max_referrals_per_referrer,
        "code_length": terms.code_length,
        "active": terms.active,
        "min_qualifying_amount": terms.min_qualifying_amount,
        "expiration_days": terms.expiration_days,
        "updated_at": now,
    }
    statement = insert(ReferralProgram).values(tenant_id=tenant_id, env=env, **values)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[ReferralProgram.tenant_id, ReferralProgram.env], set_=values
        )
    )
    return StoredReferralProgram(terms, now)


# The program's completion action when it is active and among the actions a batch counts
# (`counted_actions`, a text array): asked by the everyday write with its other per-tenant
# constants (app.points.balance_changes) and by the award pass's routing question
# (app.engagement.pipeline.engagement_reacts). A primary-key probe: a program without
# referrals, or a batch without that action, pays nothing more.
COMPLETION_ACTION_AMONG = """
    SELECT completion_action FROM referral_programs
    WHERE tenant_id = %(tenant_id)s AND env = %(env)s AND active
      AND completion_action = ANY(CAST(%(counted_actions)s AS text[]))
"""
