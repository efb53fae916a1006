"""Console rewards pages: list, create, edit, deactivate, code upload (Flask client)."""

from __future__ import annotations

import io
import re
from datetime import date, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from app.models import AuditEntry, Reward
from app.rewards.history import claims_by_day, stock_history
from tests.builders import GAMIFY, create_reward
from tests.conftest import TenantKeys
from tests.console_support import session_csrf, sign_in


@pytest.fixture
def console(client: FlaskClient, tenant: TenantKeys) -> FlaskClient:
    assert sign_in(client, tenant.admin_key).status_code == 303
    return client


def _reward_form(csrf: str, **changes: Any) -> dict[str, Any]:
    form = {
        "csrf_token": csrf,
        "name": "Tote bag",
        "type": "coupon",
        "points_cost": "250",
        "max_claims_per_user": "2",
        "total_inventory": "",
        "is_active": "on",
        "available_from": "2030-01-01T00:00:00",
        "expires_at": "2030-06-30T12:30:00",
        "code_expiry_days": "30",
        "category": "merch",
        "slug": "tote-bag",
        "image_url": "",
        "media_type": "",
        "media": "",
        "description": "A bag",
        "config_code_prefix": "TOTE",
        "config_multiplier": "",
        "config_duration_days": "",
        "config": '{"shelf": "B2"}',
        "custom_attributes": '{"colour": "navy"}',
    }
    form.update(changes)
    return form


def _api_reward(client: FlaskClient, tenant: TenantKeys, reward_id: str) -> dict[str, Any]:
    answer = client.get(f"{GAMIFY}/admin/rewards/{reward_id}", headers=tenant.admin())
    assert answer.status_code == 200
    return dict(answer.json)


def _created_id(answer: Any) -> str:
    assert answer.status_code == 303, answer.text
    location = answer.headers["Location"]
    return str(location.split("/console/rewards/")[1].split("?")[0])


def test_a_reward_created_in_the_console_has_every_field_given(
    console: FlaskClient, tenant: TenantKeys
) -> None:
    answer = console.post("/console/rewards/new", data=_reward_form(session_csrf(console)))
    reward = _api_reward(console, tenant, _created_id(answer))

    assert reward["name"] == "Tote bag"
    assert reward["points_cost"] == 250
    assert reward["max_claims_per_user"] == 2
    assert reward["available_from"] == "2030-01-01T00:00:00Z"
    assert reward["expires_at"] == "2030-06-30T12:30:00Z"
    assert reward["config"] == {"shelf": "B2", "code_prefix": "TOTE"}
    assert reward["custom_attributes"] == {"colour": "navy"}
    assert reward["slug"] == "tote-bag"
    assert reward["total_inventory"] is None


def test_validation_errors_are_shown_beside_their_fields(console: FlaskClient) -> None:
    answer = console.post(
        "/console/rewards/new",
        data=_reward_form(
            session_csrf(console),
            name="",
            points_cost="lots",
            slug="Not A Slug",
            custom_attributes="[1]",
        ),
    )

    assert answer.status_code == 422
    html = answer.text
    for name in ("name", "points_cost", "slug", "custom_attributes"):
        assert f'id="error-{name}"' in html, name
        assert re.search(f'aria-describedby="[^"]*error-{name}"', html), name
    assert "must be a whole number" in html
    assert 'value="Not A Slug"' in html  # the form keeps what was typed


def test_a_taken_slug_is_shown_beside_the_slug(console: FlaskClient) -> None:
    csrf = session_csrf(console)
    _created_id(console.post("/console/rewards/new", data=_reward_form(csrf)))
    again = console.post("/console/rewards/new", data=_reward_form(csrf, name="Other"))
    assert again.status_code == 422
    assert 'id="error-slug"' in again.text


