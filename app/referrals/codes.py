"""A participant's referral code: made on the first ask, the same ever after.

Made by the web process that is asked, not by a worker: the get-or-create is idempotent
by construction (the first INSERT for a participant wins, and every later or concurrent
ask reads its code), so it needs no idempotency key and no queue. The unique keys decide:
one code per participant, one participant per code.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.referrals.program import DEFAULT_CODE_LENGTH, referral_terms
from app.text import random_code

# A code drawn twice (at 6 symbols, one in about 900 million per code held) is drawn again.
_ATTEMPTS = 8

# ON CONFLICT without a target: the participant's key (a concurrent first ask won; it
# waits for that one to commit) or the code's (drawn twice). The SELECT tells them apart.
_INSERT_CODE = text(
    """
    INSERT INTO referral_codes (tenant_id, env, participant_id, code)
    VALUES (:tenant_id, :env, :participant_id, :code)
    ON CONFLICT DO NOTHING
    RETURNING code
    """
)
_SELECT_CODE = text(
    """
    SELECT code FROM referral_codes
    WHERE tenant_id = :tenant_id AND env = :env AND participant_id = :participant_id
    """
)


def referral_code(session: Session, tenant_id: uuid.UUID, env: str, participant_id: str) -> str:
    """The participant's code, made now (of the program's code_length) if it has none.
    The caller commits."""
    key = {"tenant_id": tenant_id, "env": env, "participant_id": participant_id}
    existing = session.execute(_SELECT_CODE, key).scalar_one_or_none()
    if existing is not None:
        return str(existing)
    terms = referral_terms(session, tenant_id, env)
    length = terms.code_length if terms is not None else DEFAULT_CODE_LENGTH
    for _ in range(_ATTEMPTS):
        made = session.execute(_INSERT_CODE, {**key, "code": random_code(length)}).scalar()
        if made is not None:
            return str(made)
        existing = session.execute(_SELECT_CODE, key).scalar_one_or_none()
        if existing is not None:
            return str(existing)
    raise RuntimeError(f"no free referral code of {length} symbols in {_ATTEMPTS} draws")


_CODE_MADE_AT = text(
    """
    SELECT created_at FROM referral_codes
    WHERE tenant_id = :tenant_id AND env = :env AND participant_id = :participant_id
    """
)


def referral_code_made_at(
    session: Session, tenant_id: uuid.UUID, env: str, participant_id: str
) -> datetime | None:
    """When the participant's code was made; None when it has none yet."""
    key = {"tenant_id": tenant_id, "env": env, "participant_id": participant_id}
    made_at: datetime | None = session.execute(_CODE_MADE_AT, key).scalar_one_or_none()
    return made_at
