"""Points history filters and fields: `GET /participants/{id}/points/transactions` with
direction, type, action, from and to, and each entry's direction, action and lot dates.

Entries are written through the API (awards with their action and terms, deductions),
and expire and release lines by the lot sweeps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.points.sweeps import sweep_lots
from tests.builders import GAMIFY
from tests.conftest import TenantKeys, WorkerProcess


def award(client: FlaskClient, tenant: TenantKeys, participant_id: str, amount: int) -> None:
    body = {"participant_id": participant_id, "amount": amount}
    response = client.post(f"{GAMIFY}/points/award", json=body, headers=tenant.participant())
    assert response.status_code == 200, response.json


def deduct(client: FlaskClient, tenant: TenantKeys, participant_id: str, amount: int) -> None:
    body = {"participant_id": participant_id, "amount": amount}
    response = client.post(f"{GAMIFY}/points/deduct", json=body, headers=tenant.participant())
    assert response.status_code == 200, response.json


def history(client: FlaskClient, tenant: TenantKeys, participant_id: str, **filters: Any) -> Any:
    """The history answer; `from_` stands for the `from` parameter."""
    if "from_" in filters:
        filters["from"] = filters.pop("from_")
    return client.get(
        f"{GAMIFY}/participants/{participant_id}/points/transactions",
        query_string=filters,
        headers=tenant.participant(),
    )


def listed(client: FlaskClient, tenant: TenantKeys, participant_id: str, **filters: Any) -> Any:
    response = history(client, tenant, participant_id, **filters)
    assert response.status_code == 200, response.json
    return response.json


def amounts(page: dict[str, Any]) -> list[int]:
    return [entry["amount"] for entry in page["transactions"]]


# --- filters over entries written through the API ----------------------------------------


def test_direction_credit_lists_awards_and_debit_lists_deductions(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    award(client, tenant, "dir", 100)
    deduct(client, tenant, "dir", 30)
    award(client, tenant, "dir", 20)

    credits = listed(client, tenant, "dir", direction="credit")
    debits = listed(client, tenant, "dir", direction="debit")

    assert (amounts(credits), credits["total"]) == ([20, 100], 2)
    assert (amounts(debits), debits["total"]) == ([-30], 1)
    assert {entry["direction"] for entry in credits["transactions"]} == {"credit"}
    assert debits["transactions"][0]["direction"] == "debit"
    assert debits["transactions"][0]["type"] == "deduct"
    assert debits["transactions"][0]["balance_after"] == 70


def test_type_lists_only_entries_of_that_type(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    award(client, tenant, "typed", 50)
    deduct(client, tenant, "typed", 10)
    award(client, tenant, "typed", 5)

    assert amounts(listed(client, tenant, "typed", type="award")) == [5, 50]
    assert amounts(listed(client, tenant, "typed", type="deduct")) == [-10]
    assert listed(client, tenant, "typed", type="expire") == {
        "transactions": [],
        "total": 0,
        "page": 1,
        "page_size": 20,
    }


def test_from_is_inclusive_and_to_exclusive_on_created_at(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    for amount in (1, 2, 3):  # one at a time: three transactions, three distinct times
        award(client, tenant, "dated", amount)
    third, second, first = (
        entry["created_at"] for entry in listed(client, tenant, "dated")["transactions"]
    )
    assert first < second < third

    assert amounts(listed(client, tenant, "dated", from_=second)) == [3, 2]
    assert amounts(listed(client, tenant, "dated", to=second)) == [1]
    assert amounts(listed(client, tenant, "dated", from_=second, to=third)) == [2]
    assert listed(client, tenant, "dated", from_=third, to=third)["total"] == 0


def test_times_in_any_zone_name_the_same_instant(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    award(client, tenant, "zoned", 1)
    (entry,) = listed(client, tenant, "zoned")["transactions"]
    created = datetime.fromisoformat(entry["created_at"])
    five_hours_behind = created.astimezone(timezone(timedelta(hours=-5))).isoformat()
    in_utc_z = created.astimezone(UTC).isoformat().replace("+00:00", "Z")

    assert amounts(listed(client, tenant, "zoned", from_=five_hours_behind)) == [1]
    assert amounts(listed(client, tenant, "zoned", from_=in_utc_z)) == [1]
    assert amounts(listed(client, tenant, "zoned", to=in_utc_z)) == []


def test_total_counts_the_filtered_entries_across_pages(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    for amount in (10, 20, 30, 40, 50):
        award(client, tenant, "paged", amount)
    deduct(client, tenant, "paged", 5)
    deduct(client, tenant, "paged", 6)

    first = listed(client, tenant, "paged", direction="credit", page_size=2)
    last = listed(client, tenant, "paged", direction="credit", page_size=2, page=3)

    assert (amounts(first), first["total"]) == ([50, 40], 5)
    assert (amounts(last), last["total"]) == ([10], 5)
    assert listed(client, tenant, "paged")["total"] == 7
    assert listed(client, tenant, "paged", direction="debit", type="award")["total"] == 0


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("direction", "both"),
        ("direction", "CREDIT"),
        ("from", "yesterday"),
        ("from", "2026-01-01"),  # no time, no zone
        ("from", "2026-01-01T00:00:00"),  # no zone
        ("to", "1700000000"),  # Unix time is not ISO 8601
        ("to", "2026-01-01T00:00:00 01:00"),  # a + sent unencoded reads as a space
        ("type", ""),
        ("type", "t" * 33),
    ],
)
def test_bad_filters_are_refused_with_validation_error(
    client: FlaskClient, tenant: TenantKeys, parameter: str, value: str
) -> None:
    response = history(client, tenant, "anyone", **{parameter: value})
    assert response.status_code == 422, response.json
    assert response.json["code"] == "validation_error"
    assert [error["loc"] for error in response.json["errors"]] == [["query", parameter]]


def test_openapi_documents_the_filters_by_their_names_on_the_wire(client: FlaskClient) -> None:
    operation = client.get("/openapi.json").json["paths"][
        "/api/v1/gamify/participants/{participant_id}/points/transactions"
    ]["get"]
    names = [p["name"] for p in operation["parameters"] if p["in"] == "query"]
    assert names == ["page", "page_size", "direction", "type", "action", "from", "to"]


# --- an award's action and terms, and the sweeps' lines ---------------------------------


def awarded(client: FlaskClient, tenant: TenantKeys, participant_id: str, **fields: Any) -> Any:
    body = {"participant_id": participant_id, "amount": 100, **fields}
    response = client.post(f"{GAMIFY}/points/award", json=body, headers=tenant.participant())
    assert response.status_code == 200, response.json
    return response.json


def same_instant(shown: str | None, answered: str | None) -> bool:
    assert shown is not None and answered is not None
    return datetime.fromisoformat(shown) == datetime.fromisoformat(answered)


def test_action_filter_and_field_come_from_the_award_entry(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    awarded(client, tenant, "actor", amount=10, action="purchase")
    awarded(client, tenant, "actor", amount=20, action="signup")
    awarded(client, tenant, "actor", amount=30)

    everything = listed(client, tenant, "actor")
    purchases = listed(client, tenant, "actor", action="purchase")

    assert [entry["action"] for entry in everything["transactions"]] == [None, "signup", "purchase"]
    assert (amounts(purchases), purchases["total"]) == ([10], 1)


def test_a_credit_shows_its_expiry_and_availability(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    answer = awarded(client, tenant, "lotted", expires_in_days=365, pending_days=7)

    (entry,) = listed(client, tenant, "lotted")["transactions"]

    assert same_instant(entry["expires_at"], answer["expires_at"])
    assert same_instant(entry["available_at"], answer["available_at"])


def test_a_credit_without_terms_has_no_expiry_and_was_available_at_once(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    awarded(client, tenant, "open")

    (entry,) = listed(client, tenant, "open")["transactions"]

    assert (entry["direction"], entry["expires_at"], entry["available_at"]) == (
        "credit",
        None,
        None,
    )


def test_an_expiring_credit_available_at_once_shows_only_its_expiry(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    answer = awarded(client, tenant, "expiring", expires_in_days=90)

    (entry,) = listed(client, tenant, "expiring")["transactions"]

    assert same_instant(entry["expires_at"], answer["expires_at"])
    assert entry["available_at"] is None


def test_expire_lines_are_debits_and_release_lines_credits_without_lot_dates(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    awarded(client, tenant, "cycled", pending_days=1, expires_in_days=3)
    sweep_lots(session_factory, now=lambda: utcnow() + timedelta(days=2))  # released
    sweep_lots(session_factory, now=lambda: utcnow() + timedelta(days=4))  # expired

    everything = listed(client, tenant, "cycled")["transactions"]
    credits = listed(client, tenant, "cycled", direction="credit")
    debits = listed(client, tenant, "cycled", direction="debit")

    assert [(entry["type"], entry["direction"], entry["amount"]) for entry in everything] == [
        ("expire", "debit", -100),
        ("release", "credit", 100),
        ("award", "credit", 100),
    ]
    assert [entry["type"] for entry in credits["transactions"]] == ["release", "award"]
    assert [entry["type"] for entry in debits["transactions"]] == ["expire"]
    assert all(
        (entry["expires_at"], entry["available_at"]) == (None, None) for entry in everything[:2]
    )
    assert listed(client, tenant, "cycled", type="expire")["total"] == 1
