"""The referral rules without a database: tracking refusals (in the order they apply),
what completes a referral, what completion pays, and the codes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from app.referrals.decisions import (
    CompletionFacts,
    Payment,
    Qualifying,
    TrackFacts,
    completion_refusal,
    completions,
    money,
    normalized_code,
    payments,
    qualifying_of,
    referral_expires_at,
    track_refusal,
)
from app.referrals.program import ReferralTerms
from app.text import CODE_ALPHABET, random_code

ACTIVE = ReferralTerms(500, 200, "purchase", max_referrals_per_referrer=2)


def facts(**changes: object) -> TrackFacts:
    fields: dict[str, object] = {
        "terms": ACTIVE,
        "referrer_id": "alice",
        "referee_id": "bob",
        "referee_referred": False,
        "referrer_count": 0,
    }
    fields.update(changes)
    return TrackFacts(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "refusal"),
    [
        ({}, None),
        ({"terms": None}, "referral_program_inactive"),
        ({"terms": ReferralTerms(1, 1, None, None, active=False)}, "referral_program_inactive"),
        ({"referrer_id": None}, "referral_invalid"),
        ({"referee_id": "alice"}, "referral_self"),
        ({"referee_referred": True}, "referral_already_tracked"),
        ({"referrer_count": 1}, None),
        ({"referrer_count": 2}, "referral_limit_reached"),
        ({"terms": ReferralTerms(1, 1, None, None), "referrer_count": 10_000}, None),
        # The first that applies: inactive before anything, self before already referred.
        ({"terms": None, "referrer_id": None}, "referral_program_inactive"),
        ({"referee_id": "alice", "referee_referred": True}, "referral_self"),
        ({"referee_referred": True, "referrer_count": 2}, "referral_already_tracked"),
    ],
)
def test_track_refusal_names_the_first_rule_broken(
    changes: dict[str, object], refusal: str | None
) -> None:
    decided = track_refusal(facts(**changes))
    assert (decided.code if decided is not None else None) == refusal


def test_a_referee_completes_on_the_first_completion_action_only() -> None:
    done = [
        ("bob", "login", None),
        ("bob", "purchase", {"amount": 42.5, "order_id": "o-1"}),
        ("carol", None, None),
        ("bob", "purchase", {"amount": 99, "order_id": "o-2"}),
        ("dave", "purchase", {"amount": "12.345", "order_id": 77}),
    ]
    assert completions(done, "purchase") == [
        Qualifying("bob", "purchase", Decimal("42.50"), "o-1"),
        Qualifying("dave", "purchase", Decimal("12.34"), "77"),
    ]
    assert completions(done, "signup") == []


@pytest.mark.parametrize(
    ("details", "amount", "order_id"),
    [
        (None, None, None),
        ({"amount": True, "order_id": ""}, None, None),
        ({"amount": "lots", "order_id": ["x"]}, None, None),
        ({"amount": float("nan")}, None, None),
        ({"amount": 1e30}, None, None),
        ({"amount": 75}, Decimal("75.00"), None),
    ],
)
def test_qualifying_details_are_kept_only_when_they_read_as_such(
    details: dict[str, object] | None, amount: Decimal | None, order_id: str | None
) -> None:
    assert qualifying_of("bob", "purchase", details) == Qualifying(
        "bob", "purchase", amount, order_id
    )


def test_money_is_to_the_cent() -> None:
    assert money(0.125) == Decimal("0.12")
    assert money("3") == Decimal("3.00")
    assert money(None) is None


def test_completion_pays_each_side_with_points_under_a_key_of_its_own() -> None:
    assert payments("r1", "alice", "bob", 500, 200) == [
        Payment("alice", 500, "referral:r1:referrer", "Referral of bob"),
        Payment("bob", 200, "referral:r1:referee", "Referred by alice"),
    ]
    assert [p.participant_id for p in payments("r1", "alice", "bob", 0, 200)] == ["bob"]
    assert payments("r1", "alice", "bob", 0, 0) == []


def test_codes_have_the_exact_length_from_the_unambiguous_alphabet() -> None:
    codes = {random_code(6) for _ in range(200)}
    assert all(len(code) == 6 and set(code) <= set(CODE_ALPHABET) for code in codes)
    assert len(codes) == 200
    assert not set("0O1IL") & set(CODE_ALPHABET)
    assert len(random_code(32)) == 32


def test_codes_are_matched_without_case_or_blanks() -> None:
    assert normalized_code("  ab3k9x ") == "AB3K9X"


NOW = datetime(2027, 1, 20, 12, tzinfo=UTC)
MINIMUM = ReferralTerms(500, 200, "purchase", None, min_qualifying_amount=Decimal("25.00"))


def completion(**changes: object) -> CompletionFacts:
    fields: dict[str, object] = {
        "status": "pending",
        "expires_at": None,
        "terms": ACTIVE,
        "amount": None,
        "now": NOW,
    }
    fields.update(changes)
    return CompletionFacts(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "refusal"),
    [
        ({}, None),
        ({"status": "completed"}, "referral_already_completed"),
        ({"status": "expired"}, "referral_expired"),
        ({"expires_at": NOW}, "referral_expired"),
        ({"expires_at": NOW + timedelta(seconds=1)}, None),
        ({"terms": None}, "referral_program_inactive"),
        ({"terms": MINIMUM}, "referral_not_qualified"),  # no amount: not shown to be enough
        ({"terms": MINIMUM, "amount": Decimal("24.99")}, "referral_not_qualified"),
        ({"terms": MINIMUM, "amount": Decimal("25.00")}, None),
        # The first that applies: completed, then expired, then inactive, then the amount.
        ({"status": "completed", "expires_at": NOW}, "referral_already_completed"),
        ({"expires_at": NOW, "terms": None}, "referral_expired"),
        ({"terms": replace(MINIMUM, active=False)}, "referral_program_inactive"),
    ],
)
def test_completion_refusal_names_the_first_rule_broken(
    changes: dict[str, object], refusal: str | None
) -> None:
    decided = completion_refusal(completion(**changes))
    assert (decided.code if decided is not None else None) == refusal


def test_a_referral_expires_the_programs_days_after_it_is_tracked() -> None:
    assert referral_expires_at(ACTIVE, NOW) is None
    assert referral_expires_at(replace(ACTIVE, expiration_days=30), NOW) == NOW + timedelta(30)
