"""Earning rules: the points an action earns, decided without I/O.

A rule matches an action of its `action` name that occurred inside its window and meets
its conditions; its formula over the action's properties gives base points, times the
rule's own multipliers for the day (weekend, the program's holidays, dated factors, in the
rule's time zone; those that apply on one day multiply together), floored, cut to
`max_points`, then to what its caps leave the participant (per day in the rule's time
zone, in total). Caps and `max_points` bound the rule's points before the participant's
tier and reward multipliers, which apply to the credit as to any award.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from app.engagement.formula import Formula, MissingProperty, compile_formula
from app.points.lots import instant

# One rule's points for one action never exceed this (a formula over a huge property
# must not overflow a balance).
RULE_POINTS_MAX = 1_000_000


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@dataclass(frozen=True)
class DatedFactor:
    first: date
    last: date
    factor: Decimal


@dataclass(frozen=True)
class Rule:
    """An earning rule as a batch decides with it (from its stored row)."""

    id: str
    name: str
    action: str
    formula: Formula
    timezone: ZoneInfo
    min_amount: Decimal | None = None
    equals: Mapping[str, object] = field(default_factory=dict)
    max_points: int | None = None
    weekend_factor: Decimal | None = None
    holiday_factor: Decimal | None = None
    # The program's holidays (app.points.program), the days holiday_factor applies.
    holidays: frozenset[date] = frozenset()
    dated_factors: tuple[DatedFactor, ...] = ()
    per_day: int | None = None
    total: int | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any], holidays: frozenset[date] = frozenset()) -> Rule:
        """From a stored rule (its columns by name, as JSON gives them) and the program's
        holidays."""
        conditions = row.get("conditions") or {}
        multipliers = row.get("multipliers") or {}
        caps = row.get("caps") or {}
        min_amount = conditions.get("min_amount")
        weekend = multipliers.get("weekend")
        holiday = multipliers.get("holiday")
        return cls(
            id=str(row["id"]),
            name=row["name"],
            action=row["action"],
            formula=_compiled(row["formula"]),
            timezone=zone(row.get("timezone") or "UTC"),
            min_amount=Decimal(str(min_amount)) if min_amount is not None else None,
            equals=conditions.get("equals") or {},
            max_points=row.get("max_points"),
            weekend_factor=Decimal(str(weekend)) if weekend is not None else None,
            holiday_factor=Decimal(str(holiday)) if holiday is not None else None,
            holidays=holidays if holiday is not None else frozenset(),
            dated_factors=tuple(
                DatedFactor(
                    date.fromisoformat(span["from"]),
                    date.fromisoformat(span["to"]),
                    Decimal(str(span["factor"])),
                )
                for span in multipliers.get("dates") or ()
            ),
            per_day=caps.get("per_day"),
            total=caps.get("total"),
            starts_at=instant(row.get("starts_at")),
            ends_at=instant(row.get("ends_at")),
        )

    def local_day(self, occurred_at: datetime) -> date:
        return _local_day(self.timezone, occurred_at)

    def base_points(self, properties: Mapping[str, object], occurred_at: datetime) -> int | None:
        """Points before caps for an action of this rule's name, or None if the rule does
        not apply (outside its window, a condition unmet, a property the formula reads
        missing)."""
        if self.starts_at is not None and occurred_at < self.starts_at:
            return None
        if self.ends_at is not None and occurred_at >= self.ends_at:
            return None
        if self.min_amount is not None:
            amount = properties.get("amount")
            if isinstance(amount, bool) or not isinstance(amount, int | float):
                return None
            if Decimal(str(amount)) < self.min_amount:
                return None
        for name, expected in self.equals.items():
            if name not in properties or not _same(properties[name], expected):
                return None
        try:
            points = self.formula.points(properties)
        except MissingProperty:
            return None
        if self.weekend_factor is not None or self.holidays or self.dated_factors:
            factor = self.factor_on(self.local_day(occurred_at))
            if factor is not None:
                points = int(points * factor)
        if self.max_points is not None:
            points = min(points, self.max_points)
        return min(points, RULE_POINTS_MAX)

    def factor_on(self, day: date) -> Decimal | None:
        """The rule's multiplier on a day of its zone; None: none applies. The weekend's,
        the holiday's and each dated span's that apply multiply together (a holiday on a
        Saturday earns both), as overlapping dated spans always have."""
        factor: Decimal | None = None
        if self.weekend_factor is not None and day.weekday() >= 5:
            factor = self.weekend_factor
        if self.holiday_factor is not None and day in self.holidays:
            factor = self.holiday_factor * (factor or 1)
        for span in self.dated_factors:
            if span.first <= day <= span.last:
                factor = span.factor * (factor or 1)
        return factor


@lru_cache(maxsize=4096)
def _local_day(timezone: ZoneInfo, moment: datetime) -> date:
    # A batch's actions mostly share their moment (when their request was accepted).
    return moment.astimezone(timezone).date()


def _same(actual: object, expected: object) -> bool:
    # true is not 1: a boolean property equals only a boolean.
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    return actual == expected


@lru_cache(maxsize=1024)
def _compiled(text: str) -> Formula:
    # A stored formula was checked when written; compiled once per process.
    return compile_formula(text)


class RuleUsage:
    """What rules have credited the participants of a batch: per (rule, participant) its
    total, and its points per day; kept up to date as the batch decides."""

    def __init__(self) -> None:
        self.totals: dict[tuple[str, str], int] = {}
        self.days: dict[tuple[str, str, date], int] = {}
        # (rule, participant, day) -> points this batch added: the rows to write.
        self.added: dict[tuple[str, str, date], int] = {}

    def load(self, rule_id: str, participant_pk: str, total: int, days: Mapping[str, int]) -> None:
        self.totals[(rule_id, participant_pk)] = total
        for day, points in days.items():
            self.days[(rule_id, participant_pk, date.fromisoformat(day))] = points

    def allow(self, rule: Rule, participant_pk: str, day: date, points: int) -> int:
        """`points` cut to what the rule's caps leave; the allowed points are counted (for a
        rule with caps: one without has nothing to count against)."""
        if rule.total is None and rule.per_day is None:
            return points
        if rule.total is not None:
            used = self.totals.get((rule.id, participant_pk), 0)
            points = min(points, max(rule.total - used, 0))
        if rule.per_day is not None:
            used_today = self.days.get((rule.id, participant_pk, day), 0)
            points = min(points, max(rule.per_day - used_today, 0))
        if points > 0:
            key = (rule.id, participant_pk)
            self.totals[key] = self.totals.get(key, 0) + points
            day_key = (rule.id, participant_pk, day)
            self.days[day_key] = self.days.get(day_key, 0) + points
            self.added[day_key] = self.added.get(day_key, 0) + points
        return points


@dataclass(frozen=True, slots=True)
class RuleCredit:
    rule: Rule
    points: int


def rule_credits(
    rules: list[Rule],
    usage: RuleUsage,
    participant_pk: str,
    properties: Mapping[str, object],
    occurred_at: datetime,
) -> list[RuleCredit]:
    """What each of the action's rules (those of its name, in a stable order) credits it,
    counted against the rules' caps; rules that earn nothing are left out."""
    credits: list[RuleCredit] = []
    for rule in rules:
        points = rule.base_points(properties, occurred_at)
        if not points:
            continue
        points = usage.allow(rule, participant_pk, rule.local_day(occurred_at), points)
        if points > 0:
            credits.append(RuleCredit(rule, points))
    return credits
