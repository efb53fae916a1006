"""The action pipeline's operation kinds.

A single action, a badge awarded by hand, a streak record and a challenge join are
participant writes like an award: they drain in the participant's balance lane
(app.points.kinds), in the order they were accepted with the participant's awards and
deductions, many participants per transaction. Action batches of one tenant drain
together, side by side, like award batches; a bulk upload is a job of steps.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from app.engagement.actions import (
    ACTION_BATCH_KIND,
    ACTION_KIND,
    BADGE_AWARD_KIND,
    CHALLENGE_JOIN_KIND,
    STREAK_RECORD_KIND,
    action_write,
)
from app.engagement.bulk_actions import ACTION_BULK_KIND, action_bulk_step
from app.errors import DomainError
from app.models import Operation
from app.operation_kinds import OperationKind
from app.points.balance_changes import ActionApplied, ActionWrite, apply_changes
from app.points.kinds import BALANCE_LANE, balance_lane, run_balance_writes

INVALID_ACTION = "invalid_action"


def _failed_result(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "action_id": None,
        "participant_id": entry.get("participant_id"),
        "action": entry.get("action"),
        "error": {"code": INVALID_ACTION, "detail": entry["invalid"]},
    }


def run_action_batches(
    session: Session, operations: list[Operation]
) -> dict[uuid.UUID, dict[str, Any] | DomainError]:
    """Action-batch requests of one tenant, applied together in one pass; each invalid
    item answers its own error, in request order."""
    first = operations[0]
    writes: list[ActionWrite] = [
        action_write(operation, entry)
        for operation in operations
        for entry in operation.payload["actions"]
        if "invalid" not in entry
    ]
    decisions = iter(apply_changes(session, first.tenant_id, first.env, writes))
    answers: dict[uuid.UUID, dict[str, Any] | DomainError] = {}
    for operation in operations:
        results: list[dict[str, Any]] = []
        for entry in operation.payload["actions"]:
            if "invalid" in entry:
                results.append(_failed_result(entry))
                continue
            decision = next(decisions)
            assert isinstance(decision, ActionApplied)  # an action is never refused
            results.append({**decision.as_body(), "error": None})
        failed = sum(1 for result in results if result["error"] is not None)
        answers[operation.id] = {
            "processed": len(results) - failed,
            "failed": failed,
            "results": results,
        }
    return answers


def _by_tenant(payload: dict[str, Any]) -> str:
    return "action-batches"


ACTION, BADGE_AWARD, STREAK_RECORD, CHALLENGE_JOIN = (
    OperationKind(
        name=name,
        batch_handler=run_balance_writes,
        partition=balance_lane,
        lane=BALANCE_LANE,
        success_status=status,
    )
    for name, status in (
        (ACTION_KIND, 201),
        (BADGE_AWARD_KIND, 201),
        (STREAK_RECORD_KIND, 200),
        (CHALLENGE_JOIN_KIND, 200),
    )
)
ACTION_BULK = OperationKind(name=ACTION_BULK_KIND, handler=action_bulk_step, success_status=200)
ACTION_BATCH = OperationKind(
    name=ACTION_BATCH_KIND,
    batch_handler=run_action_batches,
    partition=_by_tenant,
    drains_side_by_side=True,
    max_batch=50,
)
