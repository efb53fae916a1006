"""Program settings (`/admin/program`): defaults, partial changes, validation, admin scope,
tenant and environment isolation, the audit log, and what the write paths read."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from app.models import Environment
from app.points.program import DEFAULT_PROGRAM, Program, load_program
from tests.builders import GAMIFY
from tests.conftest import TenantKeys

PROGRAM = f"{GAMIFY}/admin/program"
DEFAULTS = {
    "points_expiry_days": None,
    "expiring_soon_days": 30,
    "tier_qualification": {"basis": "lifetime", "window_days": None},
    "holidays": [],
    "updated_at": None,
}


def read_program(client: FlaskClient, headers: dict[str, str]) -> dict[str, Any]:
    response = client.get(PROGRAM, headers=headers)
    assert response.status_code == 200, response.json
    return dict(response.json)


def change_program(client: FlaskClient, headers: dict[str, str], **changes: Any) -> Any:
    return client.patch(PROGRAM, json=changes, headers=headers)


def audit_entries(client: FlaskClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = client.get(f"{GAMIFY}/admin/audit-log", headers=headers)
    assert response.status_code == 200, response.json
    return list(response.json["entries"])


def test_a_program_never_changed_answers_the_defaults(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    assert read_program(client, tenant.admin()) == DEFAULTS


def test_a_patch_changes_only_the_fields_sent_and_reads_back(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    first = change_program(client, tenant.admin(), points_expiry_days=365)
    assert first.status_code == 200, first.json
    assert set(first.json) == {
        "points_expiry_days",
        "expiring_soon_days",
        "tier_qualification",
        "holidays",
        "updated_at",
    }
    assert (first.json["points_expiry_days"], first.json["expiring_soon_days"]) == (365, 30)
    assert datetime.fromisoformat(first.json["updated_at"]).tzinfo is not None

    second = change_program(client, tenant.admin(), expiring_soon_days=7)
    assert (second.json["points_expiry_days"], second.json["expiring_soon_days"]) == (365, 7)
    assert second.json["updated_at"] >= first.json["updated_at"]
    assert read_program(client, tenant.admin()) == second.json


def test_points_expiry_days_set_to_null_means_points_never_expire_again(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    change_program(client, tenant.admin(), points_expiry_days=90, expiring_soon_days=10)
    cleared = change_program(client, tenant.admin(), points_expiry_days=None)
    assert cleared.status_code == 200, cleared.json
    assert (cleared.json["points_expiry_days"], cleared.json["expiring_soon_days"]) == (None, 10)


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"points_expiry_days": 1}, 200),
        ({"points_expiry_days": 36500}, 200),
        ({"points_expiry_days": 0}, 422),
        ({"points_expiry_days": 36501}, 422),
        ({"points_expiry_days": "30"}, 422),
        ({"points_expiry_days": 30.0}, 422),
        ({"points_expiry_days": True}, 422),
        ({"expiring_soon_days": 1}, 200),
        ({"expiring_soon_days": 365}, 200),
        ({"expiring_soon_days": 0}, 422),
        ({"expiring_soon_days": 366}, 422),
        ({"expiring_soon_days": None}, 422),
    ],
)
def test_program_fields_are_integers_within_their_bounds(
    client: FlaskClient, tenant: TenantKeys, changes: dict[str, Any], status: int
) -> None:
    response = change_program(client, tenant.admin(), **changes)
    assert response.status_code == status, response.json
    if status == 422:
        assert response.json["code"] == "validation_error"
        assert response.json["errors"][0]["loc"] == ["body", *changes]


def test_unknown_fields_are_refused(client: FlaskClient, tenant: TenantKeys) -> None:
    response = change_program(client, tenant.admin(), tier_basis="rolling", expiring_soon_days=5)
    assert response.status_code == 422
    assert response.json["code"] == "validation_error"
    assert [error["loc"] for error in response.json["errors"]] == [["body", "tier_basis"]]


def test_tier_qualification_is_lifetime_or_a_rolling_window(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    rolling = change_program(
        client, tenant.admin(), tier_qualification={"basis": "rolling", "window_days": 365}
    )
    assert rolling.status_code == 200, rolling.json
    assert rolling.json["tier_qualification"] == {"basis": "rolling", "window_days": 365}
    for refused in (
        {"basis": "rolling"},
        {"basis": "lifetime", "window_days": 30},
        {"basis": "rolling", "window_days": 0},
        {"basis": "rolling", "window_days": 3651},
        {"basis": "monthly"},
        None,
    ):
        response = change_program(client, tenant.admin(), tier_qualification=refused)
        assert response.status_code == 422, (refused, response.json)
    back = change_program(client, tenant.admin(), tier_qualification={"basis": "lifetime"})
    assert back.json["tier_qualification"] == {"basis": "lifetime", "window_days": None}


def test_holidays_are_iso_dates_kept_sorted_and_each_once(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    sent = ["2026-12-25", "2026-01-01", "2026-12-25", "2027-01-01"]
    response = change_program(client, tenant.admin(), holidays=sent)
    assert response.status_code == 200, response.json
    assert response.json["holidays"] == ["2026-01-01", "2026-12-25", "2027-01-01"]
    assert read_program(client, tenant.admin())["holidays"] == response.json["holidays"]
    kept = change_program(client, tenant.admin(), expiring_soon_days=9)
    assert kept.json["holidays"] == response.json["holidays"]
    cleared = change_program(client, tenant.admin(), holidays=[])
    assert cleared.json["holidays"] == []


@pytest.mark.parametrize(
    "holidays",
    [
        ["2026/12/25"],
        ["25-12-2026"],
        ["2026-02-30"],
        ["2026-12-25T00:00:00"],
        [20261225],
        [0],
        [None],
        None,
        "2026-12-25",
        [f"2026-{month:02}-01" for month in range(1, 13)] * 31,  # 372 dates
    ],
)
def test_holidays_that_are_not_a_list_of_at_most_366_iso_dates_are_refused(
    client: FlaskClient, tenant: TenantKeys, holidays: Any
) -> None:
    response = change_program(client, tenant.admin(), holidays=holidays)
    assert response.status_code == 422, response.json
    assert response.json["errors"][0]["loc"][:2] == ["body", "holidays"]
    assert read_program(client, tenant.admin()) == DEFAULTS


def test_a_refused_patch_changes_nothing_and_records_nothing(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    refused = change_program(client, tenant.admin(), points_expiry_days=90, expiring_soon_days=0)
    assert refused.status_code == 422
    assert read_program(client, tenant.admin()) == DEFAULTS
    assert audit_entries(client, tenant.admin()) == []


def test_the_program_is_admin_only(client: FlaskClient, tenant: TenantKeys) -> None:
    forbidden = {
        "code": "forbidden",
        "type": "forbidden",
        "detail": "API key is missing the admin or gamify:admin scope",
        "status": 403,
    }
    read = client.get(PROGRAM, headers=tenant.participant())
    changed = change_program(client, tenant.participant(), points_expiry_days=30)
    assert (read.status_code, read.json) == (403, forbidden)
    assert (changed.status_code, changed.json) == (403, forbidden)
    assert read_program(client, tenant.admin()) == DEFAULTS


def test_each_tenant_and_environment_has_its_own_program(
    client: FlaskClient, make_tenant: Any
) -> None:
    acme, other = make_tenant("Acme"), make_tenant("Other")
    acme_test = {"X-API-Key": acme.test_admin_key}
    change_program(client, acme.admin(), points_expiry_days=365)
    change_program(client, acme_test, expiring_soon_days=3)

    assert read_program(client, acme.admin())["points_expiry_days"] == 365
    assert read_program(client, acme.admin())["expiring_soon_days"] == 30
    assert read_program(client, acme_test)["points_expiry_days"] is None
    assert read_program(client, acme_test)["expiring_soon_days"] == 3
    assert read_program(client, other.admin()) == DEFAULTS
    assert read_program(client, {"X-API-Key": other.test_admin_key}) == DEFAULTS


def test_a_change_is_audit_logged_with_its_values_and_the_acting_key(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    change_program(client, tenant.admin(), points_expiry_days=180, expiring_soon_days=14)
    change_program(client, tenant.admin(), points_expiry_days=None)

    entries = audit_entries(client, tenant.admin())

    assert [entry["action"] for entry in entries] == ["program.updated", "program.updated"]
    assert {entry["target_id"] for entry in entries} == {str(tenant.tenant_id)}
    assert {entry["actor"] for entry in entries} == {"api_key"}
    assert all(entry["actor_key_id"] for entry in entries)
    assert entries[0]["details"] == {
        "changed": ["points_expiry_days"],
        "values": {"points_expiry_days": None},
    }
    assert entries[1]["details"] == {
        "changed": ["expiring_soon_days", "points_expiry_days"],
        "values": {"points_expiry_days": 180, "expiring_soon_days": 14},
    }
    assert audit_entries(client, {"X-API-Key": tenant.test_admin_key}) == []


def test_an_empty_patch_answers_the_program_and_records_nothing(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    response = change_program(client, tenant.admin())
    assert (response.status_code, response.json) == (200, DEFAULTS)
    assert audit_entries(client, tenant.admin()) == []


def test_load_program_gives_the_write_paths_the_stored_settings_or_the_defaults(
    client: FlaskClient, make_tenant: Any, session_factory: sessionmaker[Session]
) -> None:
    acme, other = make_tenant("Acme"), make_tenant("Other")
    change_program(client, acme.admin(), points_expiry_days=365, expiring_soon_days=7)

    with session_factory() as session:
        assert load_program(session, acme.tenant_id, Environment.LIVE.value) == Program(365, 7)
        assert load_program(session, acme.tenant_id, Environment.TEST.value) == DEFAULT_PROGRAM
        assert load_program(session, other.tenant_id, Environment.LIVE.value) == DEFAULT_PROGRAM
    assert DEFAULT_PROGRAM == Program(
        points_expiry_days=None, expiring_soon_days=30, tier_window_days=None, holidays=()
    )
    change_program(client, other.admin(), holidays=["2026-12-25", "2026-07-04"])
    with session_factory() as session:
        holidays = load_program(session, other.tenant_id, Environment.LIVE.value).holidays
    assert holidays == (date(2026, 7, 4), date(2026, 12, 25))
