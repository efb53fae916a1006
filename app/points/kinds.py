"""The points operation kinds: what a worker runs for each accepted points write.

Handlers read plain JSON payloads (validated by the API before acceptance), run inside
the runner's savepoint and never commit.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy.orm import Session

from app.errors import DomainError
from app.models import Operation
from app.operations import OperationKind, register_kind
from app.points.awards import AwardRow, Credit, apply_awards, award_points
from app.points.bulk import AWARD_BULK_KIND, award_bulk_step
from app.points.deductions import deduct_points
from app.points.items import AwardItem

AWARD_KIND = "points.award"
DEDUCT_KIND = "points.deduct"
AWARD_BATCH_KIND = "points.award_batch"
INVALID_AWARD = "invalid_award"


def _by_participant(payload: dict[str, Any]) -> str:
    # Operations of one participant lock only that participant: draining them together
    # in one transaction cannot break the lock order.
    return f"participant:{payload['participant_id']}"


def run_award(session: Session, operation: Operation) -> dict[str, Any]:
    payload = operation.payload
    item = AwardItem(
        participant_id=payload["participant_id"],
        amount=payload["amount"],
        reason=payload.get("reason"),
        metadata=payload.get("metadata"),
    )
    (credit,) = award_points(
        session, operation.tenant_id, operation.env, [item], operation_id=operation.id
    )
    return credit.as_body()


def run_deduct(session: Session, operation: Operation) -> dict[str, Any]:
    payload = operation.payload
    debit = deduct_points(
        session,
        operation.tenant_id,
        operation.env,
        payload["participant_id"],
        payload["amount"],
        reason=payload.get("reason"),
        metadata=payload.get("metadata"),
        operation_id=operation.id,
    )
    return debit.as_body()


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
        "error": None,
    }


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
        for entry in operation.payload["awards"]:
            if "invalid" not in entry:
                metadata = entry.get("metadata")
                awards.append(
                    (
                        entry["participant_id"],
                        entry["amount"],
                        entry.get("reason"),
                        json.dumps(metadata) if metadata is not None else None,
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


register_kind(OperationKind(name=AWARD_KIND, handler=run_award, partition=_by_participant))
register_kind(OperationKind(name=DEDUCT_KIND, handler=run_deduct, partition=_by_participant))
register_kind(
    OperationKind(
        name=AWARD_BATCH_KIND,
        batch_handler=run_award_batches,
        partition=_by_tenant,
        # Batches of one tenant lock different participants: two workers run them at once.
        drains_side_by_side=True,
        # Up to 5,000 awards per transaction: the locks are held for one pass only.
        max_batch=50,
    )
)
register_kind(OperationKind(name=AWARD_BULK_KIND, handler=award_bulk_step, success_status=200))
