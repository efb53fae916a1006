"""The admin console's core: sign-in, sessions, CSRF, cookies, audit (Flask client, fast)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from app.clock import set_clock
from app.models import AuditEntry, ConsoleSession, Environment
from app.tenancy import create_api_key, revoke_api_key
from tests.conftest import TenantKeys
from tests.console_support import form_csrf, session_csrf, sign_in


@pytest.fixture
def console(client: FlaskClient, tenant: TenantKeys) -> FlaskClient:
    """A client signed in with the tenant's live admin key."""
    answer = sign_in(client, tenant.admin_key)
    assert answer.status_code == 303, answer.text
    return client


def test_sign_in_with_an_admin_key_redirects_to_the_overview(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    answer = sign_in(client, tenant.admin_key)

    assert answer.status_code == 303
    assert answer.headers["Location"] == "/console/"
    overview = client.get("/console/")
    assert overview.status_code == 200
    assert str(tenant.tenant_id) in overview.text
    assert "<title>Overview" in overview.text


def test_a_participant_key_is_refused_with_a_clear_message_on_the_form(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    answer = sign_in(client, tenant.participant_key)

    assert answer.status_code == 403
    assert "not admin-scoped" in answer.text
    assert 'aria-describedby="error-api_key"' in answer.text
    assert client.get("/console/").status_code == 303


def test_an_unknown_or_empty_key_is_refused_on_the_form(client: FlaskClient) -> None:
    assert sign_in(client, "bq_live_nothing").status_code == 401
    assert sign_in(client, "x" * 500).status_code == 401
    empty = sign_in(client, "  ")
    assert empty.status_code == 400
    assert "Enter an API key" in empty.text


def test_sign_in_without_the_form_token_is_refused_and_opens_nothing(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    client.get("/console/login")
    answer = client.post("/console/login", data={"api_key": tenant.admin_key})
    forged = client.post(
        "/console/login", data={"api_key": tenant.admin_key, "csrf_token": "forged"}
    )

    assert answer.status_code == forged.status_code == 400
    assert "Form refused" in answer.text
    with session_factory() as session:
        opened = session.query(ConsoleSession).filter_by(tenant_id=tenant.tenant_id).count()
    assert opened == 0


def test_sign_out_without_the_form_token_is_refused_and_the_session_lives_on(
    console: FlaskClient,
) -> None:
    refused = console.post("/console/logout")
    assert refused.status_code == 400
    assert console.get("/console/").status_code == 200

    wrong_header = console.post("/console/logout", headers={"X-CSRF-Token": "nope"})
    assert wrong_header.status_code == 400
    assert console.get("/console/").status_code == 200


def test_sign_out_ends_the_session_server_side(console: FlaskClient) -> None:
    cookie = console.get_cookie("rewards_console", path="/console")
    assert cookie is not None
    answer = console.post("/console/logout", data={"csrf_token": session_csrf(console)})
    assert answer.status_code == 303
    assert console.get("/console/").status_code == 303

    # The old cookie, replayed, opens nothing: the session ended in the database.
    console.set_cookie("rewards_console", cookie.value, path="/console")
    assert console.get("/console/").status_code == 303


def test_pages_ask_for_sign_in_and_come_back_after_it(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    answer = client.get("/console/audit?page=1")
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/console/login?next=")

    page = client.get(answer.headers["Location"])
    signed = client.post(
        "/console/login",
        data={
            "api_key": tenant.admin_key,
            "csrf_token": form_csrf(page.text),
            "next": "/console/audit?page=1",
        },
    )
    assert signed.headers["Location"] == "/console/audit?page=1"


def test_sign_in_never_redirects_to_another_site(client: FlaskClient, tenant: TenantKeys) -> None:
    for target in ("//evil.example/console/", "https://evil.example/console/", "/elsewhere"):
        client.delete_cookie("rewards_console", path="/console")
        page = client.get("/console/login")
        answer = client.post(
            "/console/login",
            data={"api_key": tenant.admin_key, "csrf_token": form_csrf(page.text), "next": target},
        )
        assert answer.headers["Location"] == "/console/"


def test_an_htmx_request_without_a_session_is_told_where_to_sign_in(client: FlaskClient) -> None:
    answer = client.get("/console/audit", headers={"HX-Request": "true"})
    assert answer.status_code == 401
    assert answer.headers["HX-Redirect"].startswith("/console/login")


def test_the_session_expires_after_its_lifetime(console: FlaskClient) -> None:
    later = datetime.now(UTC) + timedelta(hours=8, seconds=5)
    set_clock(lambda: later)
    try:
        answer = console.get("/console/")
    finally:
        set_clock(None)
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/console/login")


def test_a_revoked_key_ends_its_sessions(
    console: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session:
        opened = session.query(ConsoleSession).filter_by(tenant_id=tenant.tenant_id).one()
    with session_factory.begin() as session:
        revoke_api_key(session, opened.key_id)

    assert console.get("/console/").status_code == 303
    with session_factory() as session:
        ended = session.get(ConsoleSession, opened.id)
        assert ended is not None and ended.ended_at is not None


def test_an_expired_key_ends_its_sessions(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=5)
    with session_factory.begin() as session:
        key = create_api_key(session, tenant.tenant_id, Environment.LIVE, ["admin"], soon)
    assert sign_in(client, key.key).status_code == 303
    assert client.get("/console/").status_code == 200

    set_clock(lambda: soon + timedelta(seconds=1))
    try:
        assert client.get("/console/").status_code == 303
    finally:
        set_clock(None)


def test_a_tampered_cookie_opens_nothing(console: FlaskClient) -> None:
    cookie = console.get_cookie("rewards_console", path="/console")
    assert cookie is not None
    console.set_cookie("rewards_console", cookie.value[:-2] + "xx", path="/console")
    assert console.get("/console/").status_code == 303


def test_the_session_cookie_is_httponly_lax_and_holds_only_a_signed_token(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    answer = sign_in(client, tenant.admin_key)

    header = next(
        value
        for value in answer.headers.getlist("Set-Cookie")
        if value.startswith("rewards_console=")
    )
    flags = [part.strip().lower() for part in header.split(";")]
    assert "httponly" in flags
    assert "samesite=lax" in flags
    assert "path=/console" in flags
    assert "secure" not in flags  # plain http
    assert tenant.admin_key not in header
    with session_factory() as session:
        stored = session.query(ConsoleSession).filter_by(tenant_id=tenant.tenant_id).one()
    token_part = header.split(";")[0].removeprefix("rewards_console=")
    assert stored.token_hash not in token_part


def test_the_cookies_are_secure_over_https(client: FlaskClient, tenant: TenantKeys) -> None:
    https = {"base_url": "https://console.test"}
    page = client.get("/console/login", **https)
    login_cookie = page.headers["Set-Cookie"].lower()
    assert "secure" in login_cookie and "httponly" in login_cookie

    answer = client.post(
        "/console/login",
        data={"api_key": tenant.admin_key, "csrf_token": form_csrf(page.text)},
        **https,
    )
    session_cookie = next(
        value.lower()
        for value in answer.headers.getlist("Set-Cookie")
        if value.startswith("rewards_console=")
    )
    assert "; secure" in session_cookie
    assert "samesite=lax" in session_cookie


def _console_audit(session_factory: sessionmaker[Session], tenant_id: uuid.UUID) -> list[Any]:
    with session_factory() as session:
        return list(
            session.query(AuditEntry)
            .filter_by(tenant_id=tenant_id)
            .order_by(AuditEntry.created_at)
            .all()
        )


def test_sign_in_and_out_are_audited_with_the_key_and_the_console_marker(
    console: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    console.post("/console/logout", data={"csrf_token": session_csrf(console)})

    entries = _console_audit(session_factory, tenant.tenant_id)
    assert [entry.action for entry in entries] == ["console.signed_in", "console.signed_out"]
    with session_factory() as session:
        opened = session.query(ConsoleSession).filter_by(tenant_id=tenant.tenant_id).one()
    assert {entry.actor_key_id for entry in entries} == {opened.key_id}
    assert all(entry.details == {"via": "console"} for entry in entries)


def test_the_api_s_own_audit_entries_carry_no_console_marker(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    created = client.post(
        "/api/v1/gamify/admin/rewards",
        json={"name": "Mug", "type": "physical"},
        headers=tenant.admin(),
    )
    assert created.status_code == 201
    (entry,) = _console_audit(session_factory, tenant.tenant_id)
    assert "via" not in (entry.details or {})


def test_the_audit_log_page_lists_entries_and_refuses_a_bad_page_with_a_page(
    console: FlaskClient,
) -> None:
    page = console.get("/console/audit")
    assert page.status_code == 200
    assert "console.signed_in" in page.text
    assert '"via": "console"' in page.text

    bad = console.get("/console/audit?page=zero")
    assert bad.status_code == 422
    assert bad.mimetype == "text/html"


def test_every_page_has_a_title_a_main_and_a_labelled_nav(console: FlaskClient) -> None:
    for path in ("/console/", "/console/audit"):
        html = console.get(path).text
        assert re.search(r"<title>[^<]+</title>", html)
        assert '<main id="main">' in html
        assert re.search(r'<nav aria-label="[^"]+"', html)
        assert "hx-headers" in html


def test_without_any_secret_the_console_says_what_to_set(make_app: Any) -> None:
    app: Flask = make_app(secret_key=None, console_secret_key=None)
    answer = app.test_client().get("/console/login")
    assert answer.status_code == 503
    assert "CONSOLE_SECRET_KEY" in answer.text


def test_no_console_template_turns_escaping_off() -> None:
    """Text reaches a page escaped: no template marks a value `safe` or switches
    autoescape off (attributes go through the macros' `attrs` dicts, escaped)."""
    templates = Path(__file__).parent.parent / "api" / "console" / "templates" / "console"
    for template in sorted(templates.glob("*.html")):
        source = template.read_text()
        assert not re.search(r"\|\s*safe\b", source), template.name
        assert "autoescape false" not in source, template.name


def test_the_nav_marks_the_section_of_an_inner_page_as_current(console: FlaskClient) -> None:
    pages = {
        "/console/": "Overview",
        "/console/rewards/new": "Rewards",
        "/console/participants/view?participant_id=p-1": "Participants",
        "/console/webhooks/new": "Webhooks",
        "/console/program/tiers": "Program",
        "/console/audit": "Audit log",
    }
    for path, section in pages.items():
        current = re.findall(
            r'<a href="[^"]+" aria-current="page">([^<]+)</a>', console.get(path).text
        )
        assert current == [section], path
