"""Leaderboard scoring decided without a database: what a referral completed adds to its
referrer's score, on which boards and in which period."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from app.engagement.leaderboards import LeaderboardDef
from app.engagement.referral_scores import referral_steps

CREATED = datetime(2026, 11, 1, tzinfo=UTC)
# A Sunday, 23:30 in UTC: already Monday in Tokyo.
SUNDAY_NIGHT = datetime(2026, 11, 8, 23, 30, tzinfo=UTC)


def board(**fields: Any) -> LeaderboardDef:
    row = {
        "id": "b1",
        "name": "Top referrers",
        "metric": "referral_count",
        "period": "all_time",
        "created_at": CREATED,
        **fields,
    }
    return LeaderboardDef.of(row)


@pytest.mark.parametrize(
    ("fields", "referrers", "steps"),
    [
        (
            {},
            ["ann", "bob", "ann"],
            {("b1", date(1970, 1, 1), "ann"): 2, ("b1", date(1970, 1, 1), "bob"): 1},
        ),
        ({"period": "weekly"}, ["ann"], {("b1", date(2026, 11, 2), "ann"): 1}),
        (
            {"period": "weekly", "timezone": "Asia/Tokyo"},
            ["ann"],
            {("b1", date(2026, 11, 9), "ann"): 1},
        ),
        ({"period": "daily"}, ["ann"], {("b1", date(2026, 11, 8), "ann"): 1}),
        ({"metric": "points_earned"}, ["ann"], {}),
        ({"metric": "action_count", "action": "referral"}, ["ann"], {}),
        ({"active": False}, ["ann"], {}),
        ({"created_at": datetime(2026, 11, 9, tzinfo=UTC)}, ["ann"], {}),
    ],
)
def test_a_completed_referral_adds_one_to_its_referrer_on_referral_count_boards(
    fields: dict[str, Any], referrers: list[str], steps: dict[tuple[str, date, str], int]
) -> None:
    assert referral_steps([board(**fields)], referrers, SUNDAY_NIGHT) == steps


def test_a_referral_count_board_counts_no_points_nor_actions() -> None:
    referrals = board()
    assert referrals.counts("referral", 100, SUNDAY_NIGHT) == 0
    assert referrals.counts(None, 100, SUNDAY_NIGHT) == 0
