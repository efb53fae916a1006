"""Actions (the one way in for what participants do), and what they drive as
participants see it: badges, streaks, challenges."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, Response

from api.auth import current_principal
from api.endpoint import Access, endpoint
from api.engagement.action_schemas import (
    ActionBatchRequest,
    ActionBatchResponse,
    ActionRequest,
    ActionResponse,
    BadgeAwardRequest,
    BadgeAwardResponse,
    BadgeProgressView,
    ChallengeJoinRequest,
    ChallengeJoinResponse,
    ChallengeList,
    ChallengesQuery,
    EarnedBadges,
    LeaderboardEntry,
    LeaderboardPage,
    LeaderboardPeriodQuery,
    LeaderboardQuery,
    LeaderboardStanding,
    ParticipantChallenge,
    ParticipantStreak,
    ParticipantStreaks,
    StreakRecordRequest,
    StreakRecordResponse,
)
from api.points.writes import IDEMPOTENCY_ERRORS, WRITE_HEADERS
from api.runtime import runtime
from api.schemas import OperationAccepted
from api.validation import check_participant_id, validation_failed
from api.write_path import accept_write
from app.clock import utcnow
from app.engagement.actions import (
    ACTION_BATCH_KIND,
    ACTION_KIND,
    BADGE_AWARD_KIND,
    CHALLENGE_JOIN_KIND,
    STREAK_RECORD_KIND,
    batch_action_entries,
)
from app.engagement.badge_reads import badge_progress, participant_badges
from app.engagement.challenges import challenge_not_found
from app.engagement.definitions import parse_badge_id
from app.engagement.leaderboard_reads import LeaderboardReader, find_leaderboard
from app.engagement.leaderboards import LeaderboardDef
from app.engagement.reads import list_challenges, participant_challenge, participant_streaks
from app.errors import parse_uuid

bp = Blueprint("actions", __name__, url_prefix="/api/v1/gamify")


@endpoint(
    bp,
    "POST",
    "/actions",
    summary="Record an action: earning rules credit points, badges are earned; the answer "
    "lists what it caused",
    tag="actions",
    access=Access.PARTICIPANT,
    body=ActionRequest,
    responses={201: ActionResponse, 202: OperationAccepted},
    errors=IDEMPOTENCY_ERRORS,
    headers=WRITE_HEADERS,
    write=True,
)
def record_action(body: ActionRequest) -> Response:
    return accept_write(ACTION_KIND, body.payload(), body.idempotency_key)


@endpoint(
    bp,
    "POST",
    "/actions/batch",
    summary="Record up to 100 actions; each is applied or refused on its own",
    tag="actions",
    access=Access.PARTICIPANT,
    body=ActionBatchRequest,
    responses={200: ActionBatchResponse, 202: OperationAccepted},
    errors=IDEMPOTENCY_ERRORS,
    headers=WRITE_HEADERS,
    write=True,
)
def record_actions(body: ActionBatchRequest) -> Response:
    entries = batch_action_entries(body.actions, utcnow())
    return accept_write(ACTION_BATCH_KIND, {"actions": entries}, body.idempotency_key)


@endpoint(
    bp,
    "POST",
    "/badges/award",
    summary="Award a badge by hand (any badge, whatever its criteria); its points reward "
    "is credited",
    tag="badges",
    access=Access.PARTICIPANT,
    body=BadgeAwardRequest,
    responses={201: BadgeAwardResponse, 202: OperationAccepted},
    errors={
        **IDEMPOTENCY_ERRORS,
        404: ("badge_not_found",),
        409: ("badge_already_awarded",),
    },
    headers=WRITE_HEADERS,
    write=True,
)
def award_badge(body: BadgeAwardRequest) -> Response:
    return accept_write(
        BADGE_AWARD_KIND,
        {"participant_id": body.participant_id, "badge_id": str(parse_badge_id(body.badge_id))},
        body.idempotency_key,
    )


@endpoint(
    bp,
    "GET",
    "/participants/<participant_id>/badges",
    summary="The badges a participant has earned, most recent first",
    tag="badges",
    access=Access.PARTICIPANT,
    responses={200: EarnedBadges},
)
def get_participant_badges(participant_id: str) -> tuple[EarnedBadges, int]:
    check_participant_id(participant_id)
    principal = current_principal()
    with runtime().session_factory() as session:
        badges = participant_badges(session, principal.tenant_id, principal.env, participant_id)
    return EarnedBadges.model_validate({"participant_id": participant_id, "badges": badges}), 200


@endpoint(
    bp,
    "GET",
    "/participants/<participant_id>/badges/<badge_id>/progress",
    summary="How far a participant is toward a badge",
    tag="badges",
    access=Access.PARTICIPANT,
    responses={200: BadgeProgressView},
    errors={404: ("badge_not_found",)},
)
def get_badge_progress(participant_id: str, badge_id: str) -> tuple[BadgeProgressView, int]:
    check_participant_id(participant_id)
    principal = current_principal()
    with runtime().session_factory() as session:
        progress = badge_progress(
            session, principal.tenant_id, principal.env, participant_id, badge_id
        )
    return BadgeProgressView.model_validate(progress), 200


@endpoint(
    bp,
    "POST",
    "/streaks/record",
    summary="Record one activity on a streak (once per period counts)",
    tag="streaks",
    access=Access.PARTICIPANT,
    body=StreakRecordRequest,
    responses={200: StreakRecordResponse, 202: OperationAccepted},
    errors={**IDEMPOTENCY_ERRORS, 404: ("streak_not_active",)},
    headers=WRITE_HEADERS,
    write=True,
)
def record_streak(body: StreakRecordRequest) -> Response:
    return accept_write(
        STREAK_RECORD_KIND,
        {"participant_id": body.participant_id, "streak_type": body.streak_type},
        body.idempotency_key,
    )


@endpoint(
    bp,
    "GET",
    "/participants/<participant_id>/streaks",
    summary="The participant's runs of the program's active streaks",
    tag="streaks",
    access=Access.PARTICIPANT,
    responses={200: ParticipantStreaks},
)
def get_participant_streaks(participant_id: str) -> tuple[ParticipantStreaks, int]:
    check_participant_id(participant_id)
    principal = current_principal()
    with runtime().session_factory() as session:
        streaks = participant_streaks(
            session, principal.tenant_id, principal.env, participant_id, utcnow()
        )
    return ParticipantStreaks.model_validate(
        {"participant_id": participant_id, "streaks": streaks}
    ), 200


@endpoint(
    bp,
    "GET",
    "/participants/<participant_id>/streaks/<streak_type>",
    summary="The participant's run of one streak",
    tag="streaks",
    access=Access.PARTICIPANT,
    responses={200: ParticipantStreak},
    errors={404: ("streak_not_active",)},
)
def get_participant_streak(participant_id: str, streak_type: str) -> tuple[ParticipantStreak, int]:
    check_participant_id(participant_id)
    principal = current_principal()
    with runtime().session_factory() as session:
        [streak] = participant_streaks(
            session, principal.tenant_id, principal.env, participant_id, utcnow(), streak_type
        )
    return ParticipantStreak.model_validate({"participant_id": participant_id, **streak}), 200


@endpoint(
    bp,
    "POST",
    "/challenges/<challenge_id>/join",
    summary="Enroll a participant in a challenge (needed where it requires enrollment)",
    tag="challenges",
    access=Access.PARTICIPANT,
    body=ChallengeJoinRequest,
    responses={200: ChallengeJoinResponse, 202: OperationAccepted},
    errors={
        **IDEMPOTENCY_ERRORS,
        400: (*IDEMPOTENCY_ERRORS[400], "challenge_ended"),
        404: ("challenge_not_found",),
    },
    headers=WRITE_HEADERS,
    write=True,
)
def join_challenge(challenge_id: str, body: ChallengeJoinRequest) -> Response:
    key = parse_uuid(challenge_id, challenge_not_found())
    return accept_write(
        CHALLENGE_JOIN_KIND,
        {"participant_id": body.participant_id, "challenge_id": str(key)},
        body.idempotency_key,
    )


@endpoint(
    bp,
    "GET",
    "/challenges",
    summary="The program's challenges with their counts, and a participant's progress",
    tag="challenges",
    access=Access.PARTICIPANT,
    query=ChallengesQuery,
    responses={200: ChallengeList},
)
def get_challenges(query: ChallengesQuery) -> tuple[ChallengeList, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        challenges = list_challenges(
            session,
            principal.tenant_id,
            principal.env,
            utcnow(),
            participant_id=query.participant_id,
            active=query.active,
        )
    return ChallengeList.model_validate({"challenges": challenges}), 200


@endpoint(
    bp,
    "GET",
    "/participants/<participant_id>/challenges/<challenge_id>",
    summary="A participant's progress in a challenge",
    tag="challenges",
    access=Access.PARTICIPANT,
    responses={200: ParticipantChallenge},
    errors={404: ("challenge_not_found", "challenge_not_enrolled")},
)
def get_participant_challenge(
    participant_id: str, challenge_id: str
) -> tuple[ParticipantChallenge, int]:
    check_participant_id(participant_id)
    principal = current_principal()
    with runtime().session_factory() as session:
        progress = participant_challenge(
            session, principal.tenant_id, principal.env, participant_id, challenge_id, utcnow()
        )
    return ParticipantChallenge.model_validate(progress), 200


def _period(board: LeaderboardDef, asked: date | None) -> date:
    if asked is None:
        return board.period_start(utcnow())
    if not board.is_period_start(asked):
        raise validation_failed(
            [
                {
                    "loc": ["query", "period_start"],
                    "msg": f"not the first day of a {board.period} period",
                    "type": "value_error",
                }
            ]
        )
    return asked


@endpoint(
    bp,
    "GET",
    "/leaderboards/<leaderboard_id>",
    summary="A leaderboard's entries in one period, best first",
    tag="leaderboards",
    access=Access.PARTICIPANT,
    query=LeaderboardQuery,
    responses={200: LeaderboardPage},
    errors={404: ("leaderboard_not_found",)},
)
def get_leaderboard(leaderboard_id: str, query: LeaderboardQuery) -> tuple[LeaderboardPage, int]:
    principal = current_principal()
    rt = runtime()
    with rt.session_factory() as session:
        board = find_leaderboard(session, principal.tenant_id, principal.env, leaderboard_id)
        period = _period(board, query.period_start)
        reader = LeaderboardReader(session, rt.redis, rt.settings.redis_key_prefix, board, period)
        entries, total = reader.page(query.limit, query.offset)
    return LeaderboardPage(
        leaderboard_id=board.id,
        name=board.name,
        metric=board.metric,
        period=board.period,
        period_start=period,
        total=total,
        entries=[LeaderboardEntry.model_validate(entry.as_body()) for entry in entries],
    ), 200


@endpoint(
    bp,
    "GET",
    "/leaderboards/<leaderboard_id>/participants/<participant_id>",
    summary="A participant's rank and score, with the entries just above and below",
    tag="leaderboards",
    access=Access.PARTICIPANT,
    query=LeaderboardPeriodQuery,
    responses={200: LeaderboardStanding},
    errors={404: ("leaderboard_not_found",)},
)
def get_leaderboard_standing(
    leaderboard_id: str, participant_id: str, query: LeaderboardPeriodQuery
) -> tuple[LeaderboardStanding, int]:
    check_participant_id(participant_id)
    principal = current_principal()
    rt = runtime()
    with rt.session_factory() as session:
        board = find_leaderboard(session, principal.tenant_id, principal.env, leaderboard_id)
        period = _period(board, query.period_start)
        reader = LeaderboardReader(session, rt.redis, rt.settings.redis_key_prefix, board, period)
        standing = reader.standing(participant_id)
    return LeaderboardStanding.model_validate(
        {"leaderboard_id": board.id, "period_start": period, **standing}
    ), 200
