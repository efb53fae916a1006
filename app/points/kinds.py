"""The points operation kinds: what a worker runs for each accepted points write.

Handlers read plain JSON payloads (validated by the API before acceptance) and never
commit. The batch handlers decide before they write, so they need no savepoint; the bulk
job's step handler runs inside the runner's savepoint.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.engagement.actions import (
    ACTION_KIND,
    BADGE_AWARD_KIND,
    CHALLENGE_JOIN_KIND,
    STREAK_RECORD_KIND,
    action_write,
    badge_grant,
    challenge_join,
    streak_record,
)
from app.errors import DomainError
from app.models import Operation
from app.operation_kinds import OperationKind, lane_of
from app.points.awards import AwardRow, apply_awards
from app.points.balance_changes import Write, apply_changes, balance_write
from app.points.bulk import AWARD_BULK_KIND, award_bulk_step
from app.points.items import AWARD_KIND
from app.points.lots import LOT_TERM_FIELDS, LotTerms
from app.points.standings import Credit

DEDUCT_KIND = "points.deduct"
AWARD_BATCH_KIND = "points.award_batch"
INVALID_AWARD = "invalid_award"


# The everyday awards and deductions of a tenant drain in a few lanes, a participant's
# always in the same one (so in the order they were accepted), many participants per
# transaction (app.points.balance_changes). Lanes lock disjoint participants, so their
# drains run side by side on as many worker processes; one lane per process of the usual
# two keeps every process busy under load while batching the most at a few clients.
BALANCE_LANE = "points.balance"
BALANCE_LANES = 2


def balance_lane(payload: dict[str, Any]) -> str:
    return lane_of(payload["participant_id"], BALANCE_LANES)


_ENGAGEMENT_WRITES: dict[str, Callable[[Operation], Write]] = {
    ACTION_KIND: lambda operation: action_write(operation, operation.payload),
    BADGE_AWARD_KIND: badge_grant,
    STREAK_RECORD_KIND: streak_record,
    CHALLENGE_JOIN_KIND: challenge_join,
}


def _write_of(operation: Operation) -> Write:
    engagement_write = _ENGAGEMENT_WRITES.get(operation.kind)
    if engagement_write is not None:
        return engagement_write(operation)
    return balance_write(operation, debit=operation.kind == DEDUCT_KIND)


def run_balance_writes(
    session: Session, operations: list[Operation]
) -> dict[uuid.UUID, dict[str, Any] | DomainError]:
    """A tenant's participant writes (awards, deductions, actions, badges awarded by
    hand), in the order they were accepted."""
    first = operations[0]
    writes = [_write_of(operation) for operation in operations]
    decisions = apply_changes(session, first.tenant_id, first.env, writes)
    return {
        operation.id: decision if isinstance(decision, DomainError) else decision.as_body()
        for operation, decision in zip(operations, decisions, strict=True)
    }


def _failed_result(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "participant_id": entry["participant_id"],
        "transaction_id": None,
        "amount": None,
        "new_balance": None,
        "tier_upgrade": None,
        "error": {"code": INVALID_AWARD, "detail": entry["invalid"]},
    }


def _credited_result(credit: Credit) -> dict[str, Any]:
    upgrade = credit.tier_upgrade
    return {
        "transaction_id": credit.transaction_id,
        "participant_id": credit.participant_id,
        "amount": credit.amount,
        "new_balance": credit.new_balance,
        "tier_upgrade": upgrade.as_body() if upgrade is not None else None,
        "available_at": credit.available_at.isoformat() if credit.available_at else None,
        "expires_at": credit.expires_at.isoformat() if credit.expires_at else None,
        "error": None,
    }


_NO_TERMS: tuple[None, None] = (None, None)


def _resolver(
    accepted_at: datetime,
) -> Callable[[dict[str, Any]], tuple[datetime | None, datetime | None]]:
    """An entry's (available_at, expires_at) counted from `accepted_at`; a request's items
    usually share their terms, resolved once."""
    resolved: dict[tuple[Any, ...], tuple[datetime | None, datetime | None]] = {}

    def resolve(entry: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
        if entry.keys().isdisjoint(LOT_TERM_FIELDS):
            return _NO_TERMS
        asked = tuple(entry.get(name) for name in LOT_TERM_FIELDS)
        found = resolved.get(asked)
        if found is None:
            terms = LotTerms.of(entry)
            found = resolved[asked] = terms.resolve(accepted_at) if terms else _NO_TERMS
        return found

    return resolve


def run_award_batches(
    session: Session, operations: list[Operation]
) -> dict[uuid.UUID, dict[str, Any] | DomainError]:
    """Award-batch requests of one tenant, credited together in one set-wise pass.

    The valid entries of every request go to one `apply_awards` call (one lock statement,
    one COPY of ledger lines, one balance update), each line keeping its own operation id;
    the invalid ones (see batch_entries) answer their own error, in request order.
    """
    first = operations[0]
    awards: list[AwardRow] = []
    origins: list[str] = []
    for operation in operations:
        origin = str(operation.id)
        resolve = _resolver(operation.created_at)
        for entry in operation.payload["awards"]:
            if "invalid" not in entry:
                metadata = entry.get("metadata")
                awards.append(
                    (
                        entry["participant_id"],
                        entry["amount"],
                        entry.get("reason"),
                        json.dumps(metadata) if metadata is not None else None,
                        entry.get("action"),
                        *resolve(entry),
                    )
                )
                origins.append(origin)
    credited: list[Credit] = []
    apply_awards(
        session, first.tenant_id, first.env, awards, operation_fields=origins, credits=credited
    )
    credits = iter(credited)
    answers: dict[uuid.UUID, dict[str, Any] | DomainError] = {}
    for operation in operations:
        entries: list[dict[str, Any]] = operation.payload["awards"]
        results = [
            _failed_result(entry) if "invalid" in entry else _credited_result(next(credits))
            for entry in entries
        ]
        failed = sum(1 for entry in entries if "invalid" in entry)
        answers[operation.id] = {
            "processed": len(entries) - failed,
            "failed": failed,
            "results": results,
        }
    return answers


def _by_tenant(payload: dict[str, Any]) -> str:
    # partition_key() already qualifies it by tenant and environment: every award-batch
    # request of one tenant drains into the same set-wise pass.
    return "award-batches"


AWARD, DEDUCT = (
    OperationKind(
        name=name, batch_handler=run_balance_writes, partition=balance_lane, lane=BALANCE_LANE
    )
    for name in (AWARD_KIND, DEDUCT_KIND)
)
AWARD_BATCH = OperationKind(
    name=AWARD_BATCH_KIND,
    batch_handler=run_award_batches,
    partition=_by_tenant,
    # Batches of one tenant lock different participants: two workers run them at once.
    drains_side_by_side=True,
    # Up to 5,000 awards per transaction: the locks are held for one pass only.
    max_batch=50,
)
AWARD_BULK = OperationKind(name=AWARD_BULK_KIND, handler=award_bulk_step, success_status=200)
