"""The admin's streaks, challenges and leaderboards (`/admin/streaks`, `/admin/challenges`,
`/admin/leaderboards`): round trips, validation, 404s and 409s, admin scope, tenant
isolation, the audit log, and definitions the action pipeline then runs with."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from api.runtime import EXTENSION_KEY
from app.clock import utcnow
from app.models import ChallengeProgress, Claim
from tests.builders import (
    GAMIFY,
    create_challenge,
    create_leaderboard,
    create_reward,
    create_streak,
    wait_for,
)
from tests.conftest import TenantKeys, WorkerProcess
from tests.test_actions import act, balance

STREAKS = f"{GAMIFY}/admin/streaks"
CHALLENGES = f"{GAMIFY}/admin/challenges"
LEADERBOARDS = f"{GAMIFY}/admin/leaderboards"


def audit_log(client: FlaskClient, tenant: TenantKeys) -> list[tuple[str, str, Any]]:
    """(action, target_id, details), oldest first."""
    response = client.get(f"{GAMIFY}/admin/audit-log", headers=tenant.admin())
    assert response.status_code == 200, response.json
    entries = reversed(response.json["entries"])
    return [(entry["action"], entry["target_id"], entry["details"]) for entry in entries]


def refused(response: Any, *loc: str | int) -> None:
    """A 422 validation_error; with `loc`, its one field error is at body.<loc>."""
    assert response.status_code == 422, response.json
    assert response.json["code"] == "validation_error"
    if loc:
        assert [error["loc"] for error in response.json.get("errors", [])] == [["body", *loc]]


def not_found(response: Any, code: str) -> None:
    assert response.status_code == 404, response.json
    assert response.json["code"] == code


# --- streaks ------------------------------------------------------------------------------


def test_a_streak_is_created_read_changed_and_deactivated(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    created = create_streak(
        client,
        tenant.admin(),
        timezone="America/New_York",
        grace_period_hours=6,
        milestones=[{"days": 30, "points": 500}, {"days": 7, "points": 50}],
    )
    assert created == {
        "streak_id": created["streak_id"],
        "streak_type": "daily-login",
        "name": "Daily login",
        "action": "login",
        "period": "daily",
        "timezone": "America/New_York",
        "grace_period_hours": 6,
        "milestones": [{"days": 7, "points": 50}, {"days": 30, "points": 500}],
        "active": True,
        "created_at": created["created_at"],
        "updated_at": None,
    }
    uuid.UUID(created["streak_id"])
    assert datetime.fromisoformat(created["created_at"]).tzinfo is not None
    assert client.get(f"{STREAKS}/daily-login", headers=tenant.admin()).json == created

    changed = client.patch(
        f"{STREAKS}/daily-login",
        json={"name": "Login", "period": "weekly", "milestones": [{"days": 2, "points": 0}]},
        headers=tenant.admin(),
    )
    assert changed.status_code == 200, changed.json
    assert changed.json == {
        **created,
        "name": "Login",
        "period": "weekly",
        "milestones": [{"days": 2, "points": 0}],
        "updated_at": changed.json["updated_at"],
    }
    assert changed.json["updated_at"] >= created["created_at"]

    deleted = client.delete(f"{STREAKS}/daily-login", headers=tenant.admin())
    assert (deleted.status_code, deleted.get_data()) == (204, b"")
    after = client.get(f"{STREAKS}/daily-login", headers=tenant.admin())
    assert after.status_code == 200 and after.json["active"] is False
    restored = client.patch(f"{STREAKS}/daily-login", json={"active": True}, headers=tenant.admin())
    assert restored.json["active"] is True


def test_streaks_are_listed_by_streak_type_and_filtered_by_active(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    for streak_type in ("weekly-visit", "app:open", "daily-login"):
        create_streak(client, tenant.admin(), streak_type=streak_type)
    client.delete(f"{STREAKS}/weekly-visit", headers=tenant.admin())

    def listed(**query: str) -> list[str]:
        response = client.get(STREAKS, query_string=query, headers=tenant.admin())
        assert response.status_code == 200, response.json
        return [streak["streak_type"] for streak in response.json["streaks"]]

    assert listed() == ["app:open", "daily-login", "weekly-visit"]
    assert listed(active="true") == ["app:open", "daily-login"]
    assert listed(active="false") == ["weekly-visit"]


def test_a_streak_type_is_taken_once_even_by_a_deactivated_streak(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    create_streak(client, tenant.admin())
    client.delete(f"{STREAKS}/daily-login", headers=tenant.admin())
    again = client.post(
        STREAKS,
        json={"streak_type": "daily-login", "name": "Again", "action": "visit"},
        headers=tenant.admin(),
    )
    assert again.status_code == 409
    assert again.json["code"] == "streak_already_exists"
    assert client.get(f"{STREAKS}/daily-login", headers=tenant.admin()).json["name"] == (
        "Daily login"
    )


@pytest.mark.parametrize("streak_type", ["nope", "bad type!", "x" * 101, "%00"])
def test_an_unknown_streak_type_is_streak_not_found(
    client: FlaskClient, tenant: TenantKeys, streak_type: str
) -> None:
    url = f"{STREAKS}/{streak_type}"
    not_found(client.get(url, headers=tenant.admin()), "streak_not_found")
    not_found(client.patch(url, json={"name": "x"}, headers=tenant.admin()), "streak_not_found")
    not_found(client.delete(url, headers=tenant.admin()), "streak_not_found")


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"streak_type": "has space"}, ("streak_type",)),
        ({"streak_type": "slash/type"}, ("streak_type",)),
        ({"streak_type": ""}, ("streak_type",)),
        ({"streak_type": "x" * 101}, ("streak_type",)),
        ({"name": ""}, ("name",)),
        ({"name": "n" * 201}, ("name",)),
        ({"action": ""}, ("action",)),
        ({"action": "a" * 101}, ("action",)),
        ({"period": "monthly"}, ("period",)),
        ({"timezone": "Mars/Phobos"}, ("timezone",)),
        ({"timezone": "../etc/passwd"}, ("timezone",)),
        ({"timezone": ""}, ("timezone",)),
        ({"grace_period_hours": -1}, ("grace_period_hours",)),
        ({"grace_period_hours": 169}, ("grace_period_hours",)),
        ({"grace_period_hours": "2"}, ("grace_period_hours",)),
        ({"grace_period_hours": 1.5}, ("grace_period_hours",)),
        ({"milestones": [{"days": 0, "points": 10}]}, ("milestones", 0, "days")),
        ({"milestones": [{"days": 3, "points": -1}]}, ("milestones", 0, "points")),
        ({"milestones": [{"days": 3}]}, ("milestones", 0, "points")),
        ({"milestones": [{"days": 3, "points": 1, "badge": "x"}]}, ("milestones", 0, "badge")),
        ({"milestones": [{"days": 3, "points": 1}, {"days": 3, "points": 2}]}, ("milestones",)),
        ({"milestones": [{"days": d, "points": 1} for d in range(1, 52)]}, ("milestones",)),
        ({"active": "yes"}, ("active",)),
        ({"colour": "red"}, ("colour",)),
    ],
)
def test_a_streak_with_a_bad_field_is_refused(
    client: FlaskClient, tenant: TenantKeys, fields: dict[str, Any], loc: tuple[str | int, ...]
) -> None:
    body = {"streak_type": "daily-login", "name": "Daily login", "action": "login", **fields}
    refused(client.post(STREAKS, json=body, headers=tenant.admin()), *loc)
    assert client.get(STREAKS, headers=tenant.admin()).json["streaks"] == []


def test_a_streak_keeps_its_type_and_its_required_fields_on_patch(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    create_streak(client, tenant.admin())
    url = f"{STREAKS}/daily-login"
    renamed = client.patch(url, json={"streak_type": "login", "name": "x"}, headers=tenant.admin())
    refused(renamed)
    assert "streak_type cannot change" in renamed.json["errors"][0]["msg"]
    for field in ("name", "action", "period", "timezone", "milestones", "active"):
        refused(client.patch(url, json={field: None}, headers=tenant.admin()), field)
    refused(client.patch(url, json={"timezone": "Nowhere"}, headers=tenant.admin()), "timezone")
    assert client.get(url, headers=tenant.admin()).json["updated_at"] is None
    assert [action for action, _, _ in audit_log(client, tenant)] == ["streak.created"]


# --- challenges ---------------------------------------------------------------------------


def test_a_challenge_is_created_read_changed_and_deactivated(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    starts_at = datetime.fromisoformat("2026-12-01T00:00:00+01:00")
    created = create_challenge(
        client,
        tenant.admin(),
        description="Buy five times in December",
        reward={"type": "points", "amount": 250},
        starts_at=starts_at.isoformat(),
        ends_at=(starts_at + timedelta(days=31)).isoformat(),
        requires_enrollment=True,
    )
    assert created == {
        "challenge_id": created["challenge_id"],
        "name": "Five purchases",
        "description": "Buy five times in December",
        "type": "action_count",
        "action": "purchase",
        "target": 5,
        "reward": {"type": "points", "amount": 250},
        "starts_at": created["starts_at"],
        "ends_at": created["ends_at"],
        "requires_enrollment": True,
        "active": True,
        "participants_count": 0,
        "completions_count": 0,
        "created_at": created["created_at"],
        "updated_at": None,
    }
    assert datetime.fromisoformat(created["starts_at"]) == starts_at
    url = f"{CHALLENGES}/{created['challenge_id']}"
    assert client.get(url, headers=tenant.admin()).json == created

    changed = client.patch(
        url,
        json={"type": "points_earned", "action": None, "target": 1000, "reward": None},
        headers=tenant.admin(),
    )
    assert changed.status_code == 200, changed.json
    assert changed.json == {
        **created,
        "type": "points_earned",
        "action": None,
        "target": 1000,
        "reward": None,
        "updated_at": changed.json["updated_at"],
    }
    deleted = client.delete(url, headers=tenant.admin())
    assert (deleted.status_code, deleted.get_data()) == (204, b"")
    assert client.get(url, headers=tenant.admin()).json["active"] is False


def test_challenges_are_listed_oldest_first_and_filtered_by_active(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    ids = [create_challenge(client, tenant.admin(), name=name)["challenge_id"] for name in "BCA"]
    client.delete(f"{CHALLENGES}/{ids[1]}", headers=tenant.admin())

    def listed(**query: str) -> list[str]:
        response = client.get(CHALLENGES, query_string=query, headers=tenant.admin())
        assert response.status_code == 200, response.json
        return [challenge["challenge_id"] for challenge in response.json["challenges"]]

    assert listed() == ids
    assert listed(active="true") == [ids[0], ids[2]]
    assert listed(active="false") == [ids[1]]


@contextmanager
def statements(flask_app: Flask) -> Iterator[list[str]]:
    """The SQL the API runs inside the block."""
    engine = flask_app.extensions[EXTENSION_KEY].engine
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_challenge_counts_are_its_progress_rows_and_the_list_counts_in_one_query(
    flask_app: Flask,
    client: FlaskClient,
    tenant: TenantKeys,
    session_factory: sessionmaker[Session],
) -> None:
    ids = [create_challenge(client, tenant.admin(), name=name)["challenge_id"] for name in "ABC"]
    now = utcnow()
    with session_factory.begin() as session:
        for challenge_id, completed in ((ids[0], [True, False, False]), (ids[2], [True, True])):
            session.add_all(
                ChallengeProgress(
                    challenge_id=uuid.UUID(challenge_id),
                    participant_pk=uuid.uuid4(),
                    current=5 if done else 1,
                    enrolled_at=None,
                    completed_at=now if done else None,
                )
                for done in completed
            )
    with statements(flask_app) as seen:
        listed = client.get(CHALLENGES, headers=tenant.admin()).json["challenges"]
    counts = [(c["participants_count"], c["completions_count"]) for c in listed]
    assert counts == [(3, 1), (0, 0), (2, 2)]
    assert len([sql for sql in seen if "challenge" in sql]) == 1
    one = client.get(f"{CHALLENGES}/{ids[2]}", headers=tenant.admin()).json
    assert (one["participants_count"], one["completions_count"]) == (2, 2)
    patched = client.patch(f"{CHALLENGES}/{ids[0]}", json={"name": "A!"}, headers=tenant.admin())
    assert (patched.json["participants_count"], patched.json["completions_count"]) == (3, 1)


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"name": ""}, ("name",)),
        ({"name": "n" * 201}, ("name",)),
        ({"description": "d" * 2001}, ("description",)),
        ({"type": "streak"}, ("type",)),
        ({"target": 0}, ("target",)),
        ({"target": "5"}, ("target",)),
        ({"target": 10**16}, ("target",)),
        ({"action": "a" * 101}, ("action",)),
        ({"reward": {"type": "points", "amount": 0}}, ("reward", "points", "amount")),
        ({"reward": {"type": "points"}}, ("reward", "points", "amount")),
        ({"reward": {"type": "badge", "badge_id": "x"}}, ("reward",)),
        ({"reward": {"type": "reward", "reward_id": "nope"}}, ("reward", "reward", "reward_id")),
        ({"reward": {"type": "points", "amount": 5, "x": 1}}, ("reward", "points", "x")),
        ({"starts_at": "2026-12-01T00:00:00"}, ("starts_at",)),
        ({"ends_at": "tomorrow"}, ("ends_at",)),
        ({"requires_enrollment": 1}, ("requires_enrollment",)),
        ({"participants_count": 3}, ("participants_count",)),
    ],
)
def test_a_challenge_with_a_bad_field_is_refused(
    client: FlaskClient, tenant: TenantKeys, fields: dict[str, Any], loc: tuple[str | int, ...]
) -> None:
    body = {"name": "Five", "type": "action_count", "action": "purchase", "target": 5, **fields}
    refused(client.post(CHALLENGES, json=body, headers=tenant.admin()), *loc)


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"type": "action_count"}, "needs an action"),
        ({"type": "action_count", "action": None}, "needs an action"),
        ({"type": "points_earned", "action": "purchase"}, "takes no action"),
        (
            {"starts_at": "2026-12-02T00:00:00Z", "ends_at": "2026-12-01T00:00:00Z"},
            "ends_at must be later than starts_at",
        ),
        (
            {"starts_at": "2026-12-01T01:00:00+01:00", "ends_at": "2026-12-01T00:00:00Z"},
            "ends_at must be later than starts_at",
        ),
    ],
)
def test_a_challenge_whose_fields_disagree_is_refused(
    client: FlaskClient, tenant: TenantKeys, fields: dict[str, Any], detail: str
) -> None:
    body = {"name": "Five", "type": "points_earned", "target": 5, **fields}
    response = client.post(CHALLENGES, json=body, headers=tenant.admin())
    refused(response)
    assert detail in response.json["detail"]
    assert client.get(CHALLENGES, headers=tenant.admin()).json["challenges"] == []


def test_a_patch_is_checked_with_the_fields_it_keeps(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    challenge = create_challenge(
        client,
        tenant.admin(),
        starts_at="2026-12-01T00:00:00Z",
        ends_at="2026-12-31T00:00:00Z",
    )
    url = f"{CHALLENGES}/{challenge['challenge_id']}"
    for changes, detail in (
        ({"type": "points_earned"}, "takes no action"),
        ({"action": None}, "needs an action"),
        ({"ends_at": "2026-11-30T00:00:00Z"}, "ends_at must be later than starts_at"),
        ({"starts_at": "2027-01-01T00:00:00Z"}, "ends_at must be later than starts_at"),
    ):
        response = client.patch(url, json=changes, headers=tenant.admin())
        refused(response)
        assert detail in response.json["detail"], changes
    for field in ("name", "type", "target", "requires_enrollment", "active"):
        refused(client.patch(url, json={field: None}, headers=tenant.admin()), field)
    assert client.get(url, headers=tenant.admin()).json == challenge
    opened = client.patch(url, json={"starts_at": None, "ends_at": None}, headers=tenant.admin())
    assert (opened.json["starts_at"], opened.json["ends_at"]) == (None, None)


def test_a_reward_challenge_names_a_reward_of_its_own_program(
    client: FlaskClient, make_tenant: Any
) -> None:
    acme, other = make_tenant("Acme"), make_tenant("Other")
    reward = create_reward(client, acme.admin(), name="Free coffee")
    foreign = create_reward(client, other.admin(), name="Other coffee")
    challenge = create_challenge(
        client, acme.admin(), reward={"type": "reward", "reward_id": reward["id"].upper()}
    )
    assert challenge["reward"] == {"type": "reward", "reward_id": reward["id"]}
    test_env = {"X-API-Key": acme.test_admin_key}
    for headers, reward_id in (
        (acme.admin(), str(uuid.uuid4())),
        (acme.admin(), foreign["id"]),
        (test_env, reward["id"]),
    ):
        body = {
            "name": "Coffee",
            "type": "points_earned",
            "target": 100,
            "reward": {"type": "reward", "reward_id": reward_id},
        }
        response = client.post(CHALLENGES, json=body, headers=headers)
        refused(response)
        assert "reward_id" in response.json["detail"]
    patched = client.patch(
        f"{CHALLENGES}/{challenge['challenge_id']}",
        json={"reward": {"type": "reward", "reward_id": foreign["id"]}},
        headers=acme.admin(),
    )
    refused(patched)
    assert "reward_id" in patched.json["detail"]


@pytest.mark.parametrize("challenge_id", ["3b9f5a0e-8c1d-4f7e-9a2b-6c4d8e1f0a7b", "nope", "1"])
def test_an_unknown_challenge_is_challenge_not_found(
    client: FlaskClient, tenant: TenantKeys, challenge_id: str
) -> None:
    url = f"{CHALLENGES}/{challenge_id}"
    not_found(client.get(url, headers=tenant.admin()), "challenge_not_found")
    not_found(client.patch(url, json={"name": "x"}, headers=tenant.admin()), "challenge_not_found")
    not_found(client.delete(url, headers=tenant.admin()), "challenge_not_found")


# --- leaderboards -------------------------------------------------------------------------


def test_a_leaderboard_is_created_read_changed_and_deactivated(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    created = create_leaderboard(
        client,
        tenant.admin(),
        metric="action_count",
        action="referral",
        period="weekly",
        timezone="Asia/Tokyo",
    )
    assert created == {
        "leaderboard_id": created["leaderboard_id"],
        "name": "Top earners",
        "metric": "action_count",
        "action": "referral",
        "period": "weekly",
        "timezone": "Asia/Tokyo",
        "size": 100,
        "notify_top": 10,
        "active": True,
        "created_at": created["created_at"],
        "updated_at": None,
    }
    url = f"{LEADERBOARDS}/{created['leaderboard_id']}"
    assert client.get(url, headers=tenant.admin()).json == created
    changed = client.patch(
        url, json={"name": "Top referrers", "size": 5, "notify_top": 5}, headers=tenant.admin()
    )
    assert changed.status_code == 200, changed.json
    assert changed.json == {
        **created,
        "name": "Top referrers",
        "size": 5,
        "notify_top": 5,
        "updated_at": changed.json["updated_at"],
    }
    deleted = client.delete(url, headers=tenant.admin())
    assert (deleted.status_code, deleted.get_data()) == (204, b"")
    assert client.get(url, headers=tenant.admin()).json["active"] is False


def test_leaderboards_are_listed_oldest_first(client: FlaskClient, tenant: TenantKeys) -> None:
    ids = [create_leaderboard(client, tenant.admin(), name=n)["leaderboard_id"] for n in "ZYX"]
    client.delete(f"{LEADERBOARDS}/{ids[0]}", headers=tenant.admin())
    listed = client.get(LEADERBOARDS, headers=tenant.admin()).json["leaderboards"]
    assert [(board["leaderboard_id"], board["active"]) for board in listed] == [
        (ids[0], False),
        (ids[1], True),
        (ids[2], True),
    ]
    active = client.get(LEADERBOARDS, query_string={"active": "true"}, headers=tenant.admin())
    assert [board["leaderboard_id"] for board in active.json["leaderboards"]] == ids[1:]


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"name": ""}, ("name",)),
        ({"metric": "badges"}, ("metric",)),
        ({"period": "yearly"}, ("period",)),
        ({"timezone": "Europe/Atlantis"}, ("timezone",)),
        ({"size": 0}, ("size",)),
        ({"size": 1001}, ("size",)),
        ({"notify_top": -1}, ("notify_top",)),
        ({"notify_top": 101}, ("notify_top",)),
        ({"notify_top": True}, ("notify_top",)),
        ({"scores": []}, ("scores",)),
    ],
)
def test_a_leaderboard_with_a_bad_field_is_refused(
    client: FlaskClient, tenant: TenantKeys, fields: dict[str, Any], loc: tuple[str | int, ...]
) -> None:
    body = {"name": "Top", "metric": "points_earned", **fields}
    refused(client.post(LEADERBOARDS, json=body, headers=tenant.admin()), *loc)


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"metric": "action_count"}, "needs an action"),
        ({"metric": "points_earned", "action": "purchase"}, "takes no action"),
        ({"metric": "referral_count", "action": "purchase"}, "takes no action"),
        ({"size": 5, "notify_top": 6}, "notify_top must not exceed size"),
        ({"size": 5}, "notify_top must not exceed size"),
    ],
)
def test_a_leaderboard_whose_fields_disagree_is_refused(
    client: FlaskClient, tenant: TenantKeys, fields: dict[str, Any], detail: str
) -> None:
    body = {"name": "Top", "metric": "points_earned", **fields}
    response = client.post(LEADERBOARDS, json=body, headers=tenant.admin())
    refused(response)
    assert detail in response.json["detail"]


def test_a_leaderboards_metric_action_period_and_time_zone_never_change(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    board = create_leaderboard(client, tenant.admin(), size=20)
    url = f"{LEADERBOARDS}/{board['leaderboard_id']}"
    for changes in (
        {"metric": "action_count", "action": "purchase"},
        {"period": "all_time"},
        {"timezone": "UTC", "name": "Same zone"},
    ):
        response = client.patch(url, json=changes, headers=tenant.admin())
        refused(response)
        assert "cannot change once a leaderboard is created" in response.json["errors"][0]["msg"]
        sent = [name for name in ("metric", "action", "period", "timezone") if name in changes]
        assert ", ".join(sent) in response.json["errors"][0]["msg"]
    for changes in ({"notify_top": 21}, {"size": 9}):
        response = client.patch(url, json=changes, headers=tenant.admin())
        refused(response)
        assert "notify_top must not exceed size" in response.json["detail"]
    for field in ("name", "size", "notify_top", "active"):
        refused(client.patch(url, json={field: None}, headers=tenant.admin()), field)
    assert client.get(url, headers=tenant.admin()).json == board


@pytest.mark.parametrize("leaderboard_id", ["3b9f5a0e-8c1d-4f7e-9a2b-6c4d8e1f0a7b", "nope"])
def test_an_unknown_leaderboard_is_leaderboard_not_found(
    client: FlaskClient, tenant: TenantKeys, leaderboard_id: str
) -> None:
    url = f"{LEADERBOARDS}/{leaderboard_id}"
    code = "leaderboard_not_found"
    not_found(client.get(url, headers=tenant.admin()), code)
    not_found(client.patch(url, json={"name": "x"}, headers=tenant.admin()), code)
    not_found(client.delete(url, headers=tenant.admin()), code)


# --- every feature ------------------------------------------------------------------------


def _one_of_each(client: FlaskClient, tenant: TenantKeys) -> list[str]:
    """The item URLs of a streak, a challenge and a leaderboard of `tenant`."""
    create_streak(client, tenant.admin())
    challenge = create_challenge(client, tenant.admin())
    board = create_leaderboard(client, tenant.admin())
    return [
        f"{STREAKS}/daily-login",
        f"{CHALLENGES}/{challenge['challenge_id']}",
        f"{LEADERBOARDS}/{board['leaderboard_id']}",
    ]


def test_definitions_are_admin_only(client: FlaskClient, tenant: TenantKeys) -> None:
    items = _one_of_each(client, tenant)
    calls = [
        *(("GET", url) for url in (STREAKS, CHALLENGES, LEADERBOARDS)),
        *(("POST", url) for url in (STREAKS, CHALLENGES, LEADERBOARDS)),
        *((method, url) for url in items for method in ("GET", "PATCH", "DELETE")),
    ]
    for method, url in calls:
        for headers in (tenant.participant(), {"X-API-Key": tenant.test_participant_key}):
            response = client.open(url, method=method, json={"name": "x"}, headers=headers)
            assert response.status_code == 403, (method, url, response.json)
            assert response.json["code"] == "forbidden"
        assert client.open(url, method=method).status_code == 401
    for url in items:
        assert client.get(url, headers=tenant.admin()).json["name"] != "x"


def test_another_tenant_or_environment_finds_none_of_a_programs_definitions(
    client: FlaskClient, make_tenant: Any
) -> None:
    acme, other = make_tenant("Acme"), make_tenant("Other")
    items = _one_of_each(client, acme)
    for headers in (other.admin(), {"X-API-Key": acme.test_admin_key}):
        for url in items:
            for method in ("GET", "PATCH", "DELETE"):
                response = client.open(url, method=method, json={"name": "x"}, headers=headers)
                assert response.status_code == 404, (method, url, response.json)
        assert client.get(STREAKS, headers=headers).json == {"streaks": []}
        assert client.get(CHALLENGES, headers=headers).json == {"challenges": []}
        assert client.get(LEADERBOARDS, headers=headers).json == {"leaderboards": []}
    for url in items:
        mine = client.get(url, headers=acme.admin()).json
        assert mine["active"] and mine["name"] != "x", url


def test_every_change_is_in_the_audit_log(client: FlaskClient, tenant: TenantKeys) -> None:
    streak, challenge, board = _one_of_each(client, tenant)
    for url in (streak, challenge, board):
        client.patch(url, json={"name": "Renamed", "active": True}, headers=tenant.admin())
        client.patch(url, json={}, headers=tenant.admin())  # no change: no entry
        client.delete(url, headers=tenant.admin())
    ids = {
        kind: client.get(url, headers=tenant.admin()).json[f"{kind}_id"]
        for kind, url in (("streak", streak), ("challenge", challenge), ("leaderboard", board))
    }
    changed = {"changed": ["active", "name"]}
    assert audit_log(client, tenant) == [
        ("streak.created", ids["streak"], {"streak_type": "daily-login", "name": "Daily login"}),
        ("challenge.created", ids["challenge"], {"name": "Five purchases", "type": "action_count"}),
        (
            "leaderboard.created",
            ids["leaderboard"],
            {"name": "Top earners", "metric": "points_earned"},
        ),
        ("streak.updated", ids["streak"], changed),
        ("streak.deactivated", ids["streak"], None),
        ("challenge.updated", ids["challenge"], changed),
        ("challenge.deactivated", ids["challenge"], None),
        ("leaderboard.updated", ids["leaderboard"], changed),
        ("leaderboard.deactivated", ids["leaderboard"], None),
    ]


# --- what the action pipeline runs with ---------------------------------------------------


def test_a_streak_created_by_the_admin_is_extended_by_actions(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    create_streak(
        client,
        tenant.admin(),
        action="purchase",
        timezone="Europe/Paris",
        milestones=[{"days": 1, "points": 15}],
    )
    response = act(client, tenant, "p1", "purchase")
    assert response.status_code == 201, response.json
    assert response.json["streaks"] == [
        {"streak_type": "daily-login", "current_count": 1, "milestone_reached": 1}
    ]
    assert response.json["new_balance"] == 15
    client.delete(f"{STREAKS}/daily-login", headers=tenant.admin())
    assert act(client, tenant, "p1", "purchase").json["streaks"] == []


def test_a_challenge_created_by_the_admin_counts_actions_and_pays_its_rewards(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    now = utcnow()
    points = create_challenge(
        client,
        tenant.admin(),
        target=2,
        reward={"type": "points", "amount": 40},
        starts_at=(now - timedelta(hours=1)).isoformat(),
        ends_at=(now + timedelta(hours=1)).isoformat(),
    )
    first = act(client, tenant, "p1", "purchase")
    assert first.status_code == 201, first.json
    assert first.json["challenges"] == [
        {"challenge_id": points["challenge_id"], "current": 1, "target": 2, "completed": False}
    ]
    assert act(client, tenant, "p1", "purchase").json["challenges"][0]["completed"]
    assert balance(client, tenant, "p1") == 40
    counted = client.get(f"{CHALLENGES}/{points['challenge_id']}", headers=tenant.admin()).json
    assert (counted["participants_count"], counted["completions_count"]) == (1, 1)

    reward = create_reward(client, tenant.admin(), name="Free coffee", points_cost=0)
    catalog = create_challenge(
        client,
        tenant.admin(),
        action="visit",
        target=1,
        reward={"type": "reward", "reward_id": reward["id"]},
    )
    assert act(client, tenant, "p2", "visit").json["challenges"] == [
        {"challenge_id": catalog["challenge_id"], "current": 1, "target": 1, "completed": True}
    ]

    def claims() -> list[Claim]:
        with session_factory() as session:
            return list(
                session.execute(
                    select(Claim).where(Claim.reward_id == uuid.UUID(reward["id"]))
                ).scalars()
            )

    [claim] = wait_for(claims, bool, timeout=20, what="the challenge's claim")
    assert claim.participant_id == "p2"
