"""Admin-scope reward definitions and code inventory (contract: Bricqs Rewards API)."""

from __future__ import annotations

import uuid
from typing import Any

from flask.testing import FlaskClient

from tests.builders import GAMIFY, create_reward, upload_codes
from tests.conftest import TenantKeys


def test_create_reward_answers_201_with_the_definition(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    reward = create_reward(
        client,
        tenant.admin(),
        description="10% discount on next purchase",
        points_cost=500,
        max_claims_per_user=1,
        total_inventory=100,
        config={"code_prefix": "SAVE10-"},
    )
    assert reward["name"] == "10% Off Coupon"
    assert reward["type"] == "coupon"
    assert reward["points_cost"] == 500
    assert reward["total_inventory"] == 100
    assert reward["available_codes"] == 100
    assert reward["config"] == {"code_prefix": "SAVE10-"}
    assert reward["is_active"] is True
    assert reward["lookup_code"].startswith("gamify_") and len(reward["lookup_code"]) == 15
    int(reward["lookup_code"].removeprefix("gamify_"), 16)
    uuid.UUID(reward["id"])
    assert reward["updated_at"] is None


def test_create_reward_rejects_out_of_range_fields_with_validation_error(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    for bad in (
        {"name": "", "type": "coupon"},
        {"name": "x" * 201, "type": "coupon"},
        {"name": "ok", "type": "cashback"},
        {"name": "ok", "type": "coupon", "points_cost": -1},
        {"name": "ok", "type": "coupon", "max_claims_per_user": 0},
        {"name": "ok", "type": "coupon", "total_inventory": -1},
        {"name": "ok", "type": "coupon", "unknown_field": 1},
        {"name": "ok", "type": "coupon", "expires_at": "2030-01-01T00:00:00"},
        {"name": "ok", "type": "points_multiplier"},
    ):
        response = client.post(f"{GAMIFY}/admin/rewards", json=bad, headers=tenant.admin())
        assert response.status_code == 422, bad
        assert response.json["code"] == "validation_error"
        assert response.json["type"] == "validation_error"


def test_validation_errors_list_each_failing_field(client: FlaskClient, tenant: TenantKeys) -> None:
    response = client.post(f"{GAMIFY}/admin/rewards", json={"type": "nope"}, headers=tenant.admin())
    assert response.status_code == 422
    locations = {tuple(error["loc"]) for error in response.json["errors"]}
    assert ("body", "name") in locations
    assert ("body", "type") in locations


def test_admin_endpoints_refuse_a_participant_key_with_forbidden(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    response = client.get(f"{GAMIFY}/admin/rewards", headers=tenant.participant())
    assert response.status_code == 403
    assert response.json == {
        "code": "forbidden",
        "type": "forbidden",
        "detail": "API key is missing the admin or gamify:admin scope",
        "status": 403,
    }


def test_gamify_admin_scope_is_an_admin_scope(client: FlaskClient, tenant: TenantKeys) -> None:
    response = client.get(f"{GAMIFY}/admin/rewards", headers={"X-API-Key": tenant.test_admin_key})
    assert response.status_code == 200


def test_get_patch_and_delete_a_reward(client: FlaskClient, tenant: TenantKeys) -> None:
    reward = create_reward(client, tenant.admin(), points_cost=500)
    url = f"{GAMIFY}/admin/rewards/{reward['id']}"
    assert client.get(url, headers=tenant.admin()).json == reward

    patched = client.patch(
        url, json={"points_cost": None, "name": "Renamed"}, headers=tenant.admin()
    )
    assert patched.status_code == 200
    assert patched.json["points_cost"] is None
    assert patched.json["name"] == "Renamed"
    assert patched.json["max_claims_per_user"] == 1  # untouched
    assert patched.json["updated_at"] is not None

    deleted = client.delete(url, headers=tenant.admin())
    assert deleted.status_code == 200
    assert deleted.json == {"message": "Reward deactivated"}
    assert client.get(url, headers=tenant.admin()).json["is_active"] is False
    catalog = client.get(f"{GAMIFY}/rewards", headers=tenant.participant()).json
    assert reward["id"] not in [entry["id"] for entry in catalog["rewards"]]


def test_reward_type_cannot_change_after_creation(client: FlaskClient, tenant: TenantKeys) -> None:
    reward = create_reward(client, tenant.admin())
    url = f"{GAMIFY}/admin/rewards/{reward['id']}"
    response = client.patch(url, json={"type": "voucher"}, headers=tenant.admin())
    assert response.status_code == 422
    assert response.json["detail"] == "The reward type cannot be changed after creation"
    same = client.patch(url, json={"type": "coupon", "name": "Same type"}, headers=tenant.admin())
    assert same.status_code == 200
    assert same.json["type"] == "coupon"


def test_patch_rejects_null_for_required_fields(client: FlaskClient, tenant: TenantKeys) -> None:
    reward = create_reward(client, tenant.admin())
    response = client.patch(
        f"{GAMIFY}/admin/rewards/{reward['id']}", json={"name": None}, headers=tenant.admin()
    )
    assert response.status_code == 422


def test_unknown_or_malformed_reward_ids_answer_reward_not_found(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    for reward_id in (str(uuid.uuid4()), "not-a-uuid"):
        for method in ("get", "patch", "delete"):
            kwargs: dict[str, Any] = {"json": {"name": "x"}} if method == "patch" else {}
            response = getattr(client, method)(
                f"{GAMIFY}/admin/rewards/{reward_id}", headers=tenant.admin(), **kwargs
            )
            assert response.status_code == 404
            assert response.json["code"] == "reward_not_found"


def test_admin_list_filters_and_paginates(client: FlaskClient, tenant: TenantKeys) -> None:
    for index in range(3):
        create_reward(client, tenant.admin(), name=f"coupon {index}")
    voucher = create_reward(client, tenant.admin(), name="voucher", type="voucher")
    client.delete(f"{GAMIFY}/admin/rewards/{voucher['id']}", headers=tenant.admin())

    everything = client.get(f"{GAMIFY}/admin/rewards", headers=tenant.admin()).json
    assert everything["total"] == 4
    assert everything["page"] == 1 and everything["page_size"] == 50

    page = client.get(f"{GAMIFY}/admin/rewards?page=2&page_size=3", headers=tenant.admin()).json
    assert page["total"] == 4 and len(page["items"]) == 1 and page["page"] == 2

    inactive = client.get(f"{GAMIFY}/admin/rewards?is_active=false", headers=tenant.admin()).json
    assert [item["id"] for item in inactive["items"]] == [voucher["id"]]

    coupons = client.get(f"{GAMIFY}/admin/rewards?reward_type=coupon", headers=tenant.admin()).json
    assert coupons["total"] == 3

    too_big = client.get(f"{GAMIFY}/admin/rewards?page_size=101", headers=tenant.admin())
    assert too_big.status_code == 422


def test_code_upload_counts_added_and_duplicates(client: FlaskClient, tenant: TenantKeys) -> None:
    reward = create_reward(client, tenant.admin())
    first = upload_codes(client, tenant.admin(), reward["id"], ["A", "B", "C", "A"])
    assert first == {"added": 3, "duplicates": 1, "available_codes": 3}
    second = upload_codes(client, tenant.admin(), reward["id"], ["C", "D"])
    assert second == {"added": 1, "duplicates": 1, "available_codes": 4}


def test_code_upload_accepts_csv_and_plain_text(client: FlaskClient, tenant: TenantKeys) -> None:
    reward = create_reward(client, tenant.admin())
    url = f"{GAMIFY}/admin/rewards/{reward['id']}/codes"
    csv_upload = client.post(
        url, data="code,batch\nX1,a\nX2,a\n\n", content_type="text/csv", headers=tenant.admin()
    )
    assert csv_upload.json == {"added": 2, "duplicates": 0, "available_codes": 2}
    text_upload = client.post(
        url, data="X2\n  X3  \n\nX4\n", content_type="text/plain", headers=tenant.admin()
    )
    assert text_upload.json == {"added": 2, "duplicates": 1, "available_codes": 4}


def test_code_upload_takes_100000_codes_in_one_call(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    reward = create_reward(client, tenant.admin())
    codes = "\n".join(f"BULK-{index:06d}" for index in range(100_000))
    response = client.post(
        f"{GAMIFY}/admin/rewards/{reward['id']}/codes",
        data=codes,
        content_type="text/plain",
        headers=tenant.admin(),
    )
    assert response.status_code == 200
    assert response.json == {"added": 100_000, "duplicates": 0, "available_codes": 100_000}


def test_code_upload_refuses_more_than_100000_codes(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    reward = create_reward(client, tenant.admin())
    codes = "\n".join(f"C{index}" for index in range(100_001))
    response = client.post(
        f"{GAMIFY}/admin/rewards/{reward['id']}/codes",
        data=codes,
        content_type="text/plain",
        headers=tenant.admin(),
    )
    assert response.status_code == 422
    assert response.json["detail"] == "At most 100000 codes per upload"


def test_code_upload_rejects_bad_input(client: FlaskClient, tenant: TenantKeys) -> None:
    reward = create_reward(client, tenant.admin())
    url = f"{GAMIFY}/admin/rewards/{reward['id']}/codes"
    too_long = client.post(url, json={"codes": ["x" * 256]}, headers=tenant.admin())
    assert too_long.status_code == 422
    empty = client.post(url, json={"codes": ["  "]}, headers=tenant.admin())
    assert empty.status_code == 422
    wrong_type = client.post(url, data="a", content_type="application/xml", headers=tenant.admin())
    assert wrong_type.status_code == 415
    assert wrong_type.json["code"] == "unsupported_media_type"
    broken_json = client.post(
        url, data="{not json", content_type="application/json", headers=tenant.admin()
    )
    assert broken_json.status_code == 400
    assert broken_json.json["code"] == "invalid_json"


def test_points_multiplier_rewards_take_no_codes(client: FlaskClient, tenant: TenantKeys) -> None:
    reward = create_reward(
        client, tenant.admin(), type="points_multiplier", config={"multiplier": 2}
    )
    response = client.post(
        f"{GAMIFY}/admin/rewards/{reward['id']}/codes",
        json={"codes": ["A"]},
        headers=tenant.admin(),
    )
    assert response.status_code == 400
    assert response.json["code"] == "codes_not_supported"


def test_json_bodies_over_one_mebibyte_answer_413(client: FlaskClient, tenant: TenantKeys) -> None:
    response = client.post(
        f"{GAMIFY}/admin/rewards",
        data='{"name": "' + "x" * (1024 * 1024) + '"}',
        content_type="application/json",
        headers=tenant.admin(),
    )
    assert response.status_code == 413
    assert response.json["code"] == "payload_too_large"


def test_rewards_are_isolated_by_environment_and_tenant(
    client: FlaskClient, make_tenant: Any
) -> None:
    acme, other = make_tenant("Acme"), make_tenant("Other")
    live_reward = create_reward(client, acme.admin(), name="live only")
    url = f"{GAMIFY}/admin/rewards/{live_reward['id']}"
    assert client.get(url, headers={"X-API-Key": acme.test_admin_key}).status_code == 404
    assert client.get(url, headers=other.admin()).status_code == 404
    assert client.patch(url, json={"name": "x"}, headers=other.admin()).status_code == 404
    assert client.delete(url, headers=other.admin()).status_code == 404
    assert (
        client.post(f"{url}/codes", json={"codes": ["A"]}, headers=other.admin()).status_code == 404
    )
    test_catalog = client.get(f"{GAMIFY}/rewards", headers={"X-API-Key": acme.test_participant_key})
    assert test_catalog.json == {"rewards": [], "total": 0, "page": 1, "page_size": 50}
    other_catalog = client.get(f"{GAMIFY}/rewards", headers=other.participant())
    assert other_catalog.json == {"rewards": [], "total": 0, "page": 1, "page_size": 50}


def test_nul_characters_anywhere_in_input_answer_validation_error(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    # PostgreSQL cannot store U+0000: it is refused up front, never a 500 mid-write.
    nested_config = {"name": "ok", "type": "digital", "config": {"a": [{"k\x00": True}]}}
    response = client.post(f"{GAMIFY}/admin/rewards", json=nested_config, headers=tenant.admin())
    assert response.status_code == 422
    assert response.json["errors"][0]["loc"] == ["body", "config"]
    assert "NUL" in response.json["errors"][0]["msg"]

    response = client.post(
        f"{GAMIFY}/admin/rewards", json={"name": "a\x00b", "type": "coupon"}, headers=tenant.admin()
    )
    assert response.status_code == 422
    assert response.json["errors"][0]["loc"] == ["body", "name"]

    response = client.get(f"{GAMIFY}/participants/user%00x/rewards", headers=tenant.admin())
    assert response.status_code == 422
    assert response.json["errors"][0]["loc"] == ["path", "participant_id"]

    response = client.get(f"{GAMIFY}/rewards?reward_type=coupon%00", headers=tenant.admin())
    assert response.status_code == 422


def test_a_query_parameter_given_twice_answers_validation_error(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    # Each documented parameter takes one value; the second is not silently dropped.
    response = client.get(
        f"{GAMIFY}/rewards?reward_type=coupon&reward_type=digital", headers=tenant.admin()
    )
    assert response.status_code == 422
    assert response.json["errors"] == [
        {"loc": ["query", "reward_type"], "msg": "must be given once", "type": "repeated"}
    ]
    assert (
        client.get(f"{GAMIFY}/rewards?reward_type=coupon", headers=tenant.admin()).status_code
        == 200
    )
