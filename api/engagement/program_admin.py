"""Admin: the program's streaks, challenges and leaderboards (participants' side:
api.engagement.actions)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from api.audit import audit_change
from api.auth import current_principal
from api.endpoint import Access, endpoint
from api.engagement.program_schemas import (
    ChallengeCreate,
    ChallengeDefinition,
    ChallengeDefinitionList,
    ChallengeUpdate,
    DefinitionsQuery,
    LeaderboardCreate,
    LeaderboardDefinition,
    LeaderboardDefinitionList,
    LeaderboardUpdate,
    StreakCreate,
    StreakDefinition,
    StreakDefinitionList,
    StreakUpdate,
)
from api.runtime import runtime
from app.engagement.program_definitions import (
    StoredChallenge,
    create_challenge,
    create_leaderboard,
    create_streak,
    deactivate_challenge,
    deactivate_leaderboard,
    deactivate_streak,
    get_challenge_definition,
    get_leaderboard,
    get_streak,
    list_challenge_definitions,
    list_leaderboards,
    list_streaks,
    update_challenge,
    update_leaderboard,
    update_streak,
)
from app.models import Leaderboard, Streak

bp = Blueprint("program_admin", __name__, url_prefix="/api/v1/gamify")

STREAK_NOT_FOUND = {404: ("streak_not_found",)}
CHALLENGE_NOT_FOUND = {404: ("challenge_not_found",)}
LEADERBOARD_NOT_FOUND = {404: ("leaderboard_not_found",)}


def _streak_view(streak: Streak) -> StreakDefinition:
    return StreakDefinition.model_validate(
        {
            "streak_id": str(streak.id),
            "streak_type": streak.streak_type,
            "name": streak.name,
            "action": streak.action,
            "period": streak.period,
            "timezone": streak.timezone,
            "grace_period_hours": streak.grace_period_hours,
            "milestones": streak.milestones,
            "active": streak.active,
            "created_at": streak.created_at,
            "updated_at": streak.updated_at,
        }
    )


def _challenge_view(stored: StoredChallenge) -> ChallengeDefinition:
    challenge = stored.challenge
    return ChallengeDefinition.model_validate(
        {
            "challenge_id": str(challenge.id),
            "name": challenge.name,
            "description": challenge.description,
            "type": challenge.type,
            "action": challenge.action,
            "target": challenge.target,
            "reward": challenge.reward,
            "starts_at": challenge.starts_at,
            "ends_at": challenge.ends_at,
            "requires_enrollment": challenge.requires_enrollment,
            "active": challenge.active,
            "participants_count": stored.participants,
            "completions_count": stored.completions,
            "created_at": challenge.created_at,
            "updated_at": challenge.updated_at,
        }
    )


def _leaderboard_view(leaderboard: Leaderboard) -> LeaderboardDefinition:
    return LeaderboardDefinition.model_validate(
        {
            "leaderboard_id": str(leaderboard.id),
            "name": leaderboard.name,
            "metric": leaderboard.metric,
            "action": leaderboard.action,
            "period": leaderboard.period,
            "timezone": leaderboard.timezone,
            "size": leaderboard.size,
            "notify_top": leaderboard.notify_top,
            "active": leaderboard.active,
            "created_at": leaderboard.created_at,
            "updated_at": leaderboard.updated_at,
        }
    )


def _changed(changes: dict[str, Any]) -> dict[str, Any]:
    return {"changed": sorted(changes)}


# --- streaks ------------------------------------------------------------------------------


@endpoint(
    bp,
    "GET",
    "/admin/streaks",
    summary="List streaks by streak_type",
    tag="streaks admin",
    access=Access.ADMIN,
    query=DefinitionsQuery,
    responses={200: StreakDefinitionList},
)
def get_streaks(query: DefinitionsQuery) -> tuple[StreakDefinitionList, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        streaks = list_streaks(session, principal.tenant_id, principal.env, active=query.active)
        return StreakDefinitionList(streaks=[_streak_view(streak) for streak in streaks]), 200


@endpoint(
    bp,
    "POST",
    "/admin/streaks",
    summary="Create a streak: actions of its action extend a participant's run once per period",
    tag="streaks admin",
    access=Access.ADMIN,
    body=StreakCreate,
    responses={201: StreakDefinition},
    errors={409: ("streak_already_exists",)},
)
def post_streak(body: StreakCreate) -> tuple[StreakDefinition, int]:
    principal = current_principal()
    fields: dict[str, Any] = body.model_dump(exclude={"streak_type"})
    with runtime().session_factory.begin() as session:
        streak = create_streak(
            session, principal.tenant_id, principal.env, body.streak_type, fields
        )
        details = {"streak_type": streak.streak_type, "name": streak.name}
        audit_change(session, "streak.created", streak.id, details)
        return _streak_view(streak), 201


@endpoint(
    bp,
    "GET",
    "/admin/streaks/<streak_type>",
    summary="Get a streak",
    tag="streaks admin",
    access=Access.ADMIN,
    responses={200: StreakDefinition},
    errors=STREAK_NOT_FOUND,
)
def get_one_streak(streak_type: str) -> tuple[StreakDefinition, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        streak = get_streak(session, principal.tenant_id, principal.env, streak_type)
        return _streak_view(streak), 200


@endpoint(
    bp,
    "PATCH",
    "/admin/streaks/<streak_type>",
    summary="Change a streak; fields not sent keep their values (streak_type is its key)",
    tag="streaks admin",
    access=Access.ADMIN,
    body=StreakUpdate,
    responses={200: StreakDefinition},
    errors=STREAK_NOT_FOUND,
)
def patch_streak(streak_type: str, body: StreakUpdate) -> tuple[StreakDefinition, int]:
    principal = current_principal()
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    with runtime().session_factory.begin() as session:
        streak = update_streak(session, principal.tenant_id, principal.env, streak_type, changes)
        if changes:
            audit_change(session, "streak.updated", streak.id, _changed(changes))
        return _streak_view(streak), 200


@endpoint(
    bp,
    "DELETE",
    "/admin/streaks/<streak_type>",
    summary="Deactivate a streak; participants' runs are kept (PATCH active: true restores it)",
    tag="streaks admin",
    access=Access.ADMIN,
    responses={204: None},
    errors=STREAK_NOT_FOUND,
)
def remove_streak(streak_type: str) -> Response:
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        streak = deactivate_streak(session, principal.tenant_id, principal.env, streak_type)
        audit_change(session, "streak.deactivated", streak.id)
    return Response(status=204)


# --- challenges ---------------------------------------------------------------------------


@endpoint(
    bp,
    "GET",
    "/admin/challenges",
    summary="List challenges, oldest first, with their participants and completions",
    tag="challenges admin",
    access=Access.ADMIN,
    query=DefinitionsQuery,
    responses={200: ChallengeDefinitionList},
)
def get_challenge_definitions(query: DefinitionsQuery) -> tuple[ChallengeDefinitionList, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        challenges = list_challenge_definitions(
            session, principal.tenant_id, principal.env, active=query.active
        )
        views = [_challenge_view(stored) for stored in challenges]
        return ChallengeDefinitionList(challenges=views), 200


@endpoint(
    bp,
    "POST",
    "/admin/challenges",
    summary="Create a challenge: a target of actions or points earned, in a window",
    tag="challenges admin",
    access=Access.ADMIN,
    body=ChallengeCreate,
    responses={201: ChallengeDefinition},
)
def post_challenge(body: ChallengeCreate) -> tuple[ChallengeDefinition, int]:
    principal = current_principal()
    fields: dict[str, Any] = body.model_dump()
    with runtime().session_factory.begin() as session:
        stored = create_challenge(session, principal.tenant_id, principal.env, fields)
        challenge = stored.challenge
        details = {"name": challenge.name, "type": challenge.type}
        audit_change(session, "challenge.created", challenge.id, details)
        return _challenge_view(stored), 201


@endpoint(
    bp,
    "GET",
    "/admin/challenges/<challenge_id>",
    summary="Get a challenge with its participants and completions",
    tag="challenges admin",
    access=Access.ADMIN,
    responses={200: ChallengeDefinition},
    errors=CHALLENGE_NOT_FOUND,
)
def get_one_challenge(challenge_id: str) -> tuple[ChallengeDefinition, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        stored = get_challenge_definition(session, principal.tenant_id, principal.env, challenge_id)
        return _challenge_view(stored), 200


@endpoint(
    bp,
    "PATCH",
    "/admin/challenges/<challenge_id>",
    summary="Change a challenge; fields not sent keep their values, progress counted stays",
    tag="challenges admin",
    access=Access.ADMIN,
    body=ChallengeUpdate,
    responses={200: ChallengeDefinition},
    errors=CHALLENGE_NOT_FOUND,
)
def patch_challenge(challenge_id: str, body: ChallengeUpdate) -> tuple[ChallengeDefinition, int]:
    principal = current_principal()
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    with runtime().session_factory.begin() as session:
        stored = update_challenge(
            session, principal.tenant_id, principal.env, challenge_id, changes
        )
        if changes:
            audit_change(session, "challenge.updated", stored.challenge.id, _changed(changes))
        return _challenge_view(stored), 200


@endpoint(
    bp,
    "DELETE",
    "/admin/challenges/<challenge_id>",
    summary="Deactivate a challenge; progress is kept (PATCH active: true restores it)",
    tag="challenges admin",
    access=Access.ADMIN,
    responses={204: None},
    errors=CHALLENGE_NOT_FOUND,
)
def remove_challenge(challenge_id: str) -> Response:
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        challenge = deactivate_challenge(session, principal.tenant_id, principal.env, challenge_id)
        audit_change(session, "challenge.deactivated", challenge.id)
    return Response(status=204)


# --- leaderboards -------------------------------------------------------------------------


@endpoint(
    bp,
    "GET",
    "/admin/leaderboards",
    summary="List leaderboards, oldest first",
    tag="leaderboards admin",
    access=Access.ADMIN,
    query=DefinitionsQuery,
    responses={200: LeaderboardDefinitionList},
)
def get_leaderboards(query: DefinitionsQuery) -> tuple[LeaderboardDefinitionList, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        leaderboards = list_leaderboards(
            session, principal.tenant_id, principal.env, active=query.active
        )
        views = [_leaderboard_view(leaderboard) for leaderboard in leaderboards]
        return LeaderboardDefinitionList(leaderboards=views), 200


@endpoint(
    bp,
    "POST",
    "/admin/leaderboards",
    summary="Create a leaderboard; its metric, action, period and time zone are fixed after",
    tag="leaderboards admin",
    access=Access.ADMIN,
    body=LeaderboardCreate,
    responses={201: LeaderboardDefinition},
)
def post_leaderboard(body: LeaderboardCreate) -> tuple[LeaderboardDefinition, int]:
    principal = current_principal()
    fields: dict[str, Any] = body.model_dump()
    with runtime().session_factory.begin() as session:
        leaderboard = create_leaderboard(session, principal.tenant_id, principal.env, fields)
        details = {"name": leaderboard.name, "metric": leaderboard.metric}
        audit_change(session, "leaderboard.created", leaderboard.id, details)
        return _leaderboard_view(leaderboard), 201


@endpoint(
    bp,
    "GET",
    "/admin/leaderboards/<leaderboard_id>",
    summary="Get a leaderboard's definition",
    tag="leaderboards admin",
    access=Access.ADMIN,
    responses={200: LeaderboardDefinition},
    errors=LEADERBOARD_NOT_FOUND,
)
def get_one_leaderboard(leaderboard_id: str) -> tuple[LeaderboardDefinition, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        leaderboard = get_leaderboard(session, principal.tenant_id, principal.env, leaderboard_id)
        return _leaderboard_view(leaderboard), 200


@endpoint(
    bp,
    "PATCH",
    "/admin/leaderboards/<leaderboard_id>",
    summary="Change a leaderboard's name, size, notify_top or active; fields not sent keep "
    "their values",
    tag="leaderboards admin",
    access=Access.ADMIN,
    body=LeaderboardUpdate,
    responses={200: LeaderboardDefinition},
    errors=LEADERBOARD_NOT_FOUND,
)
def patch_leaderboard(
    leaderboard_id: str, body: LeaderboardUpdate
) -> tuple[LeaderboardDefinition, int]:
    principal = current_principal()
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    with runtime().session_factory.begin() as session:
        leaderboard = update_leaderboard(
            session, principal.tenant_id, principal.env, leaderboard_id, changes
        )
        if changes:
            audit_change(session, "leaderboard.updated", leaderboard.id, _changed(changes))
        return _leaderboard_view(leaderboard), 200


@endpoint(
    bp,
    "DELETE",
    "/admin/leaderboards/<leaderboard_id>",
    summary="Deactivate a leaderboard (PATCH active: true restores it)",
    tag="leaderboards admin",
    access=Access.ADMIN,
    responses={204: None},
    errors=LEADERBOARD_NOT_FOUND,
)
def remove_leaderboard(leaderboard_id: str) -> Response:
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        leaderboard = deactivate_leaderboard(
            session, principal.tenant_id, principal.env, leaderboard_id
        )
        audit_change(session, "leaderboard.deactivated", leaderboard.id)
    return Response(status=204)
