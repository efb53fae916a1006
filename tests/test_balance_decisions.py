"""The everyday write's rules, decided without a database: awards and deductions applied in
order against running balances, multipliers, tier climbs, refusals, and the events each
decision makes. The writer (app.points.balance_changes.write_changes) keeps the database
tests in test_points_api.py."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from app.errors import DomainError
from app.ledger import LockedRow
from app.outbox import POINTS_AWARDED, POINTS_DEDUCTED, TIER_UPGRADED
from app.points.awards import OUTBOX_COLUMNS, AwardPass
from app.points.balance_changes import Applied, BalanceWrite, decide_changes
from app.points.lots import LotBook
from app.points.multipliers import ActiveMultiplier
from app.points.standings import (
    Credit,
    Debit,
    Placements,
    Standing,
    awarded_payload,
    decide_awards,
)
from app.points.tiers import TierLadder, TierRung

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SILVER = TierRung("silver", "Silver", 1, 100, Decimal(1))
GOLD = TierRung("gold", "Gold", 2, 500, Decimal("1.5"))


def standing(
    balance: int = 0,
    *,
    earned: int | None = None,
    tier: str | None = None,
    ladder: TierLadder | None = None,
    boosts: list[ActiveMultiplier] | None = None,
    participant_id: str = "ann",
) -> tuple[Placements, Standing]:
    placements = Placements(ladder if ladder is not None else TierLadder([]))
    earned = balance if earned is None else earned
    row = LockedRow(
        str(uuid.uuid4()), participant_id, balance, earned, earned - balance, tier, 0, 0
    )
    held = Standing(row, placements, boosts or [])
    held.lots = LotBook(balance, [])  # all open points
    return placements, held


def award(amount: int, participant_id: str = "ann", **fields: object) -> BalanceWrite:
    return BalanceWrite(uuid.uuid4(), participant_id, amount, debit=False, **fields)  # type: ignore[arg-type]


def deduct(amount: int, participant_id: str = "ann", **fields: object) -> BalanceWrite:
    return BalanceWrite(uuid.uuid4(), participant_id, amount, debit=True, **fields)  # type: ignore[arg-type]


def decide(
    writes: list[BalanceWrite], placements: Placements, *standings: Standing
) -> list[Applied | DomainError]:
    return decide_changes(
        writes,
        {each.external_id: each for each in standings},
        placements,
        (f"tx-{n}" for n in itertools.count(1)),
        NOW,
    )


def refusal(decision: Applied | DomainError) -> tuple[str, str]:
    assert isinstance(decision, DomainError)
    return decision.code, decision.detail


def test_an_award_then_a_deduction_of_one_participant_apply_in_order() -> None:
    placements, ann = standing(10)
    decisions = decide([award(5), deduct(12), deduct(4)], placements, ann)

    assert [d.as_body()["new_balance"] for d in decisions[:2]] == [15, 3]  # type: ignore[union-attr]
    assert refusal(decisions[2]) == (
        "insufficient_points",
        "Insufficient points. Available: 3, requested: 4",
    )
    assert (ann.balance, ann.total_earned, ann.total_spent) == (3, 15, 12)


@pytest.mark.parametrize(
    ("balance", "amount", "refused"),
    [
        (10, 10, None),  # to zero, never below
        (10, 11, "Insufficient points. Available: 10, requested: 11"),
        (0, 1, "Insufficient points. Available: 0, requested: 1"),
    ],
)
def test_a_deduction_is_refused_exactly_when_the_balance_is_short(
    balance: int, amount: int, refused: str | None
) -> None:
    placements, ann = standing(balance)
    [decision] = decide([deduct(amount)], placements, ann)
    if refused is None:
        assert isinstance(decision, Applied) and decision.as_body()["new_balance"] == 0
    else:
        assert refusal(decision) == ("insufficient_points", refused)
        assert ann.balance == balance  # a refusal changes nothing


def test_a_deduction_from_a_participant_who_does_not_exist_is_refused() -> None:
    placements, _ = standing()
    [decision] = decide([deduct(3, "nobody")], placements)
    assert refusal(decision) == (
        "insufficient_points",
        "Insufficient points. Available: 0, requested: 3",
    )


@pytest.mark.parametrize(
    ("tier", "boosts", "base", "credited"),
    [
        (None, [], 7, 7),
        ("gold", [], 7, 10),  # 7 x 1.5 = 10.5, rounded down
        (None, [Decimal(2)], 7, 14),
        ("gold", [Decimal(2), Decimal("1.5")], 3, 13),  # 3 x 1.5 x 2 x 1.5 = 13.5
    ],
)
def test_an_award_is_worth_its_base_amount_times_every_multiplier_rounded_down(
    tier: str | None, boosts: list[Decimal], base: int, credited: int
) -> None:
    active = [
        ActiveMultiplier(uuid.uuid4(), factor, None, datetime(2026, 1, 1, tzinfo=UTC), None)
        for factor in boosts
    ]
    ladder = TierLadder([SILVER, GOLD] if tier else [])
    placements, ann = standing(600, tier=tier, ladder=ladder, boosts=active)
    [decision] = decide([award(base)], placements, ann)
    assert isinstance(decision, Applied) and isinstance(decision.outcome, Credit)
    assert (decision.outcome.amount, decision.outcome.base_amount) == (credited, base)
    sources = [applied["source"] for applied in decision.multipliers or []]
    assert sources == ["tier"] * (tier is not None) + ["reward"] * len(boosts)


def test_an_award_that_crosses_thresholds_climbs_once_to_the_highest_tier_reached() -> None:
    ladder = TierLadder([SILVER, GOLD])
    placements, ann = standing(90, ladder=ladder)
    decisions = decide([award(5), award(500), award(1)], placements, ann)

    upgrades = [d.outcome.tier_upgrade for d in decisions]  # type: ignore[union-attr]
    assert upgrades[0] is None
    assert upgrades[1] is not None and (upgrades[1].code, upgrades[1].previous_code) == (
        "gold",
        None,
    )
    assert upgrades[2] is None
    applied = decisions[1]
    assert isinstance(applied, Applied)
    assert [event_type for event_type, _ in applied.events] == [POINTS_AWARDED, TIER_UPGRADED]
    assert applied.events[1][1]["qualifying_points"] == 595
    # The award that climbed was worth the multiplier of the tier it started in; the next
    # one that of gold.
    assert decisions[2].outcome.amount == 1  # type: ignore[union-attr]  # int(1 x 1.5)


def test_each_decision_carries_its_event_with_the_wire_payload() -> None:
    placements, ann = standing(10)
    award_write = award(5, reason="order", metadata={"order": 7})
    deduct_write = deduct(3, reason=None)
    decisions = decide([award_write, deduct_write], placements, ann)

    assert [each.events for each in decisions] == [  # type: ignore[union-attr]
        (
            (
                POINTS_AWARDED,
                {
                    "participant_id": "ann",
                    "transaction_id": "tx-1",
                    "amount": 5,
                    "base_amount": 5,
                    "new_balance": 15,
                    "reason": "order",
                    "metadata": {"order": 7},
                },
            ),
        ),
        (
            (
                POINTS_DEDUCTED,
                {
                    "transaction_id": "tx-2",
                    "participant_id": "ann",
                    "amount": 3,
                    "new_balance": 12,
                    "reason": None,
                    "metadata": None,
                },
            ),
        ),
    ]
    assert isinstance(decisions[1], Applied) and isinstance(decisions[1].outcome, Debit)


def test_the_award_pass_writes_the_awarded_event_as_json_dumps_of_its_payload() -> None:
    """The batch and bulk award pass formats points.awarded by hand, for speed: the text
    must be exactly json.dumps of the payload the everyday write builds as a dict."""
    participant_id = 'odd "id" \\ é'
    placements, ann = standing(0, participant_id=participant_id)
    credits: list[Credit] = []
    award_pass = AwardPass(
        uuid.uuid4(), "live", datetime(2026, 12, 1, tzinfo=UTC), {participant_id: ann},
        placements, credits, subscribed=True,
    )  # fmt: skip
    metadata = {"order": 'x"\ty', "n": [1, 2]}
    for reason in ("a\ttab", None):
        credits.clear()
        award_pass.event_lines.clear()
        award = (participant_id, 4, reason, json.dumps(metadata), None, None, None)
        list(award_pass.ledger_lines([award], ["\\N"]))
        line = award_pass.event_lines[0].rstrip("\n").split("\t")
        payload_field = line[OUTBOX_COLUMNS.index("payload")]
        expected = json.dumps(awarded_payload(credits[0], reason, metadata))
        assert payload_field == expected.replace("\\", "\\\\").replace("\t", "\\t")


def test_the_award_pass_decides_each_award_in_order_with_the_multipliers_it_started_with() -> None:
    ladder = TierLadder([SILVER, GOLD])
    placements, ann = standing(90, ladder=ladder)
    awards = [("ann", amount, None, None, None, None, None) for amount in (5, 500, 2)]

    decisions = list(decide_awards(awards, {"ann": ann}, placements, ["t1", "t2", "t3"], NOW))

    credited, balances, upgrades, applied, earned = (
        [decision[field] for decision in decisions] for field in (2, 4, 5, 7, 8)
    )
    assert credited == [5, 500, 3]  # gold's 1.5 x after the climb
    assert balances == earned == [95, 595, 598]
    assert upgrades[0] is None and upgrades[2] is None
    assert upgrades[1] is not None and (upgrades[1].code, upgrades[1].previous_code) == (
        "gold",
        None,
    )
    assert applied[1] == "\\N"  # no multiplier before the climb
    assert "gold" in applied[2]


def test_spending_takes_lots_soonest_expiring_first_then_open_points() -> None:
    soon, later = datetime(2026, 12, 5, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    # 100 spendable: 30 in a lot expiring later, 20 expiring soon, 50 open points.
    book = LotBook(100, [(2, 20, soon), (1, 30, later)])  # (seq, remaining, expires_at)

    book.spend(25)

    assert book.spent_from == {2: 0, 1: 25}
    assert book.spendable == 75
    book.spend(55)  # the 5 left in the later lot, then 50 open points
    assert book.spent_from == {2: 0, 1: 0}
    assert book.spendable == 20


def test_a_batch_spends_a_lot_it_credited_before_the_deduction_in_expiry_order() -> None:
    placements, ann = standing(10)  # 10 open points
    dated = award(40, expires_at=datetime(2027, 1, 1, tzinfo=UTC))
    decisions = decide([dated, deduct(45)], placements, ann)

    [credit, debit] = decisions
    assert isinstance(credit, Applied) and credit.lot is not None
    assert credit.lot.remaining == 0  # the dated lot went first, then 5 open points
    assert isinstance(debit, Applied) and ann.balance == 5