def test_editing_changes_only_what_was_edited_and_is_audited_via_the_console(
    console: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    csrf = session_csrf(console)
    reward_id = _created_id(console.post("/console/rewards/new", data=_reward_form(csrf)))
    page = console.get(f"/console/rewards/{reward_id}")
    assert page.status_code == 200
    assert 'value="2030-06-30T12:30:00"' in page.text

    edited = console.post(
        f"/console/rewards/{reward_id}",
        data=_reward_form(csrf, total_inventory="40", config_generate_when_exhausted="on"),
    )
    assert edited.status_code == 303

    reward = _api_reward(console, tenant, reward_id)
    assert reward["total_inventory"] == 40
    assert reward["config"]["generate_when_exhausted"] is True
    with session_factory() as session:
        entries = (
            session.query(AuditEntry)
            .filter_by(tenant_id=tenant.tenant_id, target_id=reward_id)
            .order_by(AuditEntry.created_at)
            .all()
        )
    assert [entry.action for entry in entries] == ["reward.created", "reward.updated"]
    assert entries[1].details == {"changed": ["config", "total_inventory"], "via": "console"}
    assert all(entry.actor_key_id is not None for entry in entries)


def test_deactivating_takes_the_reward_out(console: FlaskClient, tenant: TenantKeys) -> None:
    reward = create_reward(console, tenant.admin())
    answer = console.post(
        f"/console/rewards/{reward['id']}/deactivate", data={"csrf_token": session_csrf(console)}
    )
    assert answer.status_code == 303
    assert _api_reward(console, tenant, reward["id"])["is_active"] is False
    inactive = console.get("/console/rewards?is_active=false&reward_type=")
    assert reward["name"] in inactive.text


def test_the_reward_page_says_only_its_own_outcomes_whatever_the_query_string_holds(
    console: FlaskClient, tenant: TenantKeys
) -> None:
    reward = create_reward(console, tenant.admin())
    page = f"/console/rewards/{reward['id']}"
    assert "Reward deactivated." in console.get(f"{page}?saved=deactivated").text
    assert (
        "7 codes added, 2 duplicates skipped." in console.get(f"{page}?added=7&duplicates=2").text
    )

    forged = console.get(f"{page}?saved=hacked.+Call+us&added=Call+us&duplicates=now").text
    assert "Call us" not in forged and "hacked" not in forged
    assert 'role="status"' not in forged


def test_the_list_filters_by_type_and_refuses_a_bad_filter_with_a_page(
    console: FlaskClient, tenant: TenantKeys
) -> None:
    create_reward(console, tenant.admin(), name="Coupon one", type="coupon")
    create_reward(console, tenant.admin(), name="Mug", type="physical")
    listed = console.get("/console/rewards?reward_type=physical&is_active=")
    assert "Mug" in listed.text and "Coupon one" not in listed.text

    bad = console.get("/console/rewards?reward_type=spaceship")
    assert bad.status_code == 422 and bad.mimetype == "text/html"


def test_a_code_file_upload_answers_added_and_duplicates(
    console: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    reward = create_reward(console, tenant.admin())
    csrf = session_csrf(console)
    answer = console.post(
        f"/console/rewards/{reward['id']}/codes",
        data={"csrf_token": csrf, "codes_file": (io.BytesIO(b"code\nA1\nB2\nA1\n"), "codes.csv")},
        headers={"HX-Request": "true"},
        content_type="multipart/form-data",
    )

    assert answer.status_code == 200
    assert "<strong>2</strong> codes added" in answer.text
    assert "<strong>1</strong> duplicate skipped" in answer.text
    with session_factory() as session:
        entry = (
            session.query(AuditEntry)
            .filter_by(tenant_id=tenant.tenant_id, action="reward.codes_uploaded")
            .one()
        )
    assert entry.details == {"added": 2, "duplicates": 1, "via": "console"}
    page = console.get(f"/console/rewards/{reward['id']}")
    assert "Stock and claims, last 30 days" in page.text


def test_a_code_upload_without_a_file_or_token_does_nothing(
    console: FlaskClient, tenant: TenantKeys
) -> None:
    reward = create_reward(console, tenant.admin())
    no_token = console.post(
        f"/console/rewards/{reward['id']}/codes",
        data={"codes_file": (io.BytesIO(b"A1\n"), "codes.txt")},
        content_type="multipart/form-data",
    )
    assert no_token.status_code == 400
    no_file = console.post(
        f"/console/rewards/{reward['id']}/codes",
        data={"csrf_token": session_csrf(console)},
        headers={"HX-Request": "true"},
    )
    assert no_file.status_code == 422
    assert "Choose a file" in no_file.text
    assert _api_reward(console, tenant, reward["id"])["available_codes"] is None


@pytest.mark.parametrize(
    "path",
    ["/console/rewards/new", "/console/rewards/{id}", "/console/rewards/{id}/deactivate"],
)
def test_reward_forms_without_the_csrf_token_are_refused(
    console: FlaskClient, tenant: TenantKeys, path: str
) -> None:
    reward = create_reward(console, tenant.admin())
    answer = console.post(path.format(id=reward["id"]), data=_reward_form(""))
    assert answer.status_code == 400
    assert _api_reward(console, tenant, reward["id"])["is_active"] is True


def test_an_unknown_reward_is_a_404_page(console: FlaskClient) -> None:
    for path in ("/console/rewards/nope", "/console/rewards/00000000-0000-0000-0000-000000000000"):
        answer = console.get(path)
        assert answer.status_code == 404 and answer.mimetype == "text/html"


def _ring(counts: dict[date, int]) -> list[int]:
    ring = [0] * 30
    for day, count in counts.items():
        ring[day.toordinal() % 30] = count
    return ring


TODAY = date(2030, 3, 10)


@pytest.mark.parametrize(
    ("stock", "claims", "codes_added", "expected_left"),
    [
        # 10 pre-loaded codes left now; 3 claimed today, 2 yesterday: 15 two days ago.
        ({"codes_loaded": 20, "codes_allocated": 10}, {0: 3, 1: 2}, {}, {0: 10, 1: 13, 2: 15}),
        # 8 codes were uploaded yesterday: before it the stock was 8 lower.
        ({"codes_loaded": 20, "codes_allocated": 10}, {0: 1}, {1: 8}, {0: 10, 1: 11, 2: 3}),
        # Inventory-capped, no codes: uploads do not count.
        ({"total_inventory": 50, "claims_count": 5}, {0: 5}, {}, {0: 45, 1: 50}),
        # Unlimited.
        ({}, {0: 4}, {}, {0: None, 1: None}),
    ],
)
def test_stock_history_works_back_from_the_units_left_now(
    stock: dict[str, int],
    claims: dict[int, int],
    codes_added: dict[int, int],
    expected_left: dict[int, int | None],
) -> None:
    reward = Reward(
        codes_loaded=stock.get("codes_loaded", 0),
        codes_allocated=stock.get("codes_allocated", 0),
        claims_count=stock.get("claims_count", 0),
        total_inventory=stock.get("total_inventory"),
        config=None,
        recent_claims=_ring({TODAY - timedelta(days=back): n for back, n in claims.items()}),
        recent_claims_through=TODAY,
    )
    added = {TODAY - timedelta(days=back): n for back, n in codes_added.items()}

    history = stock_history(reward, TODAY, added)

    assert len(history) == 30 and history[-1].day == TODAY
    for back, left in expected_left.items():
        day = history[-1 - back]
        assert day.units_left == left, back
        assert day.claims == claims.get(back, 0)


def test_claims_older_than_the_ring_s_last_day_are_not_read_as_recent() -> None:
    stale = Reward(
        recent_claims=_ring({TODAY - timedelta(days=40): 7}),
        recent_claims_through=TODAY - timedelta(days=40),
    )
    assert set(claims_by_day(stale, TODAY).values()) == {0}
