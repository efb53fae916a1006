"""The action pipeline's engagement half: what an action (or any credit) drives beyond its
points, decided in the everyday write's transaction (app.points.balance_changes).

Read under lock: the definitions the batch may touch (the rules of its actions, counting
badges, streaks, challenges, leaderboards) come with the batch's other per-tenant
constants; the locked participants' state (rule usage, badge progress and badges held,
streak runs, challenge progress, leaderboard scores and tops) in one more round trip,
only when the program has any of them. Decide (`Engagement`, pure): rules' points and
the points the engagement pays (credited by the caller, like any award, through tier and
reward multipliers), runs, progress, badges reached, scores, events. Write: the actions
and every state row changed in one statement; the claims of completed challenges'
rewards recorded as operations.

A badge is earned at most once per participant: the batch decides under the
participant's row lock against the badges it holds, and participant_badges' key backs it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.engagement.challenges import (
    ACTION_COUNT,
    POINTS_EARNED,
    ChallengeDef,
    ChallengeState,
    advance,
    challenge_ended,
    challenge_not_found,
)
from app.engagement.definitions import badge_not_found
from app.engagement.leaderboard_cache import ScoreUpdate
from app.engagement.leaderboards import LeaderboardDef, Score, Tops, rank_changes
from app.engagement.rules import Rule, RuleCredit, RuleUsage, rule_credits
from app.engagement.streaks import StreakDef, StreakState, record_activity
from app.errors import DomainError, NotFound
from app.infra.pgcopy import array_literal, fetch_tuples, plain_array_literal
from app.models import Operation
from app.operations import Write, submit_operations
from app.outbox import (
    BADGE_AWARDED,
    CHALLENGE_COMPLETED,
    LEADERBOARD_RANK_CHANGED,
    STREAK_BROKEN,
    STREAK_MILESTONE,
)
from app.points.lots import instant
from app.points.program import holidays_of
from app.referrals.program import COMPLETION_ACTION_AMONG
from app.rewards.claims import CLAIM_KIND, claim_payload

MANUAL = "manual"
STREAK, CHALLENGE_COMPLETED_CRITERIA = "streak", "challenge_completed"
CRITERIA_SOURCE, MANUAL_SOURCE = "criteria", "manual"


@dataclass(frozen=True, slots=True)
class ActionWrite:
    """One accepted action, as its operation's payload says."""

    operation_id: uuid.UUID
    participant_id: str
    action: str
    properties: Mapping[str, object]
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class BadgeGrant:
    """A badge awarded by hand (POST /badges/award)."""

    operation_id: uuid.UUID
    participant_id: str
    badge_id: str


@dataclass(frozen=True, slots=True)
class StreakRecord:
    """One activity recorded on a streak directly (POST /streaks/record)."""

    operation_id: uuid.UUID
    participant_id: str
    streak_type: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class ChallengeJoin:
    """A participant joining a challenge (POST /challenges/{id}/join)."""

    operation_id: uuid.UUID
    participant_id: str
    challenge_id: str


EngagementWrite = ActionWrite | BadgeGrant | StreakRecord | ChallengeJoin


@dataclass(frozen=True, slots=True)
class BadgeDef:
    id: str
    name: str
    kind: str  # ACTION_COUNT, POINTS_EARNED, STREAK, CHALLENGE_COMPLETED or MANUAL
    action: str | None  # ACTION_COUNT: the action counted
    target: int  # the count, points or streak length its criteria ask for
    subject: str | None  # STREAK: the streak type; CHALLENGE_COMPLETED: the challenge id
    points_reward: int | None
    active: bool

    @classmethod
    def of(cls, row: list[Any]) -> BadgeDef:
        badge_id, name, criteria, points_reward, active = row
        kind = criteria["type"]
        target = {ACTION_COUNT: "count", POINTS_EARNED: "points", STREAK: "days"}.get(kind)
        subject = criteria.get("streak_type") or criteria.get("challenge_id")
        return cls(
            str(badge_id),
            name,
            kind,
            criteria.get("action"),
            int(criteria.get(target) or 0) if target else 0,
            str(subject) if subject is not None else None,
            points_reward,
            active,
        )

    @property
    def counted(self) -> bool:
        """Whether its progress is a count kept per participant (badge_progress)."""
        return self.kind in (ACTION_COUNT, POINTS_EARNED)


def badge_already_awarded() -> DomainError:
    return DomainError("badge_already_awarded", "The participant already holds this badge", 409)


def streak_not_active() -> NotFound:
    return NotFound("streak_not_active", "No active streak of this type")


@dataclass(slots=True)
class BadgeEarned:
    """A badge granted by this batch, and the credit its points reward made (if any)."""

    badge: BadgeDef
    participant_id: str
    awarded_at: datetime
    source: str
    transaction_id: str | None = None
    points: int | None = None

    def as_body(self) -> dict[str, Any]:
        return {
            "badge_id": self.badge.id,
            "name": self.badge.name,
            "points": self.points,
            "transaction_id": self.transaction_id,
        }

    def event(self) -> dict[str, Any]:
        return {
            "participant_id": self.participant_id,
            "badge_id": self.badge.id,
            "name": self.badge.name,
            "source": self.source,
            "awarded_at": self.awarded_at.isoformat(),
            "points_reward": self.points,
            "transaction_id": self.transaction_id,
        }


