"""The referral operation kinds: tracking, and completion by hand.

Each runs one operation per transaction (a handler, inside the runner's savepoint): a
refusal raises its DomainError and leaves nothing written. Neither is on a hot path, and
their locks (a referrer's code row; one referral row) are the whole of what they hold.
Completion by the completion action runs in the everyday write instead
(app.points.balance_changes), through the same writer (app.referrals.completion).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.infra.pgcopy import fetch_tuples
from app.models import Operation
from app.models.referrals import REFERRAL_COMPLETED
from app.operation_kinds import OperationKind
from app.operations import publish_after_commit
from app.referrals.completion import complete_referrals
from app.referrals.decisions import (
    Qualifying,
    referral_already_completed,
    referral_not_found,
    referral_program_inactive,
)
from app.referrals.program import referral_terms
from app.referrals.tracking import track_referral

REFERRAL_TRACK_KIND = "referrals.track"
REFERRAL_COMPLETE_KIND = "referrals.complete"

_FIND_BY_ID = """
    SELECT referee_id, status FROM referrals
    WHERE tenant_id = %(tenant_id)s AND env = %(env)s AND id = %(referral_id)s
"""
_FIND_BY_REFEREE = """
    SELECT referee_id, status FROM referrals
    WHERE tenant_id = %(tenant_id)s AND env = %(env)s AND referee_id = %(referee_id)s
"""


def complete_referral(session: Session, operation: Operation) -> dict[str, Any]:
    """POST /referrals/complete: the referral completed now, or why not (DomainError)."""
    tenant_id, env, payload = operation.tenant_id, operation.env, operation.payload
    if "referral_id" in payload:
        query, named = _FIND_BY_ID, {"referral_id": payload["referral_id"]}
    else:
        query, named = _FIND_BY_REFEREE, {"referee_id": payload["referee_id"]}
    [*found] = fetch_tuples(session, query, {"tenant_id": tenant_id, "env": env, **named})
    if not found:
        raise referral_not_found()
    [(referee_id, status)] = found
    if status == REFERRAL_COMPLETED:
        raise referral_already_completed()
    terms = referral_terms(session, tenant_id, env)
    if terms is None or not terms.active:
        raise referral_program_inactive()
    amount = payload.get("qualifying_amount")
    qualifying = Qualifying(
        referee_id,
        payload.get("qualifying_action"),
        Decimal(amount) if amount is not None else None,
        payload.get("order_id"),
    )
    completed, payments = complete_referrals(session, tenant_id, env, [qualifying], utcnow())
    if not completed:
        # Completed already, before this read or by a trigger it waited for on the row.
        raise referral_already_completed()
    publish_after_commit(session, payments)
    return completed[0]


REFERRAL_TRACK = OperationKind(name=REFERRAL_TRACK_KIND, handler=track_referral, success_status=201)
REFERRAL_COMPLETE = OperationKind(
    name=REFERRAL_COMPLETE_KIND, handler=complete_referral, success_status=200
)
