"""Completing referrals: the pending row flips to completed once, and both sides' points
are recorded as awards.

The one writer of completion, for the three triggers (POST /referrals/complete, the
completion action through POST /actions, an award with that action): one UPDATE ...
WHERE status = 'pending' RETURNING. Concurrent triggers for one referral queue on its
row lock; the first flips it, and the others, re-reading the row once it commits (READ
COMMITTED re-checks the WHERE on the new version), find it completed and change nothing.
So a referral pays once whatever races, without a lock of its own or a new write path.

The payments are ordinary award operations recorded in the same transaction (an
accepted write is never lost), each side under its own key (`referral:<id>:referrer`,
`referral:<id>:referee`), published after the commit: the award path then does the
ledger, lots, tiers, multipliers and events as for any award.

Lock order: the everyday write reaches this holding its participants' rows (the referee
among them), then takes the referral rows of those referees; POST /referrals/complete
takes one referral row and nothing else; tracking never touches a referral that exists.
A referral row is thus only waited for last, by transactions holding nothing it needs.
After it come the referrers' scores on referral_count leaderboards, which only completion
writes, in one order (app.engagement.referral_scores).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from app.engagement.referral_scores import score_referrals
from app.infra.pgcopy import array_literal, fetch_tuples
from app.models import Operation
from app.operations import Write, submit_operations
from app.outbox import REFERRAL_COMPLETED, record_events
from app.points.items import AWARD_KIND, AwardItem, item_fields
from app.points.lots import instant
from app.referrals.decisions import Qualifying, payments

# A referral's status as every answer shows it: a pending one past its expires_at is
# expired already, before the sweep flips it (app.referrals.expiry), so reads, totals and
# filters never disagree with a completion refused as expired
# (app.referrals.decisions.is_expired is the same rule). Needs %(now)s.
EFFECTIVE_STATUS = """
    CASE WHEN r.status = 'pending' AND r.expires_at <= %(now)s THEN 'expired' ELSE r.status END
"""
# The referral body every answer and event shows (app.referrals.reads reads the same).
REFERRAL_COLUMNS = (
    """
    json_build_object(
        'referral_id', r.id, 'referrer_id', r.referrer_id, 'referee_id', r.referee_id,
        'referee_email', r.referee_email, 'referral_code', r.code,
        'status', """
    + EFFECTIVE_STATUS
    + """, 'referrer_points', r.referrer_points,
        'referee_points', r.referee_points, 'qualifying_action', r.qualifying_action,
        'qualifying_amount', r.qualifying_amount, 'order_id', r.order_id,
        'created_at', r.created_at, 'completed_at', r.completed_at, 'expires_at', r.expires_at
    )::text
"""
)

# The program's points are read in the statement that pays them: what an admin changes
# applies to the referrals completed after. An inactive program completes nothing; nor
# does a referral past its expires_at, or a qualifying amount under the program's minimum
# (none given: not shown to be enough; app.referrals.decisions.qualifies is the same rule).
_COMPLETE = (
    """
    UPDATE referrals AS r
    SET status = 'completed', completed_at = %(now)s,
        referrer_points = program.referrer_points, referee_points = program.referee_points,
        qualifying_action = q.qualifying_action, qualifying_amount = q.qualifying_amount,
        order_id = q.order_id
    FROM referral_programs AS program,
         jsonb_to_recordset(CAST(%(qualifying)s AS jsonb)) AS q(
            referee_id text, qualifying_action text, qualifying_amount numeric, order_id text
         )
    WHERE program.tenant_id = %(tenant_id)s AND program.env = %(env)s AND program.active
      AND r.tenant_id = %(tenant_id)s AND r.env = %(env)s
      AND r.referee_id = ANY(CAST(%(referees)s AS text[])) AND r.referee_id = q.referee_id
      AND r.status = 'pending' AND (r.expires_at IS NULL OR r.expires_at > %(now)s)
      AND (program.min_qualifying_amount IS NULL
           OR q.qualifying_amount >= program.min_qualifying_amount)
    RETURNING """  # noqa: S608 (constant fragments, no input)
    + REFERRAL_COLUMNS
)


def referral_body(text: str) -> dict[str, Any]:
    """A referral as REFERRAL_COLUMNS spells it, with its amount as a number and its
    instants in UTC as Python writes them (whatever the session's time zone), so that a
    write's answer, its event and the listing show the same text."""
    body: dict[str, Any] = json.loads(text, parse_float=Decimal)
    amount = body["qualifying_amount"]
    body["qualifying_amount"] = float(amount) if amount is not None else None
    for name in ("created_at", "completed_at", "expires_at"):
        moment = instant(body[name])
        body[name] = moment.astimezone(UTC).isoformat() if moment is not None else None
    return body


def complete_referrals(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    qualifying: Sequence[Qualifying],
    now: datetime,
) -> tuple[list[dict[str, Any]], list[Operation]]:
    """Complete the pending referrals of these referees (one statement), record a
    `referral.completed` event and the payments of each, count them toward the referrers'
    referral_count leaderboards; returns the referrals completed
    and the payment operations, which the caller publishes after its commit
    (app.operations.publish_after_commit). A referee without a pending referral (or one
    past its expiry, or whose amount falls short of the program's minimum), or a program
    not active, completes nothing."""
    if not qualifying:
        return [], []
    rows = fetch_tuples(
        session,
        _COMPLETE,
        {
            "tenant_id": tenant_id,
            "env": env,
            "now": now,
            "qualifying": json.dumps([each.as_row() for each in qualifying]),
            "referees": array_literal(sorted({each.referee_id for each in qualifying})),
        },
    )
    completed = [referral_body(text) for (text,) in rows]
    if not completed:
        return [], []
    record_events(session, tenant_id, env, REFERRAL_COMPLETED, completed)
    score_referrals(session, tenant_id, env, [each["referrer_id"] for each in completed], now)
    return completed, _record_payments(session, tenant_id, env, completed)


def _record_payments(
    session: Session, tenant_id: uuid.UUID, env: str, completed: list[dict[str, Any]]
) -> list[Operation]:
    writes = [
        Write(
            tenant_id,
            env,
            AWARD_KIND,
            item_fields(
                AwardItem(
                    payment.participant_id,
                    payment.points,
                    payment.reason,
                    {"referral_id": referral["referral_id"]},
                )
            ),
            payment.idempotency_key,
        )
        for referral in completed
        for payment in payments(
            referral["referral_id"],
            referral["referrer_id"],
            referral["referee_id"],
            referral["referrer_points"],
            referral["referee_points"],
        )
    ]
    if not writes:
        return []
    operations: list[Operation] = []
    for submission in submit_operations(session.connection(), writes):
        if isinstance(submission, Exception):
            raise submission
        if submission.created:
            operations.append(submission.operation)
    return operations
