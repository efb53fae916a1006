"""Bulk awards: staged uploads, per-row errors, progress, idempotency, crash recovery."""

from __future__ import annotations

import csv
import io
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.models import LedgerEntry, Operation, Participant
from app.models.points import BulkAwardRow
from app.operation_sweeps import purge_expired_idempotency_records
from app.points.bulk import UploadFormat, stage_bulk_award
from tests.builders import run_ledger_verify, wait_for, wait_for_operation
from tests.conftest import TenantKeys, WorkerProcess

BASE = "/api/v1/gamify"
BULK = f"{BASE}/points/award-bulk"


def upload(
    client: FlaskClient,
    tenant: TenantKeys,
    body: str | bytes,
    content_type: str = "text/csv",
    key: str | None = None,
) -> Any:
    headers = {**tenant.admin(), **({"Idempotency-Key": key} if key else {})}
    return client.post(BULK, data=body, content_type=content_type, headers=headers)


def balances(session_factory: sessionmaker[Session], tenant: TenantKeys) -> dict[str, int]:
    with session_factory() as session:
        rows = session.execute(
            select(Participant.external_id, Participant.balance).where(
                Participant.tenant_id == tenant.tenant_id
            )
        )
        return {external_id: balance for external_id, balance in rows}


MIXED_CSV = (
    "participant_id,amount,reason\n"
    "alice,100,Weekly bonus\n"
    "bob,0,zero\n"
    "alice,50,\n"
    ",10,no participant\n"
    "carol,abc,not a number\n"
    "\n"
    "carol,1000001,too much\n"
    'dave,7,"with ""quoted"", comma"\n'
    "erin,5,extra,field\n"
    "carol,1000000,max\n"
)


def test_bulk_award_from_csv_awards_the_valid_rows_and_reports_the_bad_ones(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    response = upload(client, tenant, MIXED_CSV)
    assert response.status_code == 202, response.json
    assert response.json["kind"] == "points.award_bulk"
    assert response.headers["Location"].endswith(response.json["operation_id"])
    view = wait_for_operation(client, tenant.admin(), response.json["operation_id"])
    assert view["status"] == "succeeded", view
    operation_id = response.json["operation_id"]
    assert view["result"] == {
        "total_rows": 9,
        "awarded": 4,
        "failed": 5,
        "points_credited": 100 + 50 + 7 + 1_000_000,
        "error_report": f"{BULK}/{operation_id}/errors",
    }
    assert view["progress"] == {
        "total": 9,
        "done": 9,
        "awarded": 4,
        "failed": 5,
        "points_credited": 1_000_157,
    }
    assert balances(session_factory, tenant) == {"alice": 150, "dave": 7, "carol": 1_000_000}
    report = client.get(view["result"]["error_report"], headers=tenant.admin())
    assert report.status_code == 200
    assert report.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(report.text)))
    assert rows[0] == ["row", "participant_id", "amount", "reason", "error"]
    assert [(row[0], row[1]) for row in rows[1:]] == [
        ("2", "bob"),
        ("4", ""),
        ("5", "carol"),
        ("6", "carol"),
        ("8", ""),
    ]
    assert rows[1][4] == "amount must be between 1 and 1000000"
    assert rows[2][4] == "participant_id must be a non-empty string"
    assert rows[3][4] == "amount must be an integer"
    assert rows[5][4] == "expected 3 fields"
    with session_factory() as session:
        reasons = set(
            session.execute(
                select(LedgerEntry.reason).where(LedgerEntry.tenant_id == tenant.tenant_id)
            ).scalars()
        )
    assert reasons == {"Weekly bonus", None, 'with "quoted", comma', "max"}


