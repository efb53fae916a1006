"""Streaks: a participant's run of periods (days or weeks, in the streak's time zone) with
at least one action of the streak's kind, decided without I/O.

An action extends the run once per period: the first in a period counts, others in it
do not. The run holds while each period is followed by the next; it breaks when the end
of the period after the last one counted (plus the grace hours) passes without an action:
its `deadline`. An action within the grace after that end counts for the missed period.
A milestone (a count of periods) pays its points once per run, when the run reaches it.
An action that happened before the last counted period (reported late) changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from app.engagement.rules import zone

DAILY, WEEKLY = "daily", "weekly"


@dataclass(frozen=True)
class Milestone:
    days: int  # periods in the run (days for a daily streak, weeks for a weekly one)
    points: int


@dataclass(frozen=True)
class StreakDef:
    id: str
    streak_type: str
    name: str
    action: str
    period: str
    timezone: ZoneInfo
    grace: timedelta
    milestones: tuple[Milestone, ...]
    active: bool = True

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> StreakDef:
        return cls(
            id=str(row["id"]),
            streak_type=row["streak_type"],
            name=row["name"],
            action=row["action"],
            period=row["period"],
            timezone=zone(row.get("timezone") or "UTC"),
            grace=timedelta(hours=row.get("grace_period_hours") or 0),
            milestones=tuple(
                sorted(
                    (
                        Milestone(int(m["days"]), int(m.get("points") or 0))
                        for m in row["milestones"] or ()
                    ),
                    key=lambda milestone: milestone.days,
                )
            ),
            active=row.get("active", True),
        )

    @property
    def step(self) -> timedelta:
        return timedelta(days=1 if self.period == DAILY else 7)

    def period_of(self, moment: datetime) -> date:
        """The local start of the period `moment` falls in (a day, or a week's Monday)."""
        day = moment.astimezone(self.timezone).date()
        return day if self.period == DAILY else day - timedelta(days=day.weekday())

    def period_end(self, start: date) -> datetime:
        """When the period starting on `start` ends: the next one's local midnight."""
        return datetime.combine(start + self.step, time(0), tzinfo=self.timezone)

    def deadline(self, last_period: date) -> datetime:
        """When a run whose last counted period is `last_period` breaks."""
        return self.period_end(last_period + self.step) + self.grace

    def next_milestone(self, current: int) -> Milestone | None:
        return next((m for m in self.milestones if m.days > current), None)


@dataclass
class StreakState:
    """A participant's run, as read under its lock and changed as the batch decides."""

    current: int = 0
    longest: int = 0
    last_period: date | None = None
    last_activity_at: datetime | None = None
    deadline: datetime | None = None
    run: int = 1
    paid: list[int] = field(default_factory=list)

    def broken_at(self, moment: datetime) -> bool:
        """Whether the run had broken by `moment` (its deadline passed, not yet swept)."""
        return self.current > 0 and self.deadline is not None and moment > self.deadline


@dataclass(frozen=True)
class StreakStep:
    """What one activity did to a run."""

    counted: bool
    previous: int
    current: int
    broken: int | None = None  # the length of a run it found broken
    milestone: Milestone | None = None  # the milestone the run reached, to pay


def record_activity(streak: StreakDef, state: StreakState, occurred_at: datetime) -> StreakStep:
    """Apply one activity to `state` (changed in place) and say what happened."""
    previous = state.current
    broken = None
    if state.broken_at(occurred_at):
        broken = state.current
        break_run(state)
    period = streak.period_of(occurred_at)
    if state.current == 0:
        state.current = 1
        state.last_period = period
    elif state.last_period is None or period <= state.last_period:
        return StreakStep(False, previous, state.current, broken)
    else:
        # Within the deadline: the next period, or (in the grace after it) a late one
        # that counts for the period it missed.
        state.current += 1
        state.last_period = min(period, state.last_period + streak.step)
    assert state.last_period is not None
    state.longest = max(state.longest, state.current)
    if state.last_activity_at is None or occurred_at > state.last_activity_at:
        state.last_activity_at = occurred_at
    state.deadline = streak.deadline(state.last_period)
    milestone = next(
        (m for m in streak.milestones if m.days == state.current and m.days not in state.paid),
        None,
    )
    if milestone is not None:
        state.paid.append(milestone.days)
    return StreakStep(True, previous, state.current, broken, milestone)


def break_run(state: StreakState) -> None:
    """End the run: the next activity starts a new one (its milestones pay again)."""
    state.current = 0
    state.run += 1
    state.paid = []
