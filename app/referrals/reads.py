"""A referrer's referrals, newest first, with totals over all of them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.infra.pgcopy import fetch_tuples
from app.referrals.completion import EFFECTIVE_STATUS, REFERRAL_COLUMNS, referral_body

# By the status the answers show (EFFECTIVE_STATUS): a pending referral past its expiry
# counts as expired before the sweep flips it.
_TOTALS = (
    """
    SELECT count(*),
           count(*) FILTER (WHERE status = 'pending'),
           count(*) FILTER (WHERE status = 'completed'),
           count(*) FILTER (WHERE status = 'expired'),
           coalesce(sum(referrer_points), 0)
    FROM (SELECT """  # noqa: S608 (constant fragments, no input)
    + EFFECTIVE_STATUS
    + """ AS status, r.referrer_points
          FROM referrals AS r
          WHERE r.tenant_id = %(tenant_id)s AND r.env = %(env)s
            AND r.referrer_id = %(participant_id)s) AS shown
"""
)
_PAGE = (
    """
    SELECT """  # noqa: S608 (constant fragments, no input)
    + REFERRAL_COLUMNS
    + """
    FROM referrals AS r
    WHERE r.tenant_id = %(tenant_id)s AND r.env = %(env)s
      AND r.referrer_id = %(participant_id)s
      AND (CAST(%(status)s AS text) IS NULL OR """
    + EFFECTIVE_STATUS
    + """ = %(status)s)
    ORDER BY r.created_at DESC, r.id
    OFFSET %(offset)s LIMIT %(limit)s
"""
)


def participant_referrals(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    participant_id: str,
    *,
    status: str | None,
    offset: int,
    limit: int,
) -> dict[str, Any]:
    """The participant's referrals as a referrer (of `status`, if given), and the totals of
    all of them: how many, pending, completed, expired, and the points the referrer was
    paid."""
    key = {"tenant_id": tenant_id, "env": env, "participant_id": participant_id, "now": utcnow()}
    [(total, pending, completed, expired, points)] = fetch_tuples(session, _TOTALS, key)
    rows = fetch_tuples(session, _PAGE, {**key, "status": status, "offset": offset, "limit": limit})
    return {
        "participant_id": participant_id,
        "referrals": [referral_body(text) for (text,) in rows],
        "totals": {
            "total": total,
            "pending": pending,
            "completed": completed,
            "expired": expired,
            "points_earned": int(points),
        },
    }
