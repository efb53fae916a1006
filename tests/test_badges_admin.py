"""Badges (`/admin/badges`): create, read, change and deactivate; the criteria kinds;
validation; admin scope; tenant and environment isolation; the audit log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from app.models import BadgeProgress
from tests.builders import GAMIFY, create_badge
from tests.conftest import TenantKeys

BADGES = f"{GAMIFY}/admin/badges"
VIEW_FIELDS = {
    "badge_id",
    "name",
    "description",
    "image_url",
    "category",
    "criteria",
    "points_reward",
    "active",
    "created_at",
    "updated_at",
}
FULL_BADGE: dict[str, Any] = {
    "name": "Regular",
    "description": "Ten purchases",
    "image_url": "https://cdn.example.com/badges/regular.png",
    "category": "shopping",
    "criteria": {"type": "action_count", "action": "purchase", "count": 10},
    "points_reward": 250,
    "active": True,
}


def audit_entries(client: FlaskClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = client.get(f"{GAMIFY}/admin/audit-log", headers=headers)
    assert response.status_code == 200, response.json
    return list(response.json["entries"])


def test_a_created_badge_answers_201_with_every_field_and_reads_back(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    badge = create_badge(client, tenant.admin(), **FULL_BADGE)

    assert set(badge) == VIEW_FIELDS
    uuid.UUID(badge["badge_id"])
    assert {name: badge[name] for name in FULL_BADGE} == FULL_BADGE
    assert datetime.fromisoformat(badge["created_at"]).tzinfo is not None
    assert badge["updated_at"] is None
    assert client.get(f"{BADGES}/{badge['badge_id']}", headers=tenant.admin()).json == badge
    with session_factory() as session:
        stored = session.execute(
            text("SELECT criteria FROM badges WHERE id = :id"), {"id": badge["badge_id"]}
        ).scalar_one()
    assert stored == FULL_BADGE["criteria"]


@pytest.mark.parametrize(
    "criteria",
    [
        {"type": "action_count", "action": "review", "count": 1},
        {"type": "points_earned", "points": 1000},
        {"type": "manual"},
    ],
)
def test_each_kind_of_criteria_is_stored_as_sent(
    client: FlaskClient, tenant: TenantKeys, criteria: dict[str, Any]
) -> None:
    badge = create_badge(client, tenant.admin(), criteria=criteria)
    assert badge["criteria"] == criteria


def test_a_badge_sent_with_only_its_required_fields_takes_the_defaults(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    badge = create_badge(client, tenant.admin(), name="Helper", criteria={"type": "manual"})
    assert {name: badge[name] for name in VIEW_FIELDS - {"badge_id", "created_at"}} == {
        "name": "Helper",
        "description": None,
        "image_url": None,
        "category": None,
        "criteria": {"type": "manual"},
        "points_reward": None,
        "active": True,
        "updated_at": None,
    }


def test_the_list_is_oldest_first_and_filters_by_category_and_active(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    first = create_badge(client, tenant.admin(), name="one", category="shopping")
    second = create_badge(client, tenant.admin(), name="two", category="social", active=False)
    third = create_badge(client, tenant.admin(), name="three")

    def listed(query: str = "") -> list[str]:
        response = client.get(f"{BADGES}{query}", headers=tenant.admin())
        assert response.status_code == 200, response.json
        assert set(response.json) == {"badges"}
        return [badge["badge_id"] for badge in response.json["badges"]]

    ids = [first["badge_id"], second["badge_id"], third["badge_id"]]
    assert listed() == ids
    assert listed("?category=shopping") == [ids[0]]
    assert listed("?active=false") == [ids[1]]
    assert listed("?active=true") == [ids[0], ids[2]]
    assert listed("?active=true&category=social") == []


def test_a_patch_changes_only_the_fields_sent(client: FlaskClient, tenant: TenantKeys) -> None:
    badge = create_badge(client, tenant.admin(), **FULL_BADGE)
    url = f"{BADGES}/{badge['badge_id']}"

    patched = client.patch(url, json={"name": "Loyal", "description": None}, headers=tenant.admin())

    assert patched.status_code == 200, patched.json
    assert (patched.json["name"], patched.json["description"]) == ("Loyal", None)
    unchanged = VIEW_FIELDS - {"name", "description", "updated_at"}
    assert {name: patched.json[name] for name in unchanged} == {
        name: badge[name] for name in unchanged
    }
    assert patched.json["updated_at"] is not None
    assert client.get(url, headers=tenant.admin()).json == patched.json


def test_a_new_criteria_keeps_the_progress_counted_so_far(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    badge = create_badge(client, tenant.admin(), **FULL_BADGE)
    participant_pk = uuid.uuid4()
    with session_factory.begin() as session:
        session.add(
            BadgeProgress(
                badge_id=uuid.UUID(badge["badge_id"]), participant_pk=participant_pk, current=7
            )
        )
    new_criteria = {"type": "action_count", "action": "purchase", "count": 5}

    patched = client.patch(
        f"{BADGES}/{badge['badge_id']}", json={"criteria": new_criteria}, headers=tenant.admin()
    )

    assert patched.status_code == 200, patched.json
    assert patched.json["criteria"] == new_criteria
    with session_factory() as session:
        current = session.execute(
            text("SELECT current FROM badge_progress WHERE participant_pk = :pk"),
            {"pk": participant_pk},
        ).scalar_one()
    assert current == 7


@pytest.mark.parametrize("name", ["name", "criteria", "active"])
def test_a_patch_cannot_clear_a_required_field(
    client: FlaskClient, tenant: TenantKeys, name: str
) -> None:
    badge = create_badge(client, tenant.admin())
    response = client.patch(
        f"{BADGES}/{badge['badge_id']}", json={name: None}, headers=tenant.admin()
    )
    assert response.status_code == 422, response.json
    assert response.json["errors"][0]["loc"][:2] == ["body", name]


def test_delete_deactivates_a_badge_which_is_still_shown(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    badge = create_badge(client, tenant.admin())
    url = f"{BADGES}/{badge['badge_id']}"

    deleted = client.delete(url, headers=tenant.admin())

    assert (deleted.status_code, deleted.get_data()) == (204, b"")
    shown = client.get(url, headers=tenant.admin())
    assert shown.status_code == 200
    assert shown.json["active"] is False
    assert shown.json["updated_at"] is not None
    assert {name: shown.json[name] for name in FULL_BADGE if name != "active"} == {
        name: badge[name] for name in FULL_BADGE if name != "active"
    }
    listed = client.get(BADGES, headers=tenant.admin()).json["badges"]
    assert listed == [shown.json]
    again = client.delete(url, headers=tenant.admin())
    assert again.status_code == 204
    assert [entry["action"] for entry in audit_entries(client, tenant.admin())] == [
        "badge.deactivated",
        "badge.created",
    ]
    reactivated = client.patch(url, json={"active": True}, headers=tenant.admin())
    assert reactivated.json["active"] is True


def _field_error(response: Any) -> tuple[list[Any], str]:
    assert response.status_code == 422, response.json
    assert response.json["code"] == "validation_error"
    error = response.json["errors"][0]
    return error["loc"], error["msg"]


@pytest.mark.parametrize(
    ("changes", "loc", "message"),
    [
        ({"name": ""}, ["body", "name"], "at least 1 character"),
        ({"name": "x" * 201}, ["body", "name"], "at most 200 characters"),
        ({"description": "x" * 2001}, ["body", "description"], "at most 2000 characters"),
        ({"image_url": "ftp://cdn.example.com/a.png"}, ["body", "image_url"], "match pattern"),
        ({"image_url": "javascript:alert(1)"}, ["body", "image_url"], "match pattern"),
        ({"image_url": "https://"}, ["body", "image_url"], "match pattern"),
        ({"image_url": "https:///a.png"}, ["body", "image_url"], "with a host"),
        (
            {"image_url": "https://example.com/" + "a" * 2029},
            ["body", "image_url"],
            "at most 2048 characters",
        ),
        ({"category": "x" * 101}, ["body", "category"], "at most 100 characters"),
        ({"criteria": {"type": "visits", "days": 7}}, ["body", "criteria"], "does not match"),
        (
            {"criteria": {"type": "streak", "days": 7}},
            ["body", "criteria", "streak", "streak_type"],
            "Field required",
        ),
        (
            {"criteria": {"type": "challenge_completed", "challenge_id": "x"}},
            ["body", "criteria", "challenge_completed", "challenge_id"],
            "valid UUID",
        ),
        ({"criteria": {"action": "purchase"}}, ["body", "criteria"], "Unable to extract tag"),
        ({"criteria": "manual"}, ["body", "criteria"], "should be"),
        (
            {"criteria": {"type": "manual", "count": 3}},
            ["body", "criteria", "manual", "count"],
            "Extra",
        ),
        (
            {"criteria": {"type": "action_count", "action": "purchase"}},
            ["body", "criteria", "action_count", "count"],
            "Field required",
        ),
        (
            {"criteria": {"type": "action_count", "action": "purchase", "count": 0}},
            ["body", "criteria", "action_count", "count"],
            "greater than or equal to 1",
        ),
        (
            {"criteria": {"type": "action_count", "action": "", "count": 1}},
            ["body", "criteria", "action_count", "action"],
            "at least 1 character",
        ),
        (
            {"criteria": {"type": "action_count", "action": "x" * 101, "count": 1}},
            ["body", "criteria", "action_count", "action"],
            "at most 100 characters",
        ),
        (
            {"criteria": {"type": "points_earned", "points": 0}},
            ["body", "criteria", "points_earned", "points"],
            "greater than or equal to 1",
        ),
        (
            {"criteria": {"type": "points_earned", "points": 1.5}},
            ["body", "criteria", "points_earned", "points"],
            "valid integer",
        ),
        (
            {"criteria": {"type": "points_earned", "points": 5, "action": "x"}},
            ["body", "criteria", "points_earned", "action"],
            "Extra",
        ),
        ({"points_reward": -1}, ["body", "points_reward"], "greater than or equal to 0"),
        ({"points_reward": "10"}, ["body", "points_reward"], "valid integer"),
        ({"active": 0}, ["body", "active"], "valid boolean"),
        ({"icon": "x"}, ["body", "icon"], "Extra"),
    ],
)
def test_a_badge_with_a_bad_field_is_refused_naming_the_field_and_the_problem(
    client: FlaskClient, tenant: TenantKeys, changes: dict[str, Any], loc: list[Any], message: str
) -> None:
    body = {"name": "Regular", "criteria": {"type": "manual"}, **changes}
    created = client.post(BADGES, json=body, headers=tenant.admin())
    created_loc, created_message = _field_error(created)
    assert created_loc[: len(loc)] == loc
    assert message in created_message

    badge = create_badge(client, tenant.admin())
    patched = client.patch(f"{BADGES}/{badge['badge_id']}", json=changes, headers=tenant.admin())
    patched_loc, patched_message = _field_error(patched)
    assert patched_loc[: len(loc)] == loc
    assert message in patched_message
    assert client.get(BADGES, headers=tenant.admin()).json["badges"] == [badge]


def test_a_badge_without_its_required_fields_is_refused_naming_each(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    response = client.post(BADGES, json={}, headers=tenant.admin())
    assert response.status_code == 422
    assert {tuple(error["loc"]) for error in response.json["errors"]} == {
        ("body", "name"),
        ("body", "criteria"),
    }


@pytest.mark.parametrize("badge_id", ["3b9f5a0e-8c1d-4f7e-9a2b-6c4d8e1f0a7b", "not-a-uuid", "1"])
def test_an_unknown_or_malformed_badge_id_answers_badge_not_found(
    client: FlaskClient, tenant: TenantKeys, badge_id: str
) -> None:
    for method, body in (("GET", None), ("PATCH", {"name": "x"}), ("DELETE", None)):
        response = client.open(
            f"{BADGES}/{badge_id}", method=method, json=body, headers=tenant.admin()
        )
        assert response.status_code == 404, (method, response.json)
        assert response.json["code"] == "badge_not_found"


def test_badges_are_admin_only(client: FlaskClient, tenant: TenantKeys) -> None:
    badge = create_badge(client, tenant.admin())
    url = f"{BADGES}/{badge['badge_id']}"
    for method, path, body in (
        ("GET", BADGES, None),
        ("POST", BADGES, {"name": "n", "criteria": {"type": "manual"}}),
        ("GET", url, None),
        ("PATCH", url, {"name": "stolen"}),
        ("DELETE", url, None),
    ):
        response = client.open(path, method=method, json=body, headers=tenant.participant())
        assert response.status_code == 403, (method, path)
        assert response.json["code"] == "forbidden"
    assert client.get(url, headers=tenant.admin()).json == badge
    assert len(client.get(BADGES, headers=tenant.admin()).json["badges"]) == 1


def test_each_tenant_and_environment_sees_and_changes_only_its_own_badges(
    client: FlaskClient, make_tenant: Any
) -> None:
    acme, other = make_tenant("Acme"), make_tenant("Other")
    badge = create_badge(client, acme.admin(), name="Acme live badge")
    url = f"{BADGES}/{badge['badge_id']}"

    for headers in (other.admin(), {"X-API-Key": acme.test_admin_key}):
        assert client.get(BADGES, headers=headers).json == {"badges": []}
        for method, body in (("GET", None), ("PATCH", {"name": "stolen"}), ("DELETE", None)):
            response = client.open(url, method=method, json=body, headers=headers)
            assert response.status_code == 404, (method, response.json)
            assert "Acme live badge" not in response.get_data(as_text=True)

    assert client.get(url, headers=acme.admin()).json == badge


def test_every_change_is_audit_logged_with_the_acting_key(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    badge = create_badge(client, tenant.admin(), **FULL_BADGE)
    url = f"{BADGES}/{badge['badge_id']}"
    client.patch(
        url, json={"points_reward": None, "criteria": {"type": "manual"}}, headers=tenant.admin()
    )
    client.patch(url, json={}, headers=tenant.admin())
    client.delete(url, headers=tenant.admin())

    entries = audit_entries(client, tenant.admin())

    assert [entry["action"] for entry in entries] == [
        "badge.deactivated",
        "badge.updated",
        "badge.created",
    ]
    assert {entry["target_id"] for entry in entries} == {badge["badge_id"]}
    assert {entry["actor"] for entry in entries} == {"api_key"}
    assert all(entry["actor_key_id"] for entry in entries)
    assert entries[2]["details"] == {"name": "Regular", "criteria": FULL_BADGE["criteria"]}
    assert entries[1]["details"] == {
        "changed": ["criteria", "points_reward"],
        "values": {"points_reward": None, "criteria": {"type": "manual"}},
    }
    assert audit_entries(client, {"X-API-Key": tenant.test_admin_key}) == []


def test_the_openapi_document_lists_the_badge_endpoints(client: FlaskClient) -> None:
    paths = client.get("/openapi.json").json["paths"]
    assert set(paths[BADGES]) == {"get", "post"}
    assert set(paths[f"{BADGES}/{{badge_id}}"]) == {"get", "patch", "delete"}
    operation = paths[f"{BADGES}/{{badge_id}}"]["delete"]
    assert operation["tags"] == ["badges"]
    assert "badge_not_found" in operation["responses"]["404"]["description"]