def test_bulk_award_from_csv_without_a_header_reads_participant_amount_reason(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    response = upload(client, tenant, "\ufeffu1,5\r\nu2,6,thanks\r\n")
    view = wait_for_operation(client, tenant.admin(), response.json["operation_id"])
    assert view["result"]["awarded"] == 2
    assert balances(session_factory, tenant) == {"u1": 5, "u2": 6}


def test_bulk_award_from_ndjson_checks_each_line(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    lines = [
        '{"participant_id": "n1", "amount": 10, "reason": "r"}',
        '{"participant_id": "n2", "amount": "10"}',
        "{not json",
        "",
        '["n3", 1]',
        '{"participant_id": "n3", "amount": 3, "metadata": {}}',
        '{"participant_id": "n1", "amount": 1}',
        '{"participant_id": "n\\u0000", "amount": 1}',
        '{"participant_id": "n4", "amount": 1, "b\\u0000nus": 1}',
    ]
    response = upload(client, tenant, "\n".join(lines), content_type="application/x-ndjson")
    assert response.status_code == 202, response.json
    view = wait_for_operation(client, tenant.admin(), response.json["operation_id"])
    assert (view["result"]["awarded"], view["result"]["failed"]) == (2, 6)
    assert balances(session_factory, tenant) == {"n1": 11}
    report = client.get(view["result"]["error_report"], headers=tenant.admin()).text
    errors = {row[0]: row[4] for row in list(csv.reader(io.StringIO(report)))[1:]}
    assert errors == {
        "2": "amount must be an integer",
        "3": "not valid JSON",
        "4": "each line must be a JSON object",
        "5": "unknown field(s): metadata",
        "7": "participant_id must not contain NUL characters",
        "8": "unknown field(s): b\ufffdnus",
    }


def test_bulk_award_resubmitted_with_the_same_idempotency_key_is_awarded_once(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    body = "participant_id,amount\nx,1\ny,2\n"
    first = upload(client, tenant, body, key="bulk-once")
    wait_for_operation(client, tenant.admin(), first.json["operation_id"])
    again = upload(client, tenant, body, key="bulk-once")
    assert again.status_code == 202
    assert again.json["operation_id"] == first.json["operation_id"]
    assert again.json["status"] == "succeeded"
    assert balances(session_factory, tenant) == {"x": 1, "y": 2}
    other_file = upload(client, tenant, "participant_id,amount\nx,1\ny,3\n", key="bulk-once")
    assert other_file.status_code == 422
    assert other_file.json["code"] == "IDEMPOTENCY_KEY_REUSED"
    other_format = upload(
        client, tenant, '{"participant_id": "x", "amount": 1}', "application/x-ndjson", "bulk-once"
    )
    assert other_format.status_code == 422


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ("participant_id,amount\n", "text/csv", 422, "empty_upload"),
        ("", "text/csv", 422, "empty_upload"),
        ("participant_id,points\nx,1\n", "text/csv", 422, "invalid_upload"),
        (b"x,1\n\xff\xfe,2\n", "text/csv", 422, "invalid_upload"),
        ('{"participant_id": "x", "amount": 1}', "application/json", 415, "unsupported_media_type"),
    ],
)
def test_bulk_award_rejects_an_unusable_upload_and_records_nothing(
    client: FlaskClient,
    tenant: TenantKeys,
    session_factory: sessionmaker[Session],
    body: str | bytes,
    content_type: str,
    status: int,
    code: str,
) -> None:
    response = upload(client, tenant, body, content_type, key="unusable")
    assert response.status_code == status, response.json
    assert response.json["code"] == code
    retry = upload(client, tenant, "participant_id,amount\nx,1\n", key="unusable")
    assert retry.status_code == 202  # the failed upload left no operation behind the key


def test_bulk_award_over_the_row_limit_answers_413_too_many_rows(
    client: FlaskClient, tenant: TenantKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.points.bulk.BULK_MAX_ROWS", 3)
    response = upload(client, tenant, "a,1\nb,1\nc,1\nd,1\n")
    assert response.status_code == 413
    assert response.json["code"] == "too_many_rows"
    assert upload(client, tenant, "a,1\nb,1\nc,1\n").status_code == 202


def test_bulk_award_needs_an_admin_key(client: FlaskClient, tenant: TenantKeys) -> None:
    response = client.post(
        BULK, data="a,1\n", content_type="text/csv", headers=tenant.participant()
    )
    assert response.status_code == 403


def test_bulk_error_report_of_an_unknown_or_other_operation_is_404(
    client: FlaskClient, tenant: TenantKeys, make_tenant: Any, worker: WorkerProcess
) -> None:
    missing = client.get(f"{BULK}/{uuid.uuid4()}/errors", headers=tenant.admin())
    assert missing.status_code == 404
    assert missing.json["code"] == "operation_not_found"
    assert client.get(f"{BULK}/not-a-uuid/errors", headers=tenant.admin()).status_code == 404
    mine = upload(client, tenant, "a,1\n").json["operation_id"]
    stranger = make_tenant("Other")
    assert client.get(f"{BULK}/{mine}/errors", headers=stranger.admin()).status_code == 404
    award = client.post(
        f"{BASE}/points/award",
        json={"participant_id": "a", "amount": 1},
        headers={**tenant.participant(), "Prefer": "respond-async"},
    ).json["operation_id"]
    assert client.get(f"{BULK}/{award}/errors", headers=tenant.admin()).status_code == 404


def test_bulk_award_of_100_000_rows_survives_a_worker_killed_halfway_and_awards_each_row_once(
    make_app: Any,
    tenant: TenantKeys,
    service_env: dict[str, str],
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    # A broker namespace of its own: only the worker killed here runs the job until then.
    prefix = f"{service_env['REDIS_KEY_PREFIX']}bulk-crash-{uuid.uuid4().hex[:8]}:"
    isolated_env = {**service_env, "REDIS_KEY_PREFIX": prefix}
    client = make_app(redis_key_prefix=prefix).test_client()
    total_rows, participants = 100_000, 7_000
    amounts = [row % 9 + 1 for row in range(total_rows)]
    body = "participant_id,amount\n" + "".join(
        f"p{row % participants},{amounts[row]}\n" for row in range(total_rows)
    )
    expected: Counter[str] = Counter()
    for row in range(total_rows):
        expected[f"p{row % participants}"] += amounts[row]

    doomed = WorkerProcess(isolated_env, tmp_path / "doomed.log", concurrency=1)
    try:
        accepted = upload(client, tenant, body, key="bulk-crash")
        assert accepted.status_code == 202, accepted.json
        operation_id = accepted.json["operation_id"]
        wait_for(
            lambda: client.get(f"{BASE}/operations/{operation_id}", headers=tenant.admin()).json,
            lambda view: (
                view["progress"]["done"] >= total_rows // 2 or view["status"] == "succeeded"
            ),
            120,
            "the job to get halfway",
            interval=0.01,
        )
    finally:
        doomed.kill()
    view = client.get(f"{BASE}/operations/{operation_id}", headers=tenant.admin()).json
    assert view["status"] != "succeeded", "the job finished before the worker was killed"
    assert total_rows // 2 <= view["progress"]["done"] < total_rows

    replay = upload(client, tenant, body, key="bulk-crash")
    assert replay.status_code == 202
    assert replay.json["operation_id"] == operation_id
    rescuer = WorkerProcess(isolated_env, tmp_path / "rescuer.log", concurrency=2)
    try:
        final = wait_for_operation(client, tenant.admin(), operation_id, timeout=120)
    finally:
        rescuer.stop()

    assert final["status"] == "succeeded", final
    assert final["result"]["awarded"] == total_rows
    assert final["result"]["failed"] == 0
    assert final["result"]["points_credited"] == sum(amounts)
    with session_factory() as session:
        awarded_rows = session.execute(
            select(
                func.count(),
                func.count(func.distinct(LedgerEntry.metadata_["bulk_row"].as_integer())),
            ).where(LedgerEntry.operation_id == uuid.UUID(operation_id))
        ).one()
    assert tuple(awarded_rows) == (total_rows, total_rows)
    assert balances(session_factory, tenant) == dict(expected)
    code, report = run_ledger_verify(service_env)
    assert (code, report["violations"]) == (0, [])


def test_purging_a_finished_bulk_operation_deletes_its_staged_rows_and_no_others(
    db_session: Session, make_tenant: Any
) -> None:
    tenant_id = make_tenant().tenant_id
    staged = [
        stage_bulk_award(
            db_session,
            tenant_id=tenant_id,
            env="live",
            idempotency_key=f"purge-{index}",
            upload_format=UploadFormat.CSV,
            body=io.BytesIO(b"participant_id,amount\nann,1\nbob,x\n"),
        ).operation.id
        for index in range(2)
    ]
    purged, kept = staged
    db_session.execute(
        update(Operation)
        .where(Operation.id == purged)
        .values(status="succeeded", finished_at=utcnow() - timedelta(days=2))
    )

    def staged_rows() -> dict[uuid.UUID, int]:
        counts = db_session.execute(
            select(BulkAwardRow.operation_id, func.count()).group_by(BulkAwardRow.operation_id)
        ).all()
        return {operation_id: count for operation_id, count in counts}

    before = staged_rows()  # other tests' finished bulk jobs too: they must stay
    assert before[purged] == before[kept] == 2

    assert purge_expired_idempotency_records(db_session, timedelta(hours=24)) == 1

    del before[purged]
    assert staged_rows() == before
