"""The request bodies an endpoint can be sent, by its `payload_format`.

"standard" is the Standard Webhooks body every native endpoint gets. "blocks" is the
23blocks reference's envelope ("Webhook Payload Example": id, type, created_at, data), for
endpoints registered through that dialect: their receivers were written against the
reference and must work unchanged. Both carry the same event; the blocks data only renames
what the reference names differently, so there is no second description of any event.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

STANDARD = "standard"
BLOCKS = "blocks"
PAYLOAD_FORMATS = (STANDARD, BLOCKS)

# The dialect answers a participant as a user (its path and body name is user_id).
_BLOCKS_NAMES = {"participant_id": "user_id"}
# Tier references in event data ({code, level, name}); the dialect answers a tier's id as
# its code, and the reference's tier object is {id, name, level}.
_TIER_REFERENCES = frozenset({"previous_tier", "new_tier"})
# The caller's own data, passed back as it was given: its names are not ours to change.
_CALLER_DATA = frozenset({"metadata"})


def blocks_data(value: Any) -> Any:
    """Event data as the 23blocks reference names it: participant_id -> user_id wherever it
    appears, tier references gain `id` (the tier code) and always carry `name` (null in
    events recorded before the tier left carried its name), and
    everything else is kept as it is."""
    if isinstance(value, list):
        return [blocks_data(item) for item in value]
    if not isinstance(value, dict):
        return value
    translated: dict[str, Any] = {}
    name: str  # JSON object keys
    for name, item in value.items():
        if name in _CALLER_DATA:
            translated[name] = item
        elif name in _TIER_REFERENCES and isinstance(item, dict) and "code" in item:
            translated[name] = {"id": item["code"], "name": None, **blocks_data(item)}
        else:
            translated[_BLOCKS_NAMES.get(name, name)] = blocks_data(item)
    return translated


def _iso_z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def blocks_body(
    event_id: uuid.UUID, event_type: str, created_at: datetime, data: dict[str, Any]
) -> dict[str, Any]:
    """The reference's envelope: the id is the event's (also the webhook-id header), the
    type as the endpoint subscribed to it (reward.redeemed included)."""
    return {
        "id": str(event_id),
        "type": event_type,
        "created_at": _iso_z(created_at),
        "data": blocks_data(data),
    }


def standard_body(event_type: str, created_at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """The Standard Webhooks payload: {type, timestamp, data}."""
    return {"type": event_type, "timestamp": _iso_z(created_at), "data": data}


def encode_body(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
