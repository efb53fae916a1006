"""The claim rules, decided without a database: every refusal code, and a batch of claims
over several rewards decided in submission order against shared balances and stock. The
writer keeps the database tests (test_rewards_claim_batches.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.errors import DomainError
from app.models import Reward
from app.points.lots import LotBook
from app.rewards.catalog import POPULAR_DAYS, recent_claims_deltas
from app.rewards.claim_decisions import (
    AcceptedChange,
    AcceptedClaim,
    ClaimChangeRequest,
    ClaimDecision,
    ClaimRequest,
    HeldClaim,
    decide_claims,
)
from app.rewards.claims import CANCEL, USE, claim_change_blocker

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def reward(**fields: Any) -> Reward:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "name": "Coupon",
        "type": "coupon",
        "points_cost": 10,
        "max_claims_per_user": 1,
        "total_inventory": None,
        "config": None,
        "is_active": True,
        "available_from": None,
        "expires_at": None,
        "codes_loaded": 5,
        "codes_allocated": 0,
        "claims_count": 0,
    }
    return Reward(**{**values, **fields})


def request(
    target: Reward | uuid.UUID, participant_id: str = "ann", *, paid: bool = True
) -> ClaimRequest:
    reward_id = target.id if isinstance(target, Reward) else target
    return ClaimRequest(uuid.uuid4(), None, reward_id, participant_id, paid)


def decide(
    requests: list[ClaimRequest],
    *rewards: Reward,
    balances: dict[str, int] | None = None,
    claims_so_far: dict[tuple[uuid.UUID, str], int] | None = None,
) -> list[ClaimDecision]:
    return decide_claims(
        requests,
        {each.id: each for each in rewards},
        dict(balances or {"ann": 100, "bob": 100}),
        dict(claims_so_far or {}),
        NOW,
    )


def codes(decisions: list[ClaimDecision]) -> list[str]:
    return [
        decision.code if isinstance(decision, DomainError) else "accepted" for decision in decisions
    ]


@pytest.mark.parametrize(
    ("fields", "balance", "so_far", "code"),
    [
        ({"is_active": False}, 100, 0, "reward_not_found"),
        ({"available_from": NOW + timedelta(seconds=1)}, 100, 0, "reward_not_available"),
        ({"expires_at": NOW}, 100, 0, "reward_expired"),
        ({}, 100, 1, "max_claims_reached"),
        ({"codes_allocated": 5}, 100, 0, "reward_out_of_stock"),
        (
            {"total_inventory": 3, "claims_count": 3, "codes_loaded": 0},
            100,
            0,
            "reward_out_of_stock",
        ),
        ({}, 9, 0, "insufficient_points"),
        ({"max_claims_per_user": 2}, 100, 1, "accepted"),
        ({"points_cost": 0}, 0, 0, "accepted"),
    ],
)
def test_a_claim_is_refused_with_the_first_rule_it_breaks(
    fields: dict[str, Any], balance: int, so_far: int, code: str
) -> None:
    target = reward(**fields)
    decisions = decide(
        [request(target)],
        target,
        balances={"ann": balance},
        claims_so_far={(target.id, "ann"): so_far},
    )
    assert codes(decisions) == [code]


def test_a_claim_of_a_reward_that_is_not_there_is_refused_as_not_found() -> None:
    assert codes(decide([request(uuid.uuid4())])) == ["reward_not_found"]


def test_a_sold_out_reward_still_answers_the_per_user_cap_first() -> None:
    target = reward(codes_allocated=5)
    decisions = decide(
        [request(target), request(target, "bob")], target, claims_so_far={(target.id, "ann"): 1}
    )
    assert codes(decisions) == ["max_claims_reached", "reward_out_of_stock"]


def test_claims_of_several_rewards_share_the_participant_balance_in_submission_order() -> None:
    cheap, dear = reward(points_cost=30), reward(points_cost=60)
    decisions = decide(
        [request(dear), request(cheap), request(cheap, "bob")],
        cheap,
        dear,
        balances={"ann": 80, "bob": 100},
    )
    assert codes(decisions) == ["accepted", "insufficient_points", "accepted"]
    refused = decisions[1]
    assert isinstance(refused, DomainError)
    assert refused.detail == "Insufficient points. Available: 20, requested: 30"
    first, third = decisions[0], decisions[2]
    assert isinstance(first, AcceptedClaim) and isinstance(third, AcceptedClaim)
    assert (first.points_deducted, first.new_balance) == (60, 20)
    assert (third.points_deducted, third.new_balance) == (30, 70)


def test_accepted_claims_take_the_stock_one_by_one_and_count_towards_the_cap() -> None:
    target = reward(codes_loaded=2, max_claims_per_user=2)
    decisions = decide(
        [request(target), request(target), request(target, "bob"), request(target, "bob")], target
    )
    assert codes(decisions) == [
        "accepted",
        "accepted",
        "reward_out_of_stock",
        "reward_out_of_stock",
    ]
    assert (target.codes_allocated, target.claims_count) == (2, 2)
    assert all(isinstance(d, AcceptedClaim) and d.preloaded for d in decisions[:2])


def test_a_free_claim_answers_the_balance_it_leaves_and_a_generated_code_is_not_preloaded() -> None:
    target = reward(points_cost=0, codes_loaded=0)
    [decision] = decide([request(target)], target, balances={"ann": 7})
    assert isinstance(decision, AcceptedClaim)
    assert (decision.points_deducted, decision.new_balance, decision.preloaded) == (0, 7, False)


def test_a_multiplier_reward_takes_no_code() -> None:
    target = reward(type="points_multiplier", points_cost=None, codes_loaded=0)
    [decision] = decide([request(target, paid=False)], target)
    assert isinstance(decision, AcceptedClaim)
    assert (decision.preloaded, decision.points_deducted) == (False, None)


@pytest.mark.parametrize(
    ("status", "change", "refused_with"),
    [
        ("fulfilled", USE, None),
        ("fulfilled", CANCEL, None),
        ("used", USE, "claim_already_used"),
        ("used", CANCEL, "claim_already_used"),
        ("cancelled", USE, "claim_cancelled"),
        ("cancelled", CANCEL, "claim_already_cancelled"),
    ],
)
def test_only_a_fulfilled_claim_is_used_or_cancelled(
    status: str, change: str, refused_with: str | None
) -> None:
    blocker = claim_change_blocker(status, change)
    assert (blocker.code if blocker else None) == refused_with
    assert blocker is None or blocker.status == 409


def held(target: Reward, participant_id: str = "ann", **fields: Any) -> HeldClaim:
    values: dict[str, Any] = {
        "claim_id": uuid.uuid4(),
        "reward_id": target.id,
        "participant_id": participant_id,
        "status": "fulfilled",
        "points_deducted": target.points_cost,
        "holds_preloaded_code": True,
        "claimed_at": NOW - timedelta(days=1),
    }
    return HeldClaim(**{**values, **fields})


def change(claim: HeldClaim, kind: str = CANCEL) -> ClaimChangeRequest:
    return ClaimChangeRequest(uuid.uuid4(), claim.claim_id, claim.reward_id, kind)


def decide_with(
    requests: list[ClaimRequest | ClaimChangeRequest],
    target: Reward,
    claims: list[HeldClaim],
    balances: dict[str, int],
    claims_so_far: dict[tuple[uuid.UUID, str], int] | None = None,
    lots: dict[str, LotBook] | None = None,
) -> list[ClaimDecision]:
    return decide_claims(
        requests,
        {target.id: target},
        balances,
        claims_so_far if claims_so_far is not None else {},
        NOW,
        lots=lots,
        held={claim.claim_id: claim for claim in claims},
    )


def test_a_cancel_refunds_the_points_and_gives_the_unit_and_the_code_back() -> None:
    coupon = reward(points_cost=30, codes_loaded=2, codes_allocated=2, claims_count=2)
    claim = held(coupon)
    balances = {"ann": 5}
    [decision] = decide_with([change(claim)], coupon, [claim], balances)
    assert isinstance(decision, AcceptedChange)
    assert (decision.points_refunded, decision.new_balance) == (30, 35)
    assert claim.status == "cancelled" and claim.cancelled_at == NOW
    assert (coupon.codes_allocated, coupon.claims_count, balances["ann"]) == (1, 1, 35)


def test_two_cancels_of_one_claim_in_a_batch_refund_once() -> None:
    coupon = reward(points_cost=30, codes_loaded=1, codes_allocated=1, claims_count=1)
    claim = held(coupon)
    first, second = decide_with([change(claim), change(claim)], coupon, [claim], {"ann": 0})
    assert isinstance(first, AcceptedChange) and first.points_refunded == 30
    assert isinstance(second, DomainError) and second.code == "claim_already_cancelled"
    assert (coupon.codes_allocated, coupon.claims_count) == (0, 0)


def test_a_claim_after_a_cancel_in_the_same_batch_takes_the_stock_and_the_cap_it_freed() -> None:
    coupon = reward(points_cost=30, codes_loaded=1, codes_allocated=1, claims_count=1)
    claim = held(coupon)
    counted = {(coupon.id, "ann"): 1}
    claim_first = request(coupon)
    decisions = decide_with(
        [claim_first, change(claim), request(coupon)], coupon, [claim], {"ann": 0}, counted
    )
    refused, cancelled, accepted = decisions
    assert isinstance(refused, DomainError) and refused.code == "max_claims_reached"
    assert isinstance(cancelled, AcceptedChange)
    assert isinstance(accepted, AcceptedClaim) and accepted.preloaded
    assert (accepted.points_deducted, accepted.new_balance) == (30, 0)  # paid with the refund


def test_a_refund_is_spendable_from_the_payers_lot_book() -> None:
    coupon = reward(points_cost=30, max_claims_per_user=5, claims_count=1, codes_allocated=1)
    claim = held(coupon)
    book = LotBook(0, ())
    decisions = decide_with(
        [change(claim), request(coupon)], coupon, [claim], {"ann": 0}, lots={"ann": book}
    )
    assert all(isinstance(decision, AcceptedChange | AcceptedClaim) for decision in decisions)
    assert book.spendable == 0


def test_a_use_marks_the_claim_used_and_moves_nothing() -> None:
    coupon = reward(codes_allocated=1, claims_count=1)
    claim = held(coupon)
    balances = {"ann": 5}
    [decision] = decide_with([change(claim, USE)], coupon, [claim], balances)
    assert isinstance(decision, AcceptedChange) and decision.points_refunded is None
    assert (claim.status, claim.used_at) == ("used", NOW)
    assert (coupon.codes_allocated, coupon.claims_count, balances) == (1, 1, {"ann": 5})


def test_a_change_of_a_claim_not_read_or_of_another_reward_is_not_found() -> None:
    coupon, other = reward(), reward()
    claim = held(other)
    missing = ClaimChangeRequest(uuid.uuid4(), uuid.uuid4(), coupon.id, CANCEL)
    elsewhere = ClaimChangeRequest(uuid.uuid4(), claim.claim_id, coupon.id, CANCEL)
    decisions = decide_with([missing, elsewhere], coupon, [claim], {})
    assert [d.code for d in decisions if isinstance(d, DomainError)] == ["claim_not_found"] * 2


TODAY = NOW.date()


def ring(**days_ago_claims: int) -> list[int]:
    """Ring slots with these claims `dN` days ago."""
    slots = [0] * POPULAR_DAYS
    for name, claims in days_ago_claims.items():
        slots[(TODAY - timedelta(days=int(name[1:]))).toordinal() % POPULAR_DAYS] += claims
    return slots


@pytest.mark.parametrize(
    ("counted", "expected"),
    [
        ([], None),
        ([(0, 1), (0, 1), (3, -1)], ring(d0=2, d3=-1)),  # two claims, a cancel of one 3 days old
        ([(29, -1)], ring(d29=-1)),  # the window's first day
        ([(30, -1), (-1, 1)], None),  # out of the window: nothing (a claim "tomorrow" either)
    ],
)
def test_recent_claims_deltas_count_each_day_of_the_window_in_its_slot(
    counted: list[tuple[int, int]], expected: list[int] | None
) -> None:
    days = [(TODAY - timedelta(days=days_ago), delta) for days_ago, delta in counted]
    assert recent_claims_deltas(days, TODAY) == expected
