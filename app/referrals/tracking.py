"""Tracking a referral: a referee signed up with a referrer's code (and, optionally, the
referee's e-mail, kept for the listings). Its expiry is fixed now, from the program's
expiration_days.

Read under lock, decide, write. The referrer's code row is locked (FOR UPDATE) before
its referrals are counted, so concurrent tracks against one referrer take turns and the
limit counts every referral committed before (READ COMMITTED: each statement after the
lock sees them). Two tracks of one referee (through different referrers' codes, so not
serialized by that lock) meet on the referee's unique key: the INSERT ... ON CONFLICT DO
NOTHING of the second waits for the first to commit, then inserts nothing, and it
answers referral_already_tracked; no unique violation ever aborts the batch.

The referrer becomes a participant here if they were not one, so that completion can count
the referral on referral_count leaderboards without creating a participant while holding
the locks it holds (app.engagement.referral_scores). Safe here: the only lock held is the
code row's, which no participant-locking write ever waits for.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.infra.pgcopy import fetch_tuples
from app.ledger import create_participants
from app.models import Operation
from app.outbox import REFERRAL_TRACKED, record_event
from app.referrals.completion import REFERRAL_COLUMNS, referral_body
from app.referrals.decisions import (
    TrackFacts,
    normalized_code,
    referral_already_tracked,
    referral_expires_at,
    referral_program_inactive,
    track_refusal,
)
from app.referrals.program import referral_terms

_LOCK_CODE = """
    SELECT participant_id FROM referral_codes
    WHERE tenant_id = %(tenant_id)s AND env = %(env)s AND code = %(code)s
    FOR UPDATE
"""
_FACTS = """
    SELECT
        EXISTS (SELECT FROM referrals
                WHERE tenant_id = %(tenant_id)s AND env = %(env)s
                  AND referee_id = %(referee_id)s),
        (SELECT count(*) FROM referrals
         WHERE tenant_id = %(tenant_id)s AND env = %(env)s AND referrer_id = %(referrer_id)s)
"""
_INSERT = (
    """
    INSERT INTO referrals AS r (
        id, tenant_id, env, referrer_id, referee_id, code, status, referrer_points,
        referee_points, referee_email, created_at, expires_at
    )
    VALUES (%(id)s, %(tenant_id)s, %(env)s, %(referrer_id)s, %(referee_id)s, %(code)s,
            'pending', 0, 0, %(referee_email)s, %(now)s, %(expires_at)s)
    ON CONFLICT DO NOTHING
    RETURNING """  # noqa: S608 (constant fragments, no input)
    + REFERRAL_COLUMNS
)


def track_referral(session: Session, operation: Operation) -> dict[str, Any]:
    """POST /referrals/track: the referral made, or the refusal raised (DomainError)."""
    tenant_id, env = operation.tenant_id, operation.env
    code = normalized_code(operation.payload["referral_code"])
    referee_id = operation.payload["referee_id"]
    terms = referral_terms(session, tenant_id, env)
    if terms is None or not terms.active:
        raise referral_program_inactive()
    key = {"tenant_id": tenant_id, "env": env, "referee_id": referee_id}
    [*owner] = fetch_tuples(session, _LOCK_CODE, {**key, "code": code})
    referrer_id = owner[0][0] if owner else None
    referred, count = False, 0
    if referrer_id is not None:
        [(referred, count)] = fetch_tuples(session, _FACTS, {**key, "referrer_id": referrer_id})
    refusal = track_refusal(TrackFacts(terms, referrer_id, referee_id, referred, count))
    if refusal is not None:
        raise refusal
    now = utcnow()
    [*made] = fetch_tuples(
        session,
        _INSERT,
        {
            **key,
            "id": uuid.uuid4(),
            "referrer_id": referrer_id,
            "code": code,
            "referee_email": operation.payload.get("referee_email"),
            "now": now,
            "expires_at": referral_expires_at(terms, now),
        },
    )
    if not made:
        raise referral_already_tracked()  # a concurrent track of this referee won
    referral = referral_body(made[0][0])
    create_participants(session, tenant_id, env, [referral["referrer_id"]])
    record_event(session, tenant_id, env, REFERRAL_TRACKED, referral)
    return referral
