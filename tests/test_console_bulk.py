"""Console bulk jobs: upload through the API's path, the job page, its error CSV (Flask client)."""

from __future__ import annotations

import io
import re
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.console.bulk_jobs import job_view
from api.console.pages import render_page
from app.models import AuditEntry, Operation, Participant
from app.points.bulk import AWARD_BULK_KIND
from tests.builders import wait_until
from tests.conftest import TenantKeys, WorkerProcess
from tests.console_support import form_csrf, form_token, sign_in

BULK_PAGE = "/console/bulk"
API_BULK = "/api/v1/gamify/points/award-bulk"
ONE_BAD_LINE = "participant_id,amount,reason\nann,40,welcome\nben,abc,typo\ncat,60,\n"


@pytest.fixture
def console(client: FlaskClient, tenant: TenantKeys) -> FlaskClient:
    assert sign_in(client, tenant.admin_key).status_code == 303
    return client


def _upload_form(page_html: str, content: str | bytes | None, filename: str = "awards.csv") -> Any:
    form: dict[str, Any] = {"csrf_token": form_csrf(page_html), "form_token": form_token(page_html)}
    if content is not None:
        data = content.encode() if isinstance(content, str) else content
        form["file"] = (io.BytesIO(data), filename, "text/csv")
    return form


def _bulk_jobs(session_factory: sessionmaker[Session], tenant: TenantKeys) -> list[Operation]:
    with session_factory() as session:
        return list(
            session.execute(
                select(Operation).where(
                    Operation.tenant_id == tenant.tenant_id, Operation.kind == AWARD_BULK_KIND
                )
            ).scalars()
        )


def _audit(session_factory: sessionmaker[Session], tenant: TenantKeys) -> list[AuditEntry]:
    with session_factory() as session:
        return list(
            session.execute(
                select(AuditEntry).where(
                    AuditEntry.tenant_id == tenant.tenant_id,
                    AuditEntry.action == "points.bulk_award_started",
                )
            ).scalars()
        )


def test_a_bulk_upload_without_the_form_token_is_refused_and_starts_nothing(
    console: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    page = console.get(BULK_PAGE).text
    form = _upload_form(page, ONE_BAD_LINE)
    del form["csrf_token"]

    answer = console.post(BULK_PAGE, data=form, content_type="multipart/form-data")

    assert answer.status_code == 400
    assert "Form refused" in answer.text
    assert _bulk_jobs(session_factory, tenant) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "Choose a CSV file to upload"),
        ("", "The upload holds no rows"),
        ("participant_id,points\nann,1\n", "The CSV header must name participant_id, amount"),
        (b"\xff\xfe\x00bad", "The upload is not UTF-8 text"),
    ],
)
def test_an_unusable_upload_is_refused_beside_the_file_field_and_records_nothing(
    console: FlaskClient,
    tenant: TenantKeys,
    session_factory: sessionmaker[Session],
    content: str | bytes | None,
    message: str,
) -> None:
    page = console.get(BULK_PAGE).text

    answer = console.post(
        BULK_PAGE, data=_upload_form(page, content), content_type="multipart/form-data"
    )

    assert answer.status_code == 422
    assert 'id="error-file"' in answer.text
    error = re.search(r'<p class="field-error" id="error-file">([^<]*)</p>', answer.text)
    assert error is not None and message in error.group(1)
    assert _bulk_jobs(session_factory, tenant) == []
    assert _audit(session_factory, tenant) == []


