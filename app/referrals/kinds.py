"""The referral operation kinds: tracking, and completion by hand.

Each runs one operation per transaction (a handler, inside the runner's savepoint): a
refusal raises its DomainError and leaves nothing written. Neither is on a hot path, and
their locks (a referrer's code row; one referral row) are the whole of what they hold.
Completion by the completion action runs in the everyday write instead
(app.points.balance_changes), through the same writer (app.referrals.completion).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.errors import DomainError
from app.infra.pgcopy import fetch_tuples
from app.models import Operation
from app.operation_kinds import OperationKind
from app.operations import publish_after_commit
from app.referrals.completion import complete_referrals
from app.referrals.decisions import (
    CompletionFacts,
    Qualifying,
    completion_refusal,
    referral_already_completed,
    referral_not_found,
)
from app.referrals.program import ReferralTerms, referral_terms
from app.referrals.tracking import track_referral

REFERRAL_TRACK_KIND = "referrals.track"
REFERRAL_COMPLETE_KIND = "referrals.complete"

_FIND_BY_ID = """
    SELECT referee_id, status, expires_at FROM referrals
    WHERE tenant_id = %(tenant_id)s AND env = %(env)s AND id = %(referral_id)s
"""
_FIND_BY_REFEREE = """
    SELECT referee_id, status, expires_at FROM referrals
    WHERE tenant_id = %(tenant_id)s AND env = %(env)s AND referee_id = %(referee_id)s
"""


Found = tuple[str, str, datetime | None]  # referee_id, status, expires_at


def _found(session: Session, query: str, key: dict[str, Any]) -> Found | None:
    [*rows] = fetch_tuples(session, query, key)
    return rows[0] if rows else None


@dataclass(frozen=True, slots=True)
class _Completion:
    """What a completion by hand brings, to judge the referral's row against."""

    terms: ReferralTerms | None
    amount: Decimal | None
    now: datetime

    def refusal(self, found: Found | None) -> DomainError | None:
        if found is None:
            return referral_not_found()
        _, status, expires_at = found
        return completion_refusal(
            CompletionFacts(status, expires_at, self.terms, self.amount, self.now)
        )


def complete_referral(session: Session, operation: Operation) -> dict[str, Any]:
    """POST /referrals/complete: the referral completed now, or why not (DomainError)."""
    tenant_id, env, payload = operation.tenant_id, operation.env, operation.payload
    if "referral_id" in payload:
        query, named = _FIND_BY_ID, {"referral_id": payload["referral_id"]}
    else:
        query, named = _FIND_BY_REFEREE, {"referee_id": payload["referee_id"]}
    key = {"tenant_id": tenant_id, "env": env, **named}
    amount = payload.get("qualifying_amount")
    completion = _Completion(
        referral_terms(session, tenant_id, env),
        Decimal(amount) if amount is not None else None,
        utcnow(),
    )
    found = _found(session, query, key)
    refused = completion.refusal(found)
    if refused is not None or found is None:
        raise refused or referral_not_found()
    qualifying = Qualifying(
        found[0], payload.get("qualifying_action"), completion.amount, payload.get("order_id")
    )
    completed, payments = complete_referrals(session, tenant_id, env, [qualifying], completion.now)
    if not completed:
        # Another trigger completed it, or the sweep expired it, while this waited for the
        # row: the row as it is now says which.
        raise completion.refusal(_found(session, query, key)) or referral_already_completed()
    publish_after_commit(session, payments)
    return completed[0]


REFERRAL_TRACK = OperationKind(name=REFERRAL_TRACK_KIND, handler=track_referral, success_status=201)
REFERRAL_COMPLETE = OperationKind(
    name=REFERRAL_COMPLETE_KIND, handler=complete_referral, success_status=200
)