@dataclass
class Report:
    """What one write caused beyond its own points, for its answer."""

    badges: list[BadgeEarned] = field(default_factory=list)
    streaks: list[dict[str, Any]] = field(default_factory=list)
    challenges: list[dict[str, Any]] = field(default_factory=list)


# A credit the engagement asks of the caller (a badge's, milestone's or challenge's
# points): (participant_id, points, reason, operation id, when) -> (transaction id, points
# credited). The caller counts the credit toward what counts points, as any other.
CreditPoints = Callable[[str, int, str, uuid.UUID, datetime], tuple[str, int]]


@dataclass
class Engagement:
    """The engagement definitions and participant state a batch decides against, and the
    rows its decisions add (`write_engagement`). Decides without I/O; `now` is when the
    batch applies, `credit` credits points through the caller's ledger pass."""

    rules: dict[str, list[Rule]] = field(default_factory=dict)  # by action name
    badges: dict[str, BadgeDef] = field(default_factory=dict)  # by id
    streaks: dict[str, StreakDef] = field(default_factory=dict)  # by streak type
    challenges: dict[str, ChallengeDef] = field(default_factory=dict)  # by id
    leaderboards: dict[str, LeaderboardDef] = field(default_factory=dict)  # by id
    usage: RuleUsage = field(default_factory=RuleUsage)
    progress: dict[tuple[str, str], int] = field(default_factory=dict)  # (badge, pk)
    held: set[tuple[str, str]] = field(default_factory=set)  # (badge, pk)
    streak_states: dict[tuple[str, str], StreakState] = field(default_factory=dict)
    challenge_states: dict[tuple[str, str], ChallengeState] = field(default_factory=dict)
    # (leaderboard, period start, participant key) -> its score in that period
    scores: dict[tuple[str, date, str], Score] = field(default_factory=dict)
    tops: Tops = field(default_factory=dict)  # the top entries before the batch
    # What the batch decided, to write.
    action_rows: list[dict[str, Any]] = field(default_factory=list)
    progress_changed: set[tuple[str, str]] = field(default_factory=set)
    earned: list[tuple[BadgeEarned, str, uuid.UUID]] = field(default_factory=list)
    streaks_changed: set[tuple[str, str]] = field(default_factory=set)
    challenges_changed: set[tuple[str, str]] = field(default_factory=set)
    scores_changed: set[tuple[str, date, str]] = field(default_factory=set)
    # (reward id, participant id, challenge id): claims the engine makes for challenges.
    claims: list[tuple[str, str, str]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    report: Report = field(default_factory=Report)
    now: datetime = field(default_factory=utcnow)
    credit: CreditPoints | None = None

    @property
    def empty(self) -> bool:
        """Whether nothing in the program reacts to actions or points."""
        return not (
            self.rules or self.badges or self.streaks or self.challenges or self.leaderboards
        )

    def begin(self) -> Report:
        """Start a write: what it causes is reported in the Report returned."""
        self.report = Report()
        return self.report

    # --- actions -------------------------------------------------------------------

    def rule_credits(self, write: ActionWrite, participant_pk: str) -> list[RuleCredit]:
        return rule_credits(
            self.rules.get(write.action, []),
            self.usage,
            participant_pk,
            write.properties,
            write.occurred_at,
        )

    def record_action(self, write: ActionWrite, participant_pk: str) -> str:
        action_id = str(uuid.uuid4())
        self.action_rows.append(
            {
                "id": action_id,
                "participant_pk": participant_pk,
                "action": write.action,
                "properties": dict(write.properties) or None,
                "occurred_at": write.occurred_at.isoformat(),
                "operation_id": str(write.operation_id),
            }
        )
        return action_id

    def on_action(
        self,
        participant_id: str,
        participant_pk: str,
        action: str,
        occurred_at: datetime,
        operation_id: uuid.UUID,
    ) -> None:
        """Count an action: the streaks it extends, challenges and badges counting it."""
        for streak in self.streaks.values():
            if streak.active and streak.action == action:
                self._extend(streak, participant_id, participant_pk, occurred_at, operation_id)
        self._advance(participant_id, participant_pk, action, 0, occurred_at, operation_id)
        self._count_badges(participant_id, participant_pk, action, 0, operation_id)
        self._score(participant_id, participant_pk, action, 0, occurred_at)

    def on_points(
        self,
        participant_id: str,
        participant_pk: str,
        points: int,
        at: datetime,
        operation_id: uuid.UUID,
    ) -> None:
        """Count points credited toward the challenges and badges that count points."""
        if points <= 0:
            return
        self._advance(participant_id, participant_pk, None, points, at, operation_id)
        self._count_badges(participant_id, participant_pk, None, points, operation_id)
        self._score(participant_id, participant_pk, None, points, at)

    # --- leaderboards --------------------------------------------------------------

    def _score(
        self,
        participant_id: str,
        participant_pk: str,
        action: str | None,
        points: int,
        at: datetime,
    ) -> None:
        for board in self.leaderboards.values():
            step = board.counts(action, points, at)
            if not step:
                continue
            key = (board.id, board.period_start(at), participant_pk)
            score = self.scores.get(key)
            if score is None:
                score = self.scores[key] = Score(participant_id, 0, self.now)
            score.participant_id = participant_id
            score.score += step
            score.reached_at = self.now
            self.scores_changed.add(key)

    def finish(self) -> list[ScoreUpdate]:
        """After the batch is decided: who entered or left the leaderboards' tops (as
        events), and the scores to push to the leaderboards' cache after the commit."""
        changed: dict[tuple[str, date], dict[str, Score]] = {}
        for board_id, period, pk in sorted(self.scores_changed):
            changed.setdefault((board_id, period), {})[pk] = self.scores[(board_id, period, pk)]
        for (board_id, period), scores in changed.items():
            board = self.leaderboards[board_id]
            for payload in rank_changes(
                board, period, self.tops.get((board_id, period), []), scores
            ):
                self.events.append((LEADERBOARD_RANK_CHANGED, payload))
        return [
            ScoreUpdate(board_id, period, score.participant_id, score.score, score.reached_at)
            for (board_id, period), scores in changed.items()
            for score in scores.values()
        ]

    # --- streaks -------------------------------------------------------------------

    def record_streak(
        self, write: StreakRecord, participant_pk: str
    ) -> dict[str, Any] | DomainError:
        streak = self.streaks.get(write.streak_type)
        if streak is None or not streak.active:
            return streak_not_active()
        return self._extend(
            streak, write.participant_id, participant_pk, write.occurred_at, write.operation_id
        )

    def _extend(
        self,
        streak: StreakDef,
        participant_id: str,
        participant_pk: str,
        occurred_at: datetime,
        operation_id: uuid.UUID,
    ) -> dict[str, Any]:
        key = (streak.id, participant_pk)
        state = self.streak_states.setdefault(key, StreakState())
        step = record_activity(streak, state, occurred_at)
        if step.counted or step.broken:  # (a second activity in a period changes nothing)
            self.streaks_changed.add(key)
        if step.broken:
            self.events.append(
                (
                    STREAK_BROKEN,
                    broken_payload(participant_id, streak, step.broken, state.run - 1),
                )
            )
        bonus = 0
        if step.milestone is not None:
            transaction_id = None
            if step.milestone.points and self.credit is not None:
                transaction_id, bonus = self.credit(
                    participant_id,
                    step.milestone.points,
                    f"Streak milestone: {streak.name}, {step.milestone.days}",
                    operation_id,
                    occurred_at,
                )
            self.events.append(
                (
                    STREAK_MILESTONE,
                    {
                        "participant_id": participant_id,
                        "streak_type": streak.streak_type,
                        "days": step.milestone.days,
                        "points": bonus,
                        "transaction_id": transaction_id,
                    },
                )
            )
        self._grant_reached(
            STREAK, streak.streak_type, state.current, participant_id, participant_pk, operation_id
        )
        answer = {
            "streak_type": streak.streak_type,
            "previous_count": step.previous,
            "current_count": state.current,
            "longest_count": state.longest,
            "counted": step.counted,
            "milestone_reached": step.milestone.days if step.milestone else None,
            "bonus_points": bonus,
            "next_deadline": state.deadline.isoformat() if state.deadline else None,
        }
        self.report.streaks.append(answer)
        return answer

    # --- challenges ----------------------------------------------------------------

    def join(self, write: ChallengeJoin, participant_pk: str) -> dict[str, Any] | DomainError:
        challenge = self.challenges.get(write.challenge_id)
        if challenge is None or not challenge.active:
            return challenge_not_found()
        if challenge.ended(self.now):
            return challenge_ended()
        key = (challenge.id, participant_pk)
        state = self.challenge_states.setdefault(key, ChallengeState())
        if state.enrolled_at is None:
            state.enrolled_at = self.now
            self.challenges_changed.add(key)
        return {
            "challenge_id": challenge.id,
            "participant_id": write.participant_id,
            "enrolled_at": state.enrolled_at.isoformat(),
            "current": state.current,
            "target": challenge.target,
            "completed": state.completed_at is not None,
        }

    def _advance(
        self,
        participant_id: str,
        participant_pk: str,
        action: str | None,
        points: int,
        at: datetime,
        operation_id: uuid.UUID,
    ) -> None:
        for challenge in self.challenges.values():
            step = challenge.counts(action, points)
            if not step:
                continue
            key = (challenge.id, participant_pk)
            state = self.challenge_states.get(key)
            if state is None:
                if challenge.requires_enrollment:
                    continue
                state = self.challenge_states[key] = ChallengeState()
            before = state.current
            completed = advance(challenge, state, step, at, self.now)
            if state.current == before and not completed:
                continue
            self.challenges_changed.add(key)
            self.report.challenges.append(
                {
                    "challenge_id": challenge.id,
                    "current": state.current,
                    "target": challenge.target,
                    "completed": state.completed_at is not None,
                }
            )
            if completed:
                self._complete(challenge, participant_id, participant_pk, at, operation_id)

    def _complete(
        self,
        challenge: ChallengeDef,
        participant_id: str,
        participant_pk: str,
        at: datetime,
        operation_id: uuid.UUID,
    ) -> None:
        reward = challenge.reward or {}
        points = transaction_id = None
        if reward.get("type") == "points" and self.credit is not None:
            transaction_id, points = self.credit(
                participant_id,
                int(reward["amount"]),
                f"Challenge: {challenge.name}",
                operation_id,
                at,
            )
        elif reward.get("type") == "reward":
            self.claims.append((str(reward["reward_id"]), participant_id, challenge.id))
        self.events.append(
            (
                CHALLENGE_COMPLETED,
                {
                    "participant_id": participant_id,
                    "challenge_id": challenge.id,
                    "name": challenge.name,
                    "completed_at": self.now.isoformat(),
                    "reward": dict(reward) or None,
                    "points": points,
                    "transaction_id": transaction_id,
                },
            )
        )
        self._grant_reached(
            CHALLENGE_COMPLETED_CRITERIA,
            challenge.id,
            0,
            participant_id,
            participant_pk,
            operation_id,
        )

    # --- badges --------------------------------------------------------------------

    def _count_badges(
        self,
        participant_id: str,
        participant_pk: str,
        action: str | None,
        points: int,
        operation_id: uuid.UUID,
    ) -> None:
        reached: list[BadgeDef] = []
        for badge in self.badges.values():
            if not badge.active or (badge.id, participant_pk) in self.held:
                continue
            if badge.kind == ACTION_COUNT and action is not None and badge.action == action:
                step = 1
            elif badge.kind == POINTS_EARNED and points > 0:
                step = points
            else:
                continue
            key = (badge.id, participant_pk)
            current = self.progress[key] = self.progress.get(key, 0) + step
            self.progress_changed.add(key)
            if current >= badge.target:
                reached.append(badge)
        for badge in reached:
            if (badge.id, participant_pk) not in self.held:
                self.grant(badge, participant_id, participant_pk, CRITERIA_SOURCE, operation_id)

    def _grant_reached(
        self,
        kind: str,
        subject: str,
        reached: int,
        participant_id: str,
        participant_pk: str,
        operation_id: uuid.UUID,
    ) -> None:
        """Grant the badges of `kind` about `subject` (a streak type, a challenge) whose
        target `reached` meets (a completed challenge's badges have none)."""
        for badge in self.badges.values():
            if (
                badge.active
                and badge.kind == kind
                and badge.subject == subject
                and reached >= badge.target
                and (badge.id, participant_pk) not in self.held
            ):
                self.grant(badge, participant_id, participant_pk, CRITERIA_SOURCE, operation_id)

    def grant(
        self,
        badge: BadgeDef,
        participant_id: str,
        participant_pk: str,
        source: str,
        operation_id: uuid.UUID,
    ) -> BadgeEarned:
        """Grant `badge` (not held), and credit its points reward (which counts in turn)."""
        self.held.add((badge.id, participant_pk))
        earned = BadgeEarned(badge, participant_id, self.now, source)
        self.earned.append((earned, participant_pk, operation_id))
        self.report.badges.append(earned)
        if badge.points_reward and self.credit is not None:
            earned.transaction_id, earned.points = self.credit(
                participant_id, badge.points_reward, f"Badge: {badge.name}", operation_id, self.now
            )
        self.events.append((BADGE_AWARDED, earned.event()))
        return earned

    def grant_by_hand(self, grant: BadgeGrant, participant_pk: str) -> BadgeEarned | DomainError:
        badge = self.badges.get(grant.badge_id)
        if badge is None or not badge.active:
            return badge_not_found()
        if (badge.id, participant_pk) in self.held:
            return badge_already_awarded()
        return self.grant(
            badge, grant.participant_id, participant_pk, MANUAL_SOURCE, grant.operation_id
        )

    @property
    def changed(self) -> bool:
        return bool(
            self.action_rows
            or self.usage.added
            or self.progress_changed
            or self.earned
            or self.streaks_changed
            or self.challenges_changed
            or self.scores_changed
            or self.claims
        )


def broken_payload(participant_id: str, streak: StreakDef, count: int, run: int) -> dict[str, Any]:
    return {
        "participant_id": participant_id,
        "streak_type": streak.streak_type,
        "count": count,
        "run": run,
    }


# The engagement definitions a batch needs, asked with its other per-tenant constants
# (app.points.balance_changes): the active rules of the batch's actions, oldest first;
# the active badges that count or are granted by hand in the batch; the streaks and
# challenges its activity may touch; the leaderboards it scores; the program's holidays
# (rules' holiday multipliers).
ENGAGEMENT_DEFINITIONS = """
    (SELECT json_build_array(
        (SELECT coalesce(json_agg(r ORDER BY r.created_at, r.id), '[]')
         FROM earning_rules AS r
         WHERE r.tenant_id = %(tenant_id)s AND r.env = %(env)s AND r.active
           AND r.action = ANY(CAST(%(rule_actions)s AS text[]))),
        (SELECT coalesce(json_agg(json_build_array(
                    b.id, b.name, b.criteria, b.points_reward, b.active)
                    ORDER BY b.created_at, b.id), '[]')
         FROM badges AS b
         WHERE b.tenant_id = %(tenant_id)s AND b.env = %(env)s
           AND ((b.active AND b.criteria->>'type' <> 'manual')
                OR b.id = ANY(CAST(%(badge_ids)s AS uuid[])))),
        (SELECT coalesce(json_agg(s ORDER BY s.created_at, s.id), '[]')
         FROM streaks AS s
         WHERE s.tenant_id = %(tenant_id)s AND s.env = %(env)s
           AND ((s.active AND s.action = ANY(CAST(%(counted_actions)s AS text[])))
                OR s.streak_type = ANY(CAST(%(streak_types)s AS text[])))),
        (SELECT coalesce(json_agg(c ORDER BY c.created_at, c.id), '[]')
         FROM challenges AS c
         WHERE c.tenant_id = %(tenant_id)s AND c.env = %(env)s
           AND ((c.active AND (c.ends_at IS NULL OR c.ends_at > %(window_from)s)
                 AND (c.type = 'points_earned'
                      OR c.action = ANY(CAST(%(counted_actions)s AS text[]))))
                OR c.id = ANY(CAST(%(challenge_ids)s AS uuid[])))),
        (SELECT coalesce(json_agg(l ORDER BY l.created_at, l.id), '[]')
         FROM leaderboards AS l
         WHERE l.tenant_id = %(tenant_id)s AND l.env = %(env)s AND l.active
           AND (l.metric = 'points_earned'
                OR l.action = ANY(CAST(%(counted_actions)s AS text[])))),
        (SELECT holidays FROM program_settings
         WHERE tenant_id = %(tenant_id)s AND env = %(env)s)
    ))::text
"""


# Whether anything in the program counts credits or these actions: active badges that
# count, challenges not yet ended, leaderboards, streaks of the actions, an active
# referral program completing on one of the actions.
_REACTS = (
    """
    SELECT EXISTS (
        SELECT FROM badges WHERE tenant_id = %(tenant_id)s AND env = %(env)s AND active
          AND criteria->>'type' IN ('points_earned', 'action_count')
    ) OR EXISTS (
        SELECT FROM challenges WHERE tenant_id = %(tenant_id)s AND env = %(env)s AND active
          AND (ends_at IS NULL OR ends_at > now())
    ) OR EXISTS (
        SELECT FROM leaderboards WHERE tenant_id = %(tenant_id)s AND env = %(env)s AND active
          AND metric <> 'referral_count'
    ) OR EXISTS (
        SELECT FROM streaks WHERE tenant_id = %(tenant_id)s AND env = %(env)s AND active
          AND action = ANY(CAST(%(counted_actions)s AS text[]))
    ) OR EXISTS ("""  # noqa: S608 (constant fragments, no input)
    + COMPLETION_ACTION_AMONG
    + """)
"""
)


def engagement_reacts(
    session: Session, tenant_id: uuid.UUID, env: str, actions: Iterable[str]
) -> bool:
    """Whether credits (with these actions) drive anything of the program's engagement, or
    complete referrals (app.referrals.completion, run by the action pipeline's write)."""
    [(reacts,)] = fetch_tuples(
        session,
        _REACTS,
        {"tenant_id": tenant_id, "env": env, "counted_actions": _text_array(actions)},
    )
    return bool(reacts)


def definitions_params(
    rule_actions: Iterable[str],
    counted_actions: Iterable[str],
    badge_ids: Iterable[str],
    streak_types: Iterable[str],
    challenge_ids: Iterable[str],
    window_from: datetime,
) -> dict[str, Any]:
    return {
        "rule_actions": _text_array(rule_actions),
        "counted_actions": _text_array(counted_actions),
        "badge_ids": plain_array_literal(sorted(set(badge_ids))),
        "streak_types": _text_array(streak_types),
        "challenge_ids": plain_array_literal(sorted(set(challenge_ids))),
        "window_from": window_from,
    }


def _text_array(values: Iterable[str]) -> str:
    return array_literal(sorted(set(values)))


def engagement_of(definitions: str, now: datetime) -> Engagement:
    rule_rows, badge_rows, streak_rows, challenge_rows, board_rows, holidays = json.loads(
        definitions
    )
    engagement = Engagement(now=now)
    holiday_set = frozenset(holidays_of(holidays))
    for row in rule_rows:
        rule = Rule.of(row, holiday_set)
        engagement.rules.setdefault(rule.action, []).append(rule)
    for row in badge_rows:
        badge = BadgeDef.of(row)
        engagement.badges[badge.id] = badge
    for row in streak_rows:
        streak = StreakDef.of(row)
        engagement.streaks[streak.streak_type] = streak
    for row in challenge_rows:
        challenge = ChallengeDef.of(row)
        engagement.challenges[challenge.id] = challenge
    for row in board_rows:
        board = LeaderboardDef.of(row)
        engagement.leaderboards[board.id] = board
    return engagement


# The top entries of leaderboard periods (`periods`: JSON rows of leaderboard_id,
# period_start and top, how many), as one JSON text for `tops_of`.
TOPS = """
    SELECT coalesce(json_agg(json_build_array(
               wanted.leaderboard_id, wanted.period_start, top.pk, top.external_id,
               top.score, top.reached_at)), '[]')
    FROM jsonb_to_recordset(CAST(%(periods)s AS jsonb))
        AS wanted(leaderboard_id uuid, period_start date, top integer)
    CROSS JOIN LATERAL (
       SELECT CAST(s.participant_pk AS text) AS pk, p.external_id, s.score, s.reached_at
       FROM leaderboard_scores AS s JOIN participants AS p ON p.id = s.participant_pk
       WHERE s.leaderboard_id = wanted.leaderboard_id
         AND s.period_start = wanted.period_start
       ORDER BY s.score DESC, s.reached_at
       LIMIT wanted.top
    ) AS top
"""


def tops_of(text: str) -> Tops:
    """The tops TOPS read, by (leaderboard id, period start), best first."""
    tops: Tops = {}
    for board_id, period, pk, external_id, score, reached_at in json.loads(text):
        tops.setdefault((board_id, date.fromisoformat(period)), []).append(
            (pk, Score(external_id, score, datetime.fromisoformat(reached_at)))
        )
    return tops


_PARTICIPANT_STATE = (
    """
    SELECT
        (SELECT coalesce(json_agg(json_build_array(rule_id, participant_pk, total, days)), '[]')
         FROM (
            SELECT rule_id, participant_pk, sum(points) AS total,
                   coalesce(json_object_agg(day, points)
                            FILTER (WHERE day = ANY(CAST(%(days)s AS date[]))), '{}') AS days
            FROM earning_rule_usage
            WHERE rule_id = ANY(CAST(%(rule_ids)s AS uuid[]))
              AND participant_pk = ANY(CAST(%(pks)s AS uuid[]))
            GROUP BY rule_id, participant_pk
         ) AS used)::text,
        (SELECT coalesce(json_agg(json_build_array(badge_id, participant_pk, current)), '[]')
         FROM badge_progress
         WHERE badge_id = ANY(CAST(%(counting_ids)s AS uuid[]))
           AND participant_pk = ANY(CAST(%(pks)s AS uuid[])))::text,
        (SELECT coalesce(json_agg(json_build_array(badge_id, participant_pk)), '[]')
         FROM participant_badges
         WHERE badge_id = ANY(CAST(%(badge_ids)s AS uuid[]))
           AND participant_pk = ANY(CAST(%(pks)s AS uuid[])))::text,
        (SELECT coalesce(json_agg(json_build_array(
                    streak_id, participant_pk, current_count, longest_count, last_period,
                    last_activity_at, deadline, run, milestones_paid)), '[]')
         FROM participant_streaks
         WHERE streak_id = ANY(CAST(%(streak_ids)s AS uuid[]))
           AND participant_pk = ANY(CAST(%(pks)s AS uuid[])))::text,
        (SELECT coalesce(json_agg(json_build_array(
                    challenge_id, participant_pk, current, enrolled_at, completed_at)), '[]')
         FROM challenge_progress
         WHERE challenge_id = ANY(CAST(%(challenge_ids)s AS uuid[]))
           AND participant_pk = ANY(CAST(%(pks)s AS uuid[])))::text,
        (SELECT coalesce(json_agg(json_build_array(
                    s.leaderboard_id, s.period_start, s.participant_pk, s.score, s.reached_at)),
                    '[]')
         FROM jsonb_to_recordset(CAST(%(periods)s AS jsonb))
             AS wanted(leaderboard_id uuid, period_start date, top integer)
         JOIN leaderboard_scores AS s
           ON s.leaderboard_id = wanted.leaderboard_id AND s.period_start = wanted.period_start
         WHERE s.participant_pk = ANY(CAST(%(pks)s AS uuid[])))::text,
        ("""  # noqa: S608 (constant fragments, no input)
    + TOPS
    + """)::text
"""
)


def load_participant_state(
    session: Session,
    engagement: Engagement,
    participant_pks: Iterable[str],
    moments: Iterable[datetime],
) -> None:
    """The locked participants' usage of the capped rules (totals, and points on the
    days of the batch's `moments`), their progress toward counting badges, the badges
    they hold, their streaks, their challenges and their leaderboard scores in the
    periods of `moments`, with those periods' tops."""
    if engagement.empty:
        return
    moments = set(moments)
    capped = sorted(
        {
            rule.id
            for rules in engagement.rules.values()
            for rule in rules
            if rule.per_day is not None or rule.total is not None
        }
    )
    days = {
        rule.local_day(moment)
        for rules in engagement.rules.values()
        for rule in rules
        for moment in moments
    }
    periods = [
        {"leaderboard_id": board.id, "period_start": period.isoformat(), "top": board.notify_top}
        for board in engagement.leaderboards.values()
        for period in sorted({board.period_start(moment) for moment in moments})
    ]
    counting = sorted(b.id for b in engagement.badges.values() if b.counted)
    [(usage, progress, held, streaks, challenges, scores, tops)] = fetch_tuples(
        session,
        _PARTICIPANT_STATE,
        {
            "rule_ids": plain_array_literal(capped),
            "counting_ids": plain_array_literal(counting),
            "badge_ids": plain_array_literal(sorted(engagement.badges)),
            "streak_ids": plain_array_literal(sorted(s.id for s in engagement.streaks.values())),
            "challenge_ids": plain_array_literal(sorted(engagement.challenges)),
            "pks": plain_array_literal(participant_pks),
            "days": plain_array_literal(sorted(day.isoformat() for day in days)),
            "periods": json.dumps(periods),
        },
    )
    for rule_id, pk, total, days in json.loads(usage):
        engagement.usage.load(rule_id, pk, total, days)
    for badge_id, pk, current in json.loads(progress):
        engagement.progress[(badge_id, pk)] = current
    engagement.held.update((badge_id, pk) for badge_id, pk in json.loads(held))
    for streak_id, pk, current, longest, last_period, last_at, deadline, run, paid in json.loads(
        streaks
    ):
        engagement.streak_states[(streak_id, pk)] = StreakState(
            current,
            longest,
            date.fromisoformat(last_period) if last_period else None,
            instant(last_at),
            instant(deadline),
            run,
            list(paid),
        )
    for challenge_id, pk, current, enrolled_at, completed_at in json.loads(challenges):
        engagement.challenge_states[(challenge_id, pk)] = ChallengeState(
            current, instant(enrolled_at), instant(completed_at)
        )
    for board_id, period, pk, score, reached_at in json.loads(scores):
        # Its participant id is set when the batch changes the score.
        engagement.scores[(board_id, date.fromisoformat(period), pk)] = Score(
            "", score, datetime.fromisoformat(reached_at)
        )
    engagement.tops.update(tops_of(tops))


_WRITE_ENGAGEMENT = """
    WITH new_actions AS (
        INSERT INTO actions (
            id, tenant_id, env, participant_pk, action, properties, occurred_at, operation_id,
            created_at
        )
        SELECT a.id, %(tenant_id)s, %(env)s, a.participant_pk, a.action, a.properties,
               a.occurred_at, a.operation_id, %(now)s
        FROM jsonb_to_recordset(CAST(%(actions)s AS jsonb)) AS a(
            id uuid, participant_pk uuid, action text, properties jsonb,
            occurred_at timestamptz, operation_id uuid
        )
    ),
    used AS (
        INSERT INTO earning_rule_usage AS u (rule_id, participant_pk, day, points)
        SELECT x.rule_id, x.participant_pk, x.day, x.points
        FROM jsonb_to_recordset(CAST(%(usage)s AS jsonb)) AS x(
            rule_id uuid, participant_pk uuid, day date, points bigint
        )
        ON CONFLICT (rule_id, participant_pk, day) DO UPDATE SET points = u.points + excluded.points
    ),
    progressed AS (
        INSERT INTO badge_progress AS p (badge_id, participant_pk, current)
        SELECT x.badge_id, x.participant_pk, x.current
        FROM jsonb_to_recordset(CAST(%(progress)s AS jsonb)) AS x(
            badge_id uuid, participant_pk uuid, current bigint
        )
        ON CONFLICT (badge_id, participant_pk) DO UPDATE SET current = excluded.current
    ),
    streaked AS (
        INSERT INTO participant_streaks AS s (
            streak_id, participant_pk, current_count, longest_count, last_period,
            last_activity_at, deadline, run, milestones_paid
        )
        SELECT x.streak_id, x.participant_pk, x.current_count, x.longest_count, x.last_period,
               x.last_activity_at, x.deadline, x.run, x.milestones_paid
        FROM jsonb_to_recordset(CAST(%(streaks)s AS jsonb)) AS x(
            streak_id uuid, participant_pk uuid, current_count integer, longest_count integer,
            last_period date, last_activity_at timestamptz, deadline timestamptz, run integer,
            milestones_paid jsonb
        )
        ON CONFLICT (streak_id, participant_pk) DO UPDATE SET
            current_count = excluded.current_count, longest_count = excluded.longest_count,
            last_period = excluded.last_period, last_activity_at = excluded.last_activity_at,
            deadline = excluded.deadline, run = excluded.run,
            milestones_paid = excluded.milestones_paid
    ),
    scored AS (
        INSERT INTO leaderboard_scores AS l (
            leaderboard_id, period_start, participant_pk, score, reached_at
        )
        SELECT x.leaderboard_id, x.period_start, x.participant_pk, x.score, x.reached_at
        FROM jsonb_to_recordset(CAST(%(scores)s AS jsonb)) AS x(
            leaderboard_id uuid, period_start date, participant_pk uuid, score bigint,
            reached_at timestamptz
        )
        ON CONFLICT (leaderboard_id, period_start, participant_pk) DO UPDATE SET
            score = excluded.score, reached_at = excluded.reached_at
    ),
    challenged AS (
        INSERT INTO challenge_progress AS c (
            challenge_id, participant_pk, current, enrolled_at, completed_at
        )
        SELECT x.challenge_id, x.participant_pk, x.current, x.enrolled_at, x.completed_at
        FROM jsonb_to_recordset(CAST(%(challenges)s AS jsonb)) AS x(
            challenge_id uuid, participant_pk uuid, current bigint, enrolled_at timestamptz,
            completed_at timestamptz
        )
        ON CONFLICT (challenge_id, participant_pk) DO UPDATE SET
            current = excluded.current, enrolled_at = excluded.enrolled_at,
            completed_at = excluded.completed_at
    )
    INSERT INTO participant_badges (badge_id, participant_pk, awarded_at, source, operation_id)
    SELECT x.badge_id, x.participant_pk, x.awarded_at, x.source, x.operation_id
    FROM jsonb_to_recordset(CAST(%(earned)s AS jsonb)) AS x(
        badge_id uuid, participant_pk uuid, awarded_at timestamptz, source text,
        operation_id uuid
    )
"""


def _iso(moment: datetime | date | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def write_engagement(
    session: Session, tenant_id: uuid.UUID, env: str, engagement: Engagement
) -> list[Operation]:
    """Write what the batch decided of engagement, in one statement; record the claims
    the engine makes for completed challenges (returned: to publish after commit)."""
    if not engagement.changed:
        return []
    session.connection().exec_driver_sql(
        _WRITE_ENGAGEMENT,
        {
            "tenant_id": tenant_id,
            "env": env,
            "now": engagement.now,
            "actions": json.dumps(engagement.action_rows),
            "usage": json.dumps(
                [
                    {
                        "rule_id": rule_id,
                        "participant_pk": pk,
                        "day": day.isoformat(),
                        "points": points,
                    }
                    for (rule_id, pk, day), points in engagement.usage.added.items()
                ]
            ),
            "progress": json.dumps(
                [
                    {
                        "badge_id": badge_id,
                        "participant_pk": pk,
                        "current": engagement.progress[(badge_id, pk)],
                    }
                    for badge_id, pk in sorted(engagement.progress_changed)
                ]
            ),
            "streaks": json.dumps(
                [
                    {
                        "streak_id": streak_id,
                        "participant_pk": pk,
                        "current_count": state.current,
                        "longest_count": state.longest,
                        "last_period": _iso(state.last_period),
                        "last_activity_at": _iso(state.last_activity_at),
                        "deadline": _iso(state.deadline),
                        "run": state.run,
                        "milestones_paid": state.paid,
                    }
                    for streak_id, pk in sorted(engagement.streaks_changed)
                    for state in (engagement.streak_states[(streak_id, pk)],)
                ]
            ),
            "challenges": json.dumps(
                [
                    {
                        "challenge_id": challenge_id,
                        "participant_pk": pk,
                        "current": state.current,
                        "enrolled_at": _iso(state.enrolled_at),
                        "completed_at": _iso(state.completed_at),
                    }
                    for challenge_id, pk in sorted(engagement.challenges_changed)
                    for state in (engagement.challenge_states[(challenge_id, pk)],)
                ]
            ),
            "scores": json.dumps(
                [
                    {
                        "leaderboard_id": board_id,
                        "period_start": period.isoformat(),
                        "participant_pk": pk,
                        "score": score.score,
                        "reached_at": score.reached_at.isoformat(),
                    }
                    for board_id, period, pk in sorted(engagement.scores_changed)
                    for score in (engagement.scores[(board_id, period, pk)],)
                ]
            ),
            "earned": json.dumps(
                [
                    {
                        "badge_id": earned.badge.id,
                        "participant_pk": pk,
                        "awarded_at": earned.awarded_at.isoformat(),
                        "source": earned.source,
                        "operation_id": str(operation_id),
                    }
                    for earned, pk, operation_id in engagement.earned
                ]
            ),
        },
    )
    return record_engine_claims(session, tenant_id, env, engagement.claims)


def record_engine_claims(
    session: Session, tenant_id: uuid.UUID, env: str, claims: list[tuple[str, str, str]]
) -> list[Operation]:
    """The claims of completed challenges' rewards, recorded as operations in this
    transaction (so none is lost) with a key per challenge and participant (so none is
    made twice); the claim path runs them like any other, under the reward's lock."""
    if not claims:
        return []
    writes = [
        Write(
            tenant_id,
            env,
            CLAIM_KIND,
            claim_payload(uuid.UUID(reward_id), participant_id, points_deduction=False),
            f"challenge:{challenge_id}:{participant_id}"[:255],
        )
        for reward_id, participant_id, challenge_id in claims
    ]
    recorded = submit_operations(session.connection(), writes)
    operations: list[Operation] = []
    for submission in recorded:
        if isinstance(submission, Exception):
            raise submission
        if submission.created:
            operations.append(submission.operation)
    return operations
