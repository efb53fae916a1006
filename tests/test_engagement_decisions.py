"""Earning rules and formulas, decided without a database: the table of what a formula
accepts and refuses, and what a rule pays for an action."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from app.engagement.formula import FormulaError, compile_formula
from app.engagement.rules import RULE_POINTS_MAX, Rule, RuleUsage, rule_credits

WEDNESDAY = datetime(2026, 11, 4, 12, tzinfo=UTC)
SATURDAY = datetime(2026, 11, 7, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("formula", "properties", "points"),
    [
        ("5", {}, 5),
        ("amount * 2", {"amount": 10.7}, 21),
        ("amount / 3", {"amount": 10}, 3),
        ("(amount + tip) * 2 - 1", {"amount": 3, "tip": 1}, 7),
        ("min(amount, 50)", {"amount": 80}, 50),
        ("max(amount, 10, qty)", {"amount": 3, "qty": 12}, 12),
        ("floor(amount / 10) * 10", {"amount": 99}, 90),
        ("round(amount)", {"amount": 2.5}, 2),
        ("round(amount)", {"amount": 3.5}, 4),
        ("-amount", {"amount": 5}, 0),
        ("amount - 100", {"amount": 20}, 0),
        ("amount / zero", {"amount": 20, "zero": 0}, 0),
        ("+amount", {"amount": 0.1}, 0),
        ("0.1 + 0.2 + 0.7", {}, 1),
    ],
)
def test_a_formula_is_floored_to_whole_points_and_never_negative(
    formula: str, properties: dict[str, Any], points: int
) -> None:
    assert compile_formula(formula).points(properties) == points


@pytest.mark.parametrize(
    ("formula", "problem"),
    [
        ("amount ** 2", "operator ** is not allowed"),
        ("amount // 2", "operator // is not allowed"),
        ("amount % 2", "operator % is not allowed"),
        ("amount.real", "attribute access"),
        ("amount[0]", "subscripts"),
        ("amount > 2", "comparisons"),
        ("amount and 2", "and/or"),
        ("'text'", "numbers only"),
        ("True", "numbers only"),
        ("__import__('os')", "only min, max, floor, round may be called"),
        ("abs(amount)", "only min, max, floor, round may be called"),
        ("min(amount)", "at least two arguments"),
        ("floor(1, 2)", "one argument"),
        ("max(*amount)", "plain arguments"),
        ("lambda: 1", "lambdas"),
        ("floor", "must be called"),
        ("amount *", "not a valid expression"),
        ("", "non-empty"),
        ("1" + " + 1" * 300, "at most 500 characters"),
        ("(" * 40 + "1" + ")" * 40 + " + " + "-" * 40 + "1", "deeper than"),
    ],
)
def test_a_formula_outside_the_grammar_is_refused_naming_the_problem(
    formula: str, problem: str
) -> None:
    with pytest.raises(FormulaError, match=problem.replace("*", r"\*").replace("(", r"\(")):
        compile_formula(formula)


def rule(**fields: Any) -> Rule:
    return Rule.of(
        {"id": "r1", "name": "Rule", "action": "purchase", "formula": "amount", **fields}
    )


@pytest.mark.parametrize(
    ("fields", "properties", "occurred_at", "points"),
    [
        ({}, {"amount": 40}, WEDNESDAY, 40),
        ({}, {}, WEDNESDAY, None),  # the formula's property is missing
        ({}, {"amount": True}, WEDNESDAY, None),  # true is not a number
        ({"conditions": {"min_amount": 50}}, {"amount": 40}, WEDNESDAY, None),
        ({"conditions": {"min_amount": 50}}, {"amount": 50}, WEDNESDAY, 50),
        ({"conditions": {"equals": {"vip": True}}}, {"amount": 5, "vip": 1}, WEDNESDAY, None),
        ({"conditions": {"equals": {"vip": True}}}, {"amount": 5, "vip": True}, WEDNESDAY, 5),
        ({"max_points": 30}, {"amount": 40}, WEDNESDAY, 30),
        ({"multipliers": {"weekend": 1.5}}, {"amount": 3}, WEDNESDAY, 3),
        ({"multipliers": {"weekend": 1.5}}, {"amount": 3}, SATURDAY, 4),
        (
            {
                "multipliers": {
                    "weekend": 2,
                    "dates": [{"from": "2026-11-07", "to": "2026-11-08", "factor": 3}],
                }
            },
            {"amount": 1},
            SATURDAY,
            6,
        ),
        ({"multipliers": {"weekend": 2}, "max_points": 5}, {"amount": 4}, SATURDAY, 5),
        ({"starts_at": "2026-11-05T00:00:00+00:00"}, {"amount": 1}, WEDNESDAY, None),
        ({"ends_at": "2026-11-04T12:00:00+00:00"}, {"amount": 1}, WEDNESDAY, None),
        ({"formula": "amount * 1000000"}, {"amount": 10**6}, WEDNESDAY, RULE_POINTS_MAX),
    ],
)
def test_what_one_rule_pays_for_an_action(
    fields: dict[str, Any], properties: dict[str, Any], occurred_at: datetime, points: int | None
) -> None:
    assert rule(**fields).base_points(properties, occurred_at) == points


HOLIDAYS = frozenset({date(2026, 11, 4), date(2026, 11, 7)})  # a Wednesday, a Saturday
THURSDAY = datetime(2026, 11, 5, 12, tzinfo=UTC)
OVERLAPPING = {"dates": [{"from": "2026-11-01", "to": "2026-11-04", "factor": 3}]}


@pytest.mark.parametrize(
    ("multipliers", "fields", "holidays", "occurred_at", "points"),
    [
        ({"holiday": 2}, {}, HOLIDAYS, WEDNESDAY, 20),
        ({"holiday": 2}, {}, HOLIDAYS, THURSDAY, 10),
        ({"holiday": 2}, {}, frozenset(), WEDNESDAY, 10),  # the program lists none
        ({"weekend": 1.5}, {}, HOLIDAYS, WEDNESDAY, 10),  # no holiday factor
        ({"holiday": 1.25}, {}, HOLIDAYS, WEDNESDAY, 12),  # floored
        # A holiday on a weekend day: both factors, multiplied, as dated spans always were.
        ({"weekend": 1.5, "holiday": 2}, {}, HOLIDAYS, SATURDAY, 30),
        ({"weekend": 1.5, "holiday": 2}, {}, HOLIDAYS, datetime(2026, 11, 8, tzinfo=UTC), 15),
        ({"holiday": 2, **OVERLAPPING}, {}, HOLIDAYS, WEDNESDAY, 60),
        ({"holiday": 2}, {"max_points": 15}, HOLIDAYS, WEDNESDAY, 15),
        # The day is the rule's: 3 November 20:00 UTC is already the 4th in Tokyo, and
        # the 4th at 20:00 UTC is the 5th there.
        (
            {"holiday": 2},
            {"timezone": "Asia/Tokyo"},
            HOLIDAYS,
            datetime(2026, 11, 3, 20, tzinfo=UTC),
            20,
        ),
        (
            {"holiday": 2},
            {"timezone": "Asia/Tokyo"},
            HOLIDAYS,
            datetime(2026, 11, 4, 20, tzinfo=UTC),
            10,
        ),
        # 4 November 03:00 UTC is still the 3rd in New York.
        (
            {"holiday": 2},
            {"timezone": "America/New_York"},
            HOLIDAYS,
            datetime(2026, 11, 4, 3, tzinfo=UTC),
            10,
        ),
    ],
)
def test_a_holiday_factor_applies_on_the_programs_holidays_in_the_rules_zone(
    multipliers: dict[str, Any],
    fields: dict[str, Any],
    holidays: frozenset[date],
    occurred_at: datetime,
    points: int,
) -> None:
    stored = {"id": "r1", "name": "Rule", "action": "purchase", "formula": "10"}
    holiday_rule = Rule.of({**stored, "multipliers": multipliers, **fields}, holidays)
    assert holiday_rule.base_points({}, occurred_at) == points


def test_caps_count_per_participant_per_local_day_and_in_total() -> None:
    capped = rule(caps={"per_day": 10, "total": 25}, timezone="Asia/Tokyo")
    usage = RuleUsage()
    usage.load("r1", "ann", 12, {"2026-11-04": 8})

    def pays(amount: int, participant: str = "ann", at: datetime = WEDNESDAY) -> list[int]:
        return [
            c.points for c in rule_credits([capped], usage, participant, {"amount": amount}, at)
        ]

    assert pays(5) == [2]  # 8 of 10 used on Tokyo's 4 November
    assert pays(5) == []
    # 2026-11-04 23:00 UTC is already 5 November in Tokyo.
    late = datetime(2026, 11, 4, 23, tzinfo=UTC)
    assert pays(20, at=late) == [10]
    assert pays(20, at=datetime(2026, 11, 6, 23, tzinfo=UTC)) == [1]  # 24 of 25 in total
    assert pays(20, participant="bo") == [10]
    assert usage.added == {
        ("r1", "ann", date(2026, 11, 4)): 2,
        ("r1", "ann", date(2026, 11, 5)): 10,
        ("r1", "ann", date(2026, 11, 7)): 1,
        ("r1", "bo", date(2026, 11, 4)): 10,
    }
