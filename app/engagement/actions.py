"""Accepting actions: one action's fields checked (shared by POST /actions, each item of
/actions/batch), as its operation's payload carries them, and back as the write the
pipeline applies (app.engagement.pipeline.ActionWrite).

A batch answers each bad item with its own error, so items are checked here one by one
rather than by the request schema (as award items are, app.points.items).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.engagement.pipeline import ActionWrite, BadgeGrant, ChallengeJoin, StreakRecord
from app.models import Operation
from app.points.items import (
    PARTICIPANT_ID_MAX_CHARS,
    InvalidItem,
    check_action,
    check_participant_id,
)
from app.text import holds_nul, unknown_fields_message

ACTION_KIND = "actions.record"
ACTION_BATCH_KIND = "actions.batch"
BADGE_AWARD_KIND = "badges.award"
STREAK_RECORD_KIND = "streaks.record"
CHALLENGE_JOIN_KIND = "challenges.join"
ACTION_ITEM_FIELDS = frozenset({"participant_id", "action", "properties", "occurred_at"})
PROPERTIES_MAX_BYTES = 4096
PROPERTY_NAME_MAX_CHARS = 100
# A client's clock may run this far ahead of ours; an action further in the future is
# refused (it would count in a period that has not begun).
OCCURRED_AT_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class ActionItem:
    participant_id: str
    action: str
    properties: dict[str, Any]
    occurred_at: datetime | None  # None: when it was accepted


def check_properties(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidItem("properties must be an object")
    for name, prop in value.items():
        if not name or len(name) > PROPERTY_NAME_MAX_CHARS:
            raise InvalidItem(f"property names must be 1 to {PROPERTY_NAME_MAX_CHARS} characters")
        if isinstance(prop, float) and not math.isfinite(prop):
            raise InvalidItem(f"property {name} must be a finite number")
        if not isinstance(prop, str | int | float | bool):
            raise InvalidItem(
                f"property {name} must be a number, a string or a boolean (properties are flat)"
            )
    if holds_nul(value):
        raise InvalidItem("properties must not contain NUL characters")
    if len(json.dumps(value).encode()) > PROPERTIES_MAX_BYTES:
        raise InvalidItem(f"properties must be at most {PROPERTIES_MAX_BYTES} bytes as JSON")
    return value


def check_occurred_at(value: object, now: datetime) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidItem("occurred_at must be an ISO 8601 date-time") from None
    elif isinstance(value, datetime):
        moment = value
    else:
        raise InvalidItem("occurred_at must be an ISO 8601 date-time")
    if moment.tzinfo is None:
        raise InvalidItem("occurred_at must have a time zone (Z or +hh:mm)")
    if moment > now + OCCURRED_AT_SKEW:
        raise InvalidItem("occurred_at must not be in the future")
    return moment


def parse_action_item(raw: object, now: datetime) -> ActionItem:
    """A batch item (a JSON object) as an ActionItem, or InvalidItem saying what is wrong."""
    if not isinstance(raw, dict):
        raise InvalidItem("each action must be an object")
    unknown = set(raw) - ACTION_ITEM_FIELDS
    if unknown:
        raise InvalidItem(unknown_fields_message(unknown))
    action = check_action(raw.get("action"))
    if action is None:
        raise InvalidItem("action is required")
    return ActionItem(
        participant_id=check_participant_id(raw.get("participant_id")),
        action=action,
        properties=check_properties(raw.get("properties")),
        occurred_at=check_occurred_at(raw.get("occurred_at"), now),
    )


def action_fields(item: ActionItem) -> dict[str, Any]:
    """An accepted action as an operation payload carries it."""
    fields: dict[str, Any] = {
        "participant_id": item.participant_id,
        "action": item.action,
        "properties": item.properties,
    }
    if item.occurred_at is not None:
        fields["occurred_at"] = item.occurred_at.isoformat()
    return fields


def batch_action_entries(raw_items: list[object], now: datetime) -> list[dict[str, Any]]:
    """Batch items as the operation's payload carries them: each a valid action's fields,
    or {"invalid": why, "participant_id": ...}, in request order."""
    entries: list[dict[str, Any]] = []
    for raw in raw_items:
        try:
            entries.append(action_fields(parse_action_item(raw, now)))
        except InvalidItem as problem:
            named = raw.get("participant_id") if isinstance(raw, dict) else None
            shown = named if isinstance(named, str) and not holds_nul(named) else None
            entries.append(
                {
                    "invalid": str(problem),
                    "participant_id": shown[:PARTICIPANT_ID_MAX_CHARS] if shown else shown,
                }
            )
    return entries


def action_write(operation: Operation, fields: dict[str, Any]) -> ActionWrite:
    """An accepted action's write; without occurred_at it happened when accepted."""
    occurred_at = fields.get("occurred_at")
    return ActionWrite(
        operation_id=operation.id,
        participant_id=fields["participant_id"],
        action=fields["action"],
        properties=fields.get("properties") or {},
        occurred_at=(datetime.fromisoformat(occurred_at) if occurred_at else operation.created_at),
    )


def badge_grant(operation: Operation) -> BadgeGrant:
    payload = operation.payload
    return BadgeGrant(operation.id, payload["participant_id"], payload["badge_id"])


def streak_record(operation: Operation) -> StreakRecord:
    """A streak activity, as of when it was accepted."""
    payload = operation.payload
    return StreakRecord(
        operation.id, payload["participant_id"], payload["streak_type"], operation.created_at
    )


def challenge_join(operation: Operation) -> ChallengeJoin:
    payload = operation.payload
    return ChallengeJoin(operation.id, payload["participant_id"], payload["challenge_id"])
