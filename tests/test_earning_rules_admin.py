"""Earning rules (`/admin/earning-rules`): create, read, change and delete; the stored
shapes the rules read; validation; admin scope; tenant and environment isolation; the
audit log."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from app.engagement.rules import Rule
from app.models import EarningRuleUsage
from tests.builders import GAMIFY, create_earning_rule, fund_participant
from tests.conftest import TenantKeys

RULES = f"{GAMIFY}/admin/earning-rules"
VIEW_FIELDS = {
    "rule_id",
    "name",
    "action",
    "formula",
    "conditions",
    "max_points",
    "multipliers",
    "caps",
    "timezone",
    "active",
    "starts_at",
    "ends_at",
    "created_at",
    "updated_at",
}
FULL_RULE: dict[str, Any] = {
    "name": "Big weekend baskets",
    "action": "purchase",
    "formula": "floor(amount / 10) + items",
    "conditions": {"min_amount": 20, "equals": {"channel": "web", "first": True, "store": 7}},
    "max_points": 500,
    "multipliers": {
        "weekend": 2,
        "dates": [{"from": "2030-12-24", "to": "2030-12-26", "factor": 1.5}],
    },
    "caps": {"per_day": 1000, "total": 10000},
    "timezone": "Europe/Paris",
    "active": True,
    "starts_at": "2030-01-01T00:00:00+01:00",
    "ends_at": "2031-01-01T00:00:00+01:00",
}


def stored_rule(session_factory: sessionmaker[Session], rule_id: str) -> dict[str, Any]:
    with session_factory() as session:
        row = session.execute(
            text("SELECT * FROM earning_rules WHERE id = :id"), {"id": rule_id}
        ).one()
    return dict(row._mapping)


def audit_entries(client: FlaskClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = client.get(f"{GAMIFY}/admin/audit-log", headers=headers)
    assert response.status_code == 200, response.json
    return list(response.json["entries"])


def test_a_created_rule_answers_201_with_every_field_and_reads_back(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    rule = create_earning_rule(client, tenant.admin(), **FULL_RULE)

    assert set(rule) == VIEW_FIELDS
    uuid.UUID(rule["rule_id"])
    assert {name: rule[name] for name in FULL_RULE if "_at" not in name} == {
        name: value for name, value in FULL_RULE.items() if "_at" not in name
    }
    assert datetime.fromisoformat(rule["starts_at"]) == datetime(2029, 12, 31, 23, tzinfo=UTC)
    assert datetime.fromisoformat(rule["ends_at"]) == datetime(2030, 12, 31, 23, tzinfo=UTC)
    assert datetime.fromisoformat(rule["created_at"]).tzinfo is not None
    assert rule["updated_at"] is None
    assert client.get(f"{RULES}/{rule['rule_id']}", headers=tenant.admin()).json == rule


def test_a_rule_sent_with_only_its_required_fields_takes_the_defaults(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    rule = create_earning_rule(client, tenant.admin(), name="Logins", action="login", formula="5")
    assert {name: rule[name] for name in VIEW_FIELDS - {"rule_id", "created_at"}} == {
        "name": "Logins",
        "action": "login",
        "formula": "5",
        "conditions": None,
        "max_points": None,
        "multipliers": None,
        "caps": None,
        "timezone": "UTC",
        "active": True,
        "starts_at": None,
        "ends_at": None,
        "updated_at": None,
    }


def test_the_json_columns_are_stored_in_the_shapes_the_rules_read(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    rule = create_earning_rule(
        client,
        tenant.admin(),
        **{**FULL_RULE, "conditions": {"min_amount": 2.5}, "caps": {"per_day": 40}},
    )
    row = stored_rule(session_factory, rule["rule_id"])

    assert row["conditions"] == {"min_amount": 2.5}
    assert row["caps"] == {"per_day": 40}
    assert row["multipliers"] == FULL_RULE["multipliers"]
    assert row["timezone"] == "Europe/Paris"
    # The rules read the row as stored: 2x on a Paris Saturday, 1.5x more at Christmas.
    decided = Rule.of(row)
    saturday = datetime(2030, 12, 14, 12, tzinfo=UTC)
    christmas_eve = datetime(2030, 12, 24, 12, tzinfo=UTC)  # a Tuesday
    assert decided.base_points({"amount": 100, "items": 2}, saturday) == 24
    assert decided.base_points({"amount": 100, "items": 2}, christmas_eve) == 18
    assert decided.base_points({"amount": 2, "items": 2}, christmas_eve) is None
    assert decided.per_day == 40 and decided.total is None


def test_the_list_is_oldest_first_and_filters_by_action_and_active(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    first = create_earning_rule(client, tenant.admin(), name="one", action="purchase")
    second = create_earning_rule(client, tenant.admin(), name="two", action="review", active=False)
    third = create_earning_rule(client, tenant.admin(), name="three", action="purchase")

    def listed(query: str = "") -> list[str]:
        response = client.get(f"{RULES}{query}", headers=tenant.admin())
        assert response.status_code == 200, response.json
        assert set(response.json) == {"earning_rules"}
        return [rule["rule_id"] for rule in response.json["earning_rules"]]

    ids = [first["rule_id"], second["rule_id"], third["rule_id"]]
    assert listed() == ids
    assert listed("?action=purchase") == [ids[0], ids[2]]
    assert listed("?active=false") == [ids[1]]
    assert listed("?active=true&action=review") == []
    assert listed("?action=nothing") == []
    assert client.get(f"{RULES}?active=maybe", headers=tenant.admin()).status_code == 422


def test_a_patch_changes_only_the_fields_sent(client: FlaskClient, tenant: TenantKeys) -> None:
    rule = create_earning_rule(client, tenant.admin(), **FULL_RULE)
    url = f"{RULES}/{rule['rule_id']}"

    patched = client.patch(
        url, json={"formula": "amount", "caps": {"total": 50}}, headers=tenant.admin()
    )

    assert patched.status_code == 200, patched.json
    assert patched.json["formula"] == "amount"
    assert patched.json["caps"] == {"total": 50}
    unchanged = VIEW_FIELDS - {"formula", "caps", "updated_at"}
    assert {name: patched.json[name] for name in unchanged} == {
        name: rule[name] for name in unchanged
    }
    assert patched.json["updated_at"] is not None
    assert client.get(url, headers=tenant.admin()).json == patched.json


def test_a_patch_clears_the_optional_fields_with_null(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    rule = create_earning_rule(client, tenant.admin(), **FULL_RULE)
    cleared = {
        name: None
        for name in ("conditions", "max_points", "multipliers", "caps", "starts_at", "ends_at")
    }
    patched = client.patch(f"{RULES}/{rule['rule_id']}", json=cleared, headers=tenant.admin())
    assert patched.status_code == 200, patched.json
    assert {name: patched.json[name] for name in cleared} == cleared
    row = stored_rule(session_factory, rule["rule_id"])
    assert {name: row[name] for name in cleared} == cleared


@pytest.mark.parametrize("name", ["name", "action", "formula", "timezone", "active"])
def test_a_patch_cannot_clear_a_required_field(
    client: FlaskClient, tenant: TenantKeys, name: str
) -> None:
    rule = create_earning_rule(client, tenant.admin())
    response = client.patch(f"{RULES}/{rule['rule_id']}", json={name: None}, headers=tenant.admin())
    assert response.status_code == 422, response.json
    assert response.json["errors"][0]["loc"][:2] == ["body", name]


def test_a_patch_is_checked_against_the_stored_fields_it_leaves(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    rule = create_earning_rule(
        client, tenant.admin(), starts_at="2030-06-01T00:00:00Z", ends_at="2030-07-01T00:00:00Z"
    )
    url = f"{RULES}/{rule['rule_id']}"

    too_early = client.patch(url, json={"ends_at": "2030-05-01T00:00:00Z"}, headers=tenant.admin())
    too_late = client.patch(url, json={"starts_at": "2030-07-01T00:00:00Z"}, headers=tenant.admin())

    for refused in (too_early, too_late):
        assert refused.status_code == 422, refused.json
        assert refused.json["code"] == "validation_error"
        assert "ends_at must be after starts_at" in refused.json["errors"][0]["msg"]
    assert client.get(url, headers=tenant.admin()).json == rule
    moved = client.patch(
        url,
        json={"starts_at": "2030-08-01T00:00:00Z", "ends_at": "2030-09-01T00:00:00Z"},
        headers=tenant.admin(),
    )
    assert moved.status_code == 200, moved.json
    assert audit_entries(client, tenant.admin())[0]["action"] == "earning_rule.updated"
    assert len(audit_entries(client, tenant.admin())) == 2  # created, and the one change


def test_an_empty_patch_answers_the_rule_and_changes_nothing(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    rule = create_earning_rule(client, tenant.admin())
    response = client.patch(f"{RULES}/{rule['rule_id']}", json={}, headers=tenant.admin())
    assert (response.status_code, response.json) == (200, rule)
    assert [entry["action"] for entry in audit_entries(client, tenant.admin())] == [
        "earning_rule.created"
    ]


def test_a_deleted_rule_is_gone_its_usage_with_it_and_the_ledger_keeps_its_id(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    rule = create_earning_rule(client, tenant.admin())
    kept = create_earning_rule(client, tenant.admin(), name="kept")
    fund_participant(session_factory, tenant.tenant_id, "alice", 10)
    with session_factory.begin() as session:
        # As the action pipeline leaves them: a credited line naming the rule, and usage.
        line = session.execute(
            text(
                "UPDATE ledger_entries SET rule_id = :rule WHERE tenant_id = :tenant"
                " RETURNING id, participant_pk"
            ),
            {"rule": rule["rule_id"], "tenant": tenant.tenant_id},
        ).one()
        for rule_id in (rule["rule_id"], kept["rule_id"]):
            session.add(
                EarningRuleUsage(
                    rule_id=uuid.UUID(rule_id),
                    participant_pk=line.participant_pk,
                    day=datetime(2030, 1, 1).date(),
                    points=10,
                )
            )
    url = f"{RULES}/{rule['rule_id']}"

    deleted = client.delete(url, headers=tenant.admin())

    assert (deleted.status_code, deleted.get_data()) == (204, b"")
    assert client.get(url, headers=tenant.admin()).status_code == 404
    assert client.delete(url, headers=tenant.admin()).status_code == 404
    listed = client.get(RULES, headers=tenant.admin()).json["earning_rules"]
    assert [entry["rule_id"] for entry in listed] == [kept["rule_id"]]
    with session_factory() as session:
        assert session.execute(
            text("SELECT rule_id FROM ledger_entries WHERE id = :id"), {"id": line.id}
        ).scalar_one() == uuid.UUID(rule["rule_id"])
        usage = session.execute(
            text("SELECT rule_id FROM earning_rule_usage WHERE participant_pk = :pk"),
            {"pk": line.participant_pk},
        ).scalars()
        assert list(usage) == [uuid.UUID(kept["rule_id"])]


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
        ({"action": ""}, ["body", "action"], "at least 1 character"),
        ({"action": "x" * 101}, ["body", "action"], "at most 100 characters"),
        ({"formula": "2 ** amount"}, ["body", "formula"], "operator ** is not allowed"),
        ({"formula": "amount.real"}, ["body", "formula"], "attribute access"),
        ({"formula": "__import__('os')"}, ["body", "formula"], "only min, max, floor, round"),
        ({"formula": "amount +"}, ["body", "formula"], "not a valid expression"),
        ({"formula": ""}, ["body", "formula"], "at least 1 character"),
        ({"formula": 10}, ["body", "formula"], "valid string"),
        ({"conditions": {"min_amount": -1}}, ["body", "conditions"], "greater than or equal"),
        ({"conditions": {"min_amount": "5"}}, ["body", "conditions"], "valid"),
        ({"conditions": {"max_amount": 5}}, ["body", "conditions", "max_amount"], "Extra"),
        ({"conditions": {"equals": {"tags": ["a"]}}}, ["body", "conditions", "equals"], "valid"),
        ({"conditions": {"equals": {"shop": None}}}, ["body", "conditions", "equals"], "valid"),
        ({"conditions": []}, ["body", "conditions"], "should be an object"),
        ({"max_points": -1}, ["body", "max_points"], "greater than or equal to 0"),
        ({"max_points": 1.5}, ["body", "max_points"], "valid integer"),
        ({"max_points": True}, ["body", "max_points"], "valid integer"),
        ({"multipliers": {"weekend": 0}}, ["body", "multipliers", "weekend"], "greater than 0"),
        ({"multipliers": {"birthday": 2}}, ["body", "multipliers", "birthday"], "Extra"),
        ({"multipliers": {"holiday": 0}}, ["body", "multipliers", "holiday"], "greater than 0"),
        (
            {"multipliers": {"dates": [{"from": "2030-02-01", "to": "2030-01-01", "factor": 2}]}},
            ["body", "multipliers", "dates", 0],
            "from must not be after to",
        ),
        (
            {"multipliers": {"dates": [{"from": "2030-01-01", "to": "2030-01-02", "factor": 0}]}},
            ["body", "multipliers", "dates", 0, "factor"],
            "greater than 0",
        ),
        (
            {"multipliers": {"dates": [{"from": "01/02/2030", "to": "2030-01-02", "factor": 2}]}},
            ["body", "multipliers", "dates", 0, "from"],
            "valid date",
        ),
        (
            {"multipliers": {"dates": [{"from": "2030-01-01", "factor": 2}]}},
            ["body", "multipliers", "dates", 0, "to"],
            "Field required",
        ),
        ({"caps": {"per_day": 0}}, ["body", "caps", "per_day"], "greater than or equal to 1"),
        ({"caps": {"total": 0}}, ["body", "caps", "total"], "greater than or equal to 1"),
        ({"caps": {"weekly": 5}}, ["body", "caps", "weekly"], "Extra"),
        ({"timezone": "Mars/Olympus"}, ["body", "timezone"], "IANA time zone"),
        ({"timezone": "../etc/passwd"}, ["body", "timezone"], "IANA time zone"),
        ({"timezone": ""}, ["body", "timezone"], "at least 1 character"),
        ({"active": "yes"}, ["body", "active"], "valid boolean"),
        ({"starts_at": "2030-01-01T00:00:00"}, ["body", "starts_at"], "timezone"),
        ({"ends_at": "tomorrow"}, ["body", "ends_at"], "valid datetime"),
        (
            {"starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-02T00:00:00Z"},
            ["body"],
            "ends_at must be after starts_at",
        ),
        ({"points": 5}, ["body", "points"], "Extra"),
    ],
)
def test_a_rule_with_a_bad_field_is_refused_naming_the_field_and_the_problem(
    client: FlaskClient, tenant: TenantKeys, changes: dict[str, Any], loc: list[Any], message: str
) -> None:
    body = {"name": "Purchases", "action": "purchase", "formula": "amount", **changes}
    created = client.post(RULES, json=body, headers=tenant.admin())
    created_loc, created_message = _field_error(created)
    assert created_loc[: len(loc)] == loc
    assert message in created_message

    rule = create_earning_rule(client, tenant.admin())
    patched = client.patch(f"{RULES}/{rule['rule_id']}", json=changes, headers=tenant.admin())
    patched_loc, patched_message = _field_error(patched)
    assert patched_loc[: len(loc)] == loc
    assert message in patched_message
    assert client.get(RULES, headers=tenant.admin()).json["earning_rules"] == [rule]


def test_a_rule_without_its_required_fields_is_refused_naming_each(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    response = client.post(RULES, json={}, headers=tenant.admin())
    assert response.status_code == 422
    assert {tuple(error["loc"]) for error in response.json["errors"]} == {
        ("body", "name"),
        ("body", "action"),
        ("body", "formula"),
    }


@pytest.mark.parametrize("rule_id", ["3b9f5a0e-8c1d-4f7e-9a2b-6c4d8e1f0a7b", "not-a-uuid", "1"])
def test_an_unknown_or_malformed_rule_id_answers_earning_rule_not_found(
    client: FlaskClient, tenant: TenantKeys, rule_id: str
) -> None:
    for method, body in (("GET", None), ("PATCH", {"name": "x"}), ("DELETE", None)):
        response = client.open(
            f"{RULES}/{rule_id}", method=method, json=body, headers=tenant.admin()
        )
        assert response.status_code == 404, (method, response.json)
        assert response.json["code"] == "earning_rule_not_found"


def test_earning_rules_are_admin_only(client: FlaskClient, tenant: TenantKeys) -> None:
    rule = create_earning_rule(client, tenant.admin())
    url = f"{RULES}/{rule['rule_id']}"
    for method, path, body in (
        ("GET", RULES, None),
        ("POST", RULES, {"name": "n", "action": "a", "formula": "1"}),
        ("GET", url, None),
        ("PATCH", url, {"name": "stolen"}),
        ("DELETE", url, None),
    ):
        response = client.open(path, method=method, json=body, headers=tenant.participant())
        assert response.status_code == 403, (method, path)
        assert response.json["code"] == "forbidden"
    assert client.get(url, headers=tenant.admin()).json == rule
    assert len(client.get(RULES, headers=tenant.admin()).json["earning_rules"]) == 1


def test_each_tenant_and_environment_sees_and_changes_only_its_own_rules(
    client: FlaskClient, make_tenant: Any
) -> None:
    acme, other = make_tenant("Acme"), make_tenant("Other")
    rule = create_earning_rule(client, acme.admin(), name="Acme live rule")
    url = f"{RULES}/{rule['rule_id']}"
    outsiders = (other.admin(), {"X-API-Key": acme.test_admin_key})

    for headers in outsiders:
        assert client.get(RULES, headers=headers).json == {"earning_rules": []}
        for method, body in (("GET", None), ("PATCH", {"name": "stolen"}), ("DELETE", None)):
            response = client.open(url, method=method, json=body, headers=headers)
            assert response.status_code == 404, (method, response.json)
            assert "Acme live rule" not in response.get_data(as_text=True)

    create_earning_rule(client, {"X-API-Key": acme.test_admin_key}, name="Acme test rule")
    assert client.get(url, headers=acme.admin()).json == rule
    assert client.get(RULES, headers=acme.admin()).json == {"earning_rules": [rule]}


def test_every_change_is_audit_logged_with_the_acting_key(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    rule = create_earning_rule(client, tenant.admin(), name="Reviews", action="review")
    url = f"{RULES}/{rule['rule_id']}"
    client.patch(
        url,
        json={"max_points": 50, "starts_at": "2030-01-01T00:00:00Z", "conditions": None},
        headers=tenant.admin(),
    )
    client.delete(url, headers=tenant.admin())

    entries = audit_entries(client, tenant.admin())

    assert [entry["action"] for entry in entries] == [
        "earning_rule.deleted",
        "earning_rule.updated",
        "earning_rule.created",
    ]
    assert {entry["target_id"] for entry in entries} == {rule["rule_id"]}
    assert {entry["actor"] for entry in entries} == {"api_key"}
    assert all(entry["actor_key_id"] for entry in entries)
    assert entries[2]["details"] == {"name": "Reviews", "action": "review"}
    assert entries[1]["details"] == {
        "changed": ["conditions", "max_points", "starts_at"],
        "values": {"max_points": 50, "starts_at": "2030-01-01T00:00:00Z", "conditions": None},
    }
    assert entries[0]["details"] == {"name": "Reviews", "action": "review"}
    assert audit_entries(client, {"X-API-Key": tenant.test_admin_key}) == []


def test_a_refused_rule_is_neither_stored_nor_audit_logged(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    refused = client.post(
        RULES,
        json={"name": "n", "action": "a", "formula": "amount ** 2"},
        headers=tenant.admin(),
    )
    assert refused.status_code == 422
    assert client.get(RULES, headers=tenant.admin()).json == {"earning_rules": []}
    assert audit_entries(client, tenant.admin()) == []


def test_the_openapi_document_lists_the_earning_rule_endpoints(client: FlaskClient) -> None:
    paths = client.get("/openapi.json").json["paths"]
    assert set(paths[RULES]) == {"get", "post"}
    assert set(paths[f"{RULES}/{{rule_id}}"]) == {"get", "patch", "delete"}
    operation = paths[f"{RULES}/{{rule_id}}"]["patch"]
    assert operation["tags"] == ["earning-rules"]
    assert "earning_rule_not_found" in operation["responses"]["404"]["description"]
    assert "204" in paths[f"{RULES}/{{rule_id}}"]["delete"]["responses"]