def test_a_bulk_form_submitted_twice_starts_one_job_audited_once(
    console: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    page = console.get(BULK_PAGE).text
    first = console.post(
        BULK_PAGE, data=_upload_form(page, ONE_BAD_LINE), content_type="multipart/form-data"
    )
    again = console.post(
        BULK_PAGE, data=_upload_form(page, ONE_BAD_LINE), content_type="multipart/form-data"
    )

    assert first.status_code == again.status_code == 303, first.text
    assert first.headers["Location"] == again.headers["Location"]
    [job] = _bulk_jobs(session_factory, tenant)
    assert first.headers["Location"] == f"{BULK_PAGE}/{job.id}"
    [entry] = _audit(session_factory, tenant)
    assert entry.target_id == str(job.id)
    assert entry.details == {"format": "csv", "rows": 3, "invalid_rows": 1, "via": "console"}

    # The same token with another file is the API's reused-key refusal, shown on the form.
    other = console.post(
        BULK_PAGE, data=_upload_form(page, "ann,1\n"), content_type="multipart/form-data"
    )
    assert other.status_code == 422
    assert "already used with a different request" in other.text
    assert len(_bulk_jobs(session_factory, tenant)) == 1


def test_a_bulk_job_runs_to_the_end_and_its_error_csv_is_the_apis(
    console: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    page = console.get(BULK_PAGE).text
    started = console.post(
        BULK_PAGE, data=_upload_form(page, ONE_BAD_LINE), content_type="multipart/form-data"
    )
    assert started.status_code == 303, started.text
    job_page = console.get(started.headers["Location"])
    assert job_page.status_code == 200
    assert 'id="job-bar"' in job_page.text
    operation_id = started.headers["Location"].rsplit("/", 1)[1]
    progress_url = f"{BULK_PAGE}/{operation_id}/progress"

    fragments: list[str] = []

    def finished() -> bool:
        fragments.append(console.get(progress_url, headers={"HX-Request": "true"}).text)
        return 'data-status="succeeded"' in fragments[-1]

    wait_until(finished, 20, "the bulk job to finish")
    done = fragments[-1]
    assert "<html" not in done  # a fragment, not a page
    assert "hx-get" not in done  # a finished job stops polling
    assert 'value="3"' in done and 'max="3"' in done
    assert re.search(r'id="job-awarded">2<', done)
    assert re.search(r'id="job-failed">1<', done)

    with console.get(f"{BULK_PAGE}/{operation_id}/errors.csv") as report:
        assert report.status_code == 200
        assert report.mimetype == "text/csv"
        report_text = report.text
    with console.get(f"{API_BULK}/{operation_id}/errors", headers=tenant.admin()) as api_report:
        assert report_text == api_report.text
    assert report_text.splitlines() == [
        "row,participant_id,amount,reason,error",
        "2,ben,,typo,amount must be an integer",
    ]
    with session_factory() as session:
        balances = dict(
            session.execute(
                select(Participant.external_id, Participant.balance).where(
                    Participant.tenant_id == tenant.tenant_id
                )
            ).all()
        )
    assert balances == {"ann": 40, "cat": 60}
    listed = console.get(BULK_PAGE).text
    assert f'href="{BULK_PAGE}/{operation_id}"' in listed


def test_a_running_jobs_progress_asks_again_every_second(flask_app: Flask) -> None:
    running = Operation(
        id=uuid.uuid4(),
        kind=AWARD_BULK_KIND,
        status="processing",
        payload={"format": "csv", "rows": 40_000, "invalid_rows": 3},
        progress={"total": 40_000, "done": 20_000, "awarded": 19_998, "failed": 2},
        error=None,
    )
    with flask_app.test_request_context("/console/bulk"):
        fragment = render_page(
            "console/bulk_job_progress.html",
            title="Bulk job",
            job=job_view(running),
            poll_seconds=1,
        ).get_data(as_text=True)

    assert f'hx-get="/console/bulk/{running.id}/progress"' in fragment
    assert 'hx-trigger="every 1s"' in fragment
    assert 'value="20000"' in fragment and "(50%)" in fragment
    assert "so far" in fragment


def test_another_tenants_job_or_a_bad_id_is_a_not_found_page(
    console: FlaskClient, make_tenant: Any, client: FlaskClient
) -> None:
    stranger = make_tenant("Other")
    theirs = console.post(
        API_BULK, data="ann,1\n", content_type="text/csv", headers=stranger.admin()
    )
    assert theirs.status_code == 202
    for path in (
        f"{BULK_PAGE}/{theirs.json['operation_id']}",
        f"{BULK_PAGE}/{theirs.json['operation_id']}/errors.csv",
        f"{BULK_PAGE}/{uuid.uuid4()}/progress",
        f"{BULK_PAGE}/not-a-uuid",
    ):
        answer = console.get(path)
        assert answer.status_code == 404, path
        assert answer.mimetype == "text/html"
