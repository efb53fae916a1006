"""The 23blocks payload an endpoint registered through the dialect gets: the reference's
envelope, and the native event data under the reference's names (a pure translation,
table-tested without a database)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from app.webhooks.payloads import blocks_body, blocks_data

CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "an upgrade: user_id, tiers gain their code as id, the tier left a null name",
        {
            "participant_id": "user-123",
            "transaction_id": "t1",
            "previous_tier": {"code": "silver", "level": 1},
            "new_tier": {"code": "gold", "name": "Gold", "level": 2},
            "qualifying_points": 5250,
        },
        {
            "user_id": "user-123",
            "transaction_id": "t1",
            "previous_tier": {"id": "silver", "name": None, "code": "silver", "level": 1},
            "new_tier": {"id": "gold", "name": "Gold", "code": "gold", "level": 2},
            "qualifying_points": 5250,
        },
    ),
    (
        "a first tier: no tier left stays null",
        {"participant_id": "u", "previous_tier": None, "new_tier": {"code": "b", "level": 0}},
        {
            "user_id": "u",
            "previous_tier": None,
            "new_tier": {"id": "b", "name": None, "code": "b", "level": 0},
        },
    ),
    (
        "a downgrade out of every tier: no tier entered stays null",
        {"participant_id": "u", "previous_tier": {"code": "b", "level": 0}, "new_tier": None},
        {
            "user_id": "u",
            "previous_tier": {"id": "b", "name": None, "code": "b", "level": 0},
            "new_tier": None,
        },
    ),
    (
        "participant_id is renamed wherever it appears, in objects and lists",
        {"claim": {"participant_id": "u"}, "rows": [{"participant_id": "v"}, 3, "x"]},
        {"claim": {"user_id": "u"}, "rows": [{"user_id": "v"}, 3, "x"]},
    ),
    (
        "the caller's own metadata is passed back as it was given",
        {"participant_id": "u", "metadata": {"participant_id": "kept", "new_tier": {"code": 1}}},
        {"user_id": "u", "metadata": {"participant_id": "kept", "new_tier": {"code": 1}}},
    ),
    (
        "everything else is kept as it is",
        {
            "participant_id": "u",
            "amount": 5,
            "base_amount": 4,
            "reason": None,
            "tier_code": "gold",
            "referrer_id": "r",
        },
        {
            "user_id": "u",
            "amount": 5,
            "base_amount": 4,
            "reason": None,
            "tier_code": "gold",
            "referrer_id": "r",
        },
    ),
    (
        "an event without a participant is unchanged",
        {"endpoint_id": "e", "message": "Test event from rewards-engine"},
        {"endpoint_id": "e", "message": "Test event from rewards-engine"},
    ),
]


@pytest.mark.parametrize(
    ("native", "blocks"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_the_blocks_data_is_the_native_data_under_the_references_names(
    native: dict[str, Any], blocks: dict[str, Any]
) -> None:
    assert blocks_data(native) == blocks


def test_the_native_data_is_not_changed_by_its_translation() -> None:
    native = {"participant_id": "u", "new_tier": {"code": "gold", "level": 2}}

    blocks_data(native)

    assert native == {"participant_id": "u", "new_tier": {"code": "gold", "level": 2}}


def test_the_blocks_envelope_is_the_event_id_the_type_subscribed_and_its_utc_time() -> None:
    event_id = uuid.uuid4()
    created_at = datetime(2026, 1, 2, 11, 30, tzinfo=timezone(timedelta(hours=1)))

    body = blocks_body(event_id, "reward.redeemed", created_at, {"participant_id": "u"})

    assert body == {
        "id": str(event_id),
        "type": "reward.redeemed",
        "created_at": "2026-01-02T10:30:00Z",
        "data": {"user_id": "u"},
    }
    assert datetime.fromisoformat(body["created_at"]) == created_at.astimezone(UTC)
