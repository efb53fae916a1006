"""Bulk actions: a CSV or NDJSON upload staged by the web and applied by the workers through
the action pipeline, a chunk per transaction, with a per-row error report."""

from __future__ import annotations

import json
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.engagement.bulk_actions import csv_cell
from app.models import Action
from tests.builders import GAMIFY, wait_for_operation
from tests.conftest import TenantKeys, WorkerProcess
from tests.test_actions import add_badge, add_rule, balance

BULK = f"{GAMIFY}/actions/bulk"


def upload(
    client: FlaskClient,
    tenant: TenantKeys,
    body: str,
    content_type: str = "text/csv",
    **headers: str,
) -> Any:
    return client.post(
        BULK, data=body, content_type=content_type, headers={**tenant.admin(), **headers}
    )


def test_a_csv_of_actions_earns_rules_and_badges_and_reports_its_bad_rows(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    add_rule(session_factory, tenant, formula="amount", conditions={"equals": {"vip": True}})
    add_badge(session_factory, tenant, {"type": "action_count", "action": "purchase", "count": 2})
    csv_body = (
        "participant_id,action,occurred_at,amount,vip,channel\n"
        "ann,purchase,,10,true,web\n"
        "ann,purchase,2026-11-02T10:00:00+00:00,25,true,\n"
        "bob,purchase,,7,false,shop\n"
        ",purchase,,1,true,web\n"
        "cy,purchase,not-a-date,1,true,web\n"
        "dee,purchase,,1\n"
    )
    response = upload(client, tenant, csv_body, **{"Idempotency-Key": "bulk-1"})
    assert response.status_code == 202, response.json
    view = wait_for_operation(client, tenant.admin(), response.json["operation_id"], timeout=60)
    assert view["status"] == "succeeded", view
    result = view["result"]
    assert (result["total_rows"], result["applied"], result["failed"]) == (6, 3, 3)
    assert result["points_credited"] == 35
    assert balance(client, tenant, "ann") == 35 and balance(client, tenant, "bob") == 0
    badges = client.get(f"{GAMIFY}/participants/ann/badges", headers=tenant.participant()).json
    assert len(badges["badges"]) == 1
    with session_factory() as session:
        stored = (
            session.execute(
                select(Action.properties)
                .where(Action.tenant_id == tenant.tenant_id)
                .order_by(Action.occurred_at)
            )
            .scalars()
            .all()
        )
    assert {"amount": 25, "vip": True} in stored and {
        "amount": 7,
        "vip": False,
        "channel": "shop",
    } in stored
    report = client.get(result["error_report"], headers=tenant.admin())
    assert report.status_code == 200 and report.mimetype == "text/csv"
    lines = report.get_data(as_text=True).splitlines()
    assert lines[0] == "row,participant_id,action,error"
    assert [line.split(",")[0] for line in lines[1:]] == ["4", "5", "6"]
    assert (
        "participant_id" in lines[1]
        and "occurred_at" in lines[2]
        and "expected 6 fields" in lines[3]
    )
    # The same file again under its key is the same job; another file under it is refused.
    again = upload(client, tenant, csv_body, **{"Idempotency-Key": "bulk-1"})
    assert again.status_code == 202 and again.json["operation_id"] == response.json["operation_id"]
    other = upload(client, tenant, csv_body + "eve,login\n", **{"Idempotency-Key": "bulk-1"})
    assert other.status_code == 422 and other.json["code"] == "IDEMPOTENCY_KEY_REUSED"


def test_an_ndjson_upload_and_bad_uploads(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    add_rule(session_factory, tenant, formula="3", action="login")
    lines = [
        {"participant_id": "fay", "action": "login"},
        {"participant_id": "fay", "action": "login", "properties": {"nested": {"x": 1}}},
        "not json",
    ]
    body = "\n".join(json.dumps(line) if isinstance(line, dict) else line for line in lines)
    response = upload(client, tenant, body, content_type="application/x-ndjson")
    assert response.status_code == 202, response.json
    view = wait_for_operation(client, tenant.admin(), response.json["operation_id"], timeout=60)
    assert (view["result"]["applied"], view["result"]["failed"]) == (1, 2), view
    assert balance(client, tenant, "fay") == 3
    with session_factory() as session:
        count = session.execute(
            select(func.count()).select_from(Action).where(Action.tenant_id == tenant.tenant_id)
        ).scalar_one()
    assert count == 1
    for bad_body, code in (
        ("action,participant_id\nlogin,fay\n", "invalid_upload"),
        ("participant_id,action\n", "empty_upload"),
    ):
        refused = upload(client, tenant, bad_body)
        assert refused.status_code == 422 and refused.json["code"] == code, refused.json
    wrong_type = upload(client, tenant, "x", content_type="application/json")
    assert wrong_type.status_code == 415
    participant = client.post(
        BULK,
        data="participant_id,action\nfay,login\n",
        content_type="text/csv",
        headers=tenant.participant(),
    )
    assert participant.status_code == 403
    # Another id than the upload's (its last digit changed: it is never the same id).
    job_id = response.json["operation_id"]
    other_id = job_id[:-1] + ("1" if job_id.endswith("0") else "0")
    missing = client.get(f"{BULK}/{other_id}/errors", headers=tenant.admin())
    assert missing.status_code == 404


def test_csv_cells_read_as_numbers_booleans_or_text() -> None:
    assert [
        csv_cell(text) for text in ("42", "-3", "4.5", "1e3", "true", "false", "True", "12a", "007")
    ] == [
        42,
        -3,
        4.5,
        1000.0,
        True,
        False,
        "True",
        "12a",
        7,
    ]
