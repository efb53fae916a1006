"""Console participant pages: search, the participant's page, points by hand (Flask client
with a real worker behind the write path)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from app.models import AuditEntry
from tests.conftest import TenantKeys, WorkerProcess
from tests.console_support import form_csrf, form_token, sign_in

POINTS = "/console/participants/points"


@pytest.fixture
def console(client: FlaskClient, tenant: TenantKeys) -> FlaskClient:
    assert sign_in(client, tenant.admin_key).status_code == 303
    return client


def _page(console: FlaskClient, participant_id: str, **args: str) -> Any:
    return console.get(
        "/console/participants/view", query_string={"participant_id": participant_id, **args}
    )


def _points_form(page_html: str, participant_id: str, **fields: str) -> dict[str, str]:
    return {
        "csrf_token": form_csrf(page_html),
        "form_token": form_token(page_html),
        "participant_id": participant_id,
        "operation": "award",
        "amount": "120",
        "reason": "Goodwill",
        **fields,
    }


def _balance(client: FlaskClient, tenant: TenantKeys, participant_id: str) -> int:
    answer = client.get(
        f"/api/v1/gamify/participants/{participant_id}/points", headers=tenant.admin()
    )
    return int(answer.json["balance"])


def test_search_opens_the_participant_page(console: FlaskClient) -> None:
    answer = console.get("/console/participants?participant_id=user+7")
    assert answer.status_code == 303
    page = console.get(answer.headers["Location"])
    assert page.status_code == 200
    assert "No activity recorded for this id yet" in page.text
    assert "<title>Participant user 7" in page.text


def test_an_award_by_hand_shows_balance_and_ledger_line_and_a_double_submit_applies_once(
    console: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    participant_id = f"p-{uuid.uuid4().hex[:8]}"
    form = _points_form(_page(console, participant_id).text, participant_id)

    first = console.post(POINTS, data=form)
    second = console.post(POINTS, data=form)  # the same rendered form, sent again

    assert first.status_code == second.status_code == 200
    for answer in (first, second):
        assert '<strong id="new-balance">120</strong>' in answer.text
        assert "Goodwill" in answer.text
    assert _balance(console, tenant, participant_id) == 120
    assert first.text.count("<td>Goodwill</td>") == 1
    with session_factory() as session:
        entries = (
            session.query(AuditEntry)
            .filter_by(tenant_id=tenant.tenant_id, action="points.awarded")
            .all()
        )
    assert len(entries) == 1
    assert entries[0].target_id == form["form_token"]
    assert entries[0].details is not None
    assert entries[0].details["via"] == "console"
    assert entries[0].details["amount"] == 120
    assert entries[0].details["new_balance"] == 120
    assert entries[0].actor_key_id is not None


def test_a_deduction_past_the_balance_is_refused_beside_the_amount(
    console: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    participant_id = f"p-{uuid.uuid4().hex[:8]}"
    page = _page(console, participant_id).text
    answer = console.post(POINTS, data=_points_form(page, participant_id, operation="deduct"))

    assert answer.status_code == 400
    assert 'id="error-amount"' in answer.text
    assert _balance(console, tenant, participant_id) == 0


def test_a_bad_amount_is_shown_beside_the_field_and_writes_nothing(
    console: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    participant_id = f"p-{uuid.uuid4().hex[:8]}"
    page = _page(console, participant_id).text
    # The control's own limit reaches the browser as an attribute, not as escaped text.
    assert re.search(r'<input id="f-amount"[^>]* min="1"', page)
    for amount, message in (("ten", "must be a whole number"), ("0", "greater than or equal")):
        answer = console.post(POINTS, data=_points_form(page, participant_id, amount=amount))
        assert answer.status_code == 422
        assert 'id="error-amount"' in answer.text
        assert message in answer.text
    with session_factory() as session:
        assert session.query(AuditEntry).filter_by(tenant_id=tenant.tenant_id).count() == 1


def test_points_by_hand_without_the_csrf_token_do_nothing(
    console: FlaskClient, tenant: TenantKeys
) -> None:
    participant_id = f"p-{uuid.uuid4().hex[:8]}"
    form = _points_form(_page(console, participant_id).text, participant_id)
    del form["csrf_token"]
    answer = console.post(POINTS, data=form)
    assert answer.status_code == 400
    assert _balance(console, tenant, participant_id) == 0


def test_the_ledger_filter_refuses_a_bad_date_with_a_page(console: FlaskClient) -> None:
    answer = _page(console, "someone", **{"from": "yesterday"})
    assert answer.status_code == 422
    assert answer.mimetype == "text/html"
    filtered = _page(console, "someone", **{"from": "2030-01-01", "direction": "credit"})
    assert filtered.status_code == 200
