"""Challenges: a goal inside a window (`target` actions of one name, or points earned),
decided without I/O. Progress stops at the target; completing pays the reward once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.errors import DomainError, NotFound
from app.points.lots import instant

# What a challenge, a counting badge or a leaderboard counts: actions of one name, or
# points credited.
ACTION_COUNT, POINTS_EARNED = "action_count", "points_earned"


def challenge_not_found() -> NotFound:
    return NotFound("challenge_not_found", "Challenge not found")


def challenge_ended() -> DomainError:
    return DomainError("challenge_ended", "The challenge has ended", 400)


def challenge_not_enrolled() -> NotFound:
    return NotFound("challenge_not_enrolled", "The participant has not joined this challenge")


@dataclass(frozen=True)
class ChallengeDef:
    id: str
    name: str
    type: str
    action: str | None
    target: int
    reward: Mapping[str, Any] | None
    starts_at: datetime | None
    ends_at: datetime | None
    requires_enrollment: bool
    active: bool

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> ChallengeDef:
        return cls(
            id=str(row["id"]),
            name=row["name"],
            type=row["type"],
            action=row.get("action"),
            target=int(row["target"]),
            reward=row.get("reward"),
            starts_at=instant(row.get("starts_at")),
            ends_at=instant(row.get("ends_at")),
            requires_enrollment=bool(row.get("requires_enrollment")),
            active=bool(row.get("active", True)),
        )

    def in_window(self, moment: datetime) -> bool:
        if self.starts_at is not None and moment < self.starts_at:
            return False
        return self.ends_at is None or moment < self.ends_at

    def ended(self, now: datetime) -> bool:
        return self.ends_at is not None and now >= self.ends_at

    def counts(self, action: str | None, points: int) -> int:
        """What an activity adds: 1 for an action of its name, the points for a credit."""
        if self.type == ACTION_COUNT:
            return 1 if action is not None and action == self.action else 0
        return points


@dataclass
class ChallengeState:
    current: int = 0
    enrolled_at: datetime | None = None
    completed_at: datetime | None = None


def advance(
    challenge: ChallengeDef, state: ChallengeState, step: int, at: datetime, now: datetime
) -> bool:
    """Count `step` toward the challenge for an activity at `at`; True when this
    completes it (the caller pays). Outside the window, without enrollment where it is
    required, or once complete, nothing counts."""
    if (
        step <= 0
        or not challenge.active
        or state.completed_at is not None
        or not challenge.in_window(at)
        or (challenge.requires_enrollment and state.enrolled_at is None)
    ):
        return False
    state.current = min(state.current + step, challenge.target)
    if state.current >= challenge.target:
        state.completed_at = now
        return True
    return False
