"""The console's overview page and its refreshing panels (Flask client)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from app.models import Operation, OutboxEvent, Reward, WebhookDelivery, WebhookEndpoint
from tests.conftest import TenantKeys
from tests.test_console_core import sign_in


def seed_overview(session_factory: sessionmaker[Session], tenant_id: uuid.UUID) -> None:
    """Committed figures for the overview of the tenant's live environment: three writes
    in the last hour (one asked async, one refused), one of them in the test environment
    left out; two events waiting; an endpoint in backoff; a reward with 4 codes left."""
    now = datetime.now(UTC)
    with session_factory.begin() as session:
        for minutes_ago, kind, status, http_status, async_requested, env in (
            (5, "points.award", "succeeded", 200, False, "live"),
            (4, "points.award", "succeeded", 200, True, "live"),
            (3, "rewards.claim", "failed", 409, False, "live"),
            (2, "points.award", "succeeded", 200, False, "test"),
        ):
            at = now - timedelta(minutes=minutes_ago)
            session.add(
                Operation(
                    id=uuid.uuid4(),
                    tenant_id=tenant_id,
                    env=env,
                    kind=kind,
                    fingerprint="f" * 64,
                    payload={},
                    status=status,
                    http_status=http_status,
                    created_at=at,
                    enqueued_at=at,
                    finished_at=at + timedelta(milliseconds=50),
                    async_requested=async_requested,
                )
            )
        session.add(
            WebhookEndpoint(
                id=uuid.uuid4(),
                tenant_id=tenant_id,
                env="live",
                url="https://receiver.example/failing-hook",
                events=["points.awarded"],
                secret="whsec_test",
                failing_since=now - timedelta(minutes=10),
            )
        )
        session.add(
            Reward(
                id=uuid.uuid4(),
                tenant_id=tenant_id,
                env="live",
                lookup_code="LOWSTOCK1",
                name="Almost gone mug",
                type="physical",
                codes_loaded=5,
                codes_allocated=1,
            )
        )


def seed_waiting_events(
    session_factory: sessionmaker[Session], tenant_id: uuid.UUID
) -> list[uuid.UUID]:
    """Two events waiting for the dispatcher, one with a delivery in backoff to the
    tenant's failing endpoint."""
    now = datetime.now(UTC)
    with session_factory.begin() as session:
        endpoint = session.execute(
            select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id)
        ).scalar_one()
        events = [
            OutboxEvent(
                id=uuid.uuid4(),
                tenant_id=tenant_id,
                env="live",
                type="points.awarded",
                payload={},
                created_at=now - timedelta(seconds=seconds_ago),
            )
            for seconds_ago in (125, 3)
        ]
        session.add_all(events)
        session.flush()
        session.add(
            WebhookDelivery(
                id=uuid.uuid4(),
                endpoint_id=endpoint.id,
                event_id=events[0].id,
                event_type="points.awarded",
                status="pending",
                attempts=2,
                next_attempt_at=now + timedelta(minutes=5),
                last_attempt_at=now,
                last_response_status=503,
                last_error="HTTP 503",
                created_at=now,
            )
        )
        return [event.id for event in events]


@pytest.fixture
def seeded_tenant(make_tenant: Any, session_factory: sessionmaker[Session]) -> Iterator[TenantKeys]:
    tenant: TenantKeys = make_tenant()
    seed_overview(session_factory, tenant.tenant_id)
    # The suite's worker dispatches any waiting event within a second: the events are
    # held locked, as a dispatcher holds what it fans out, for the test's duration (its
    # fan-out skips locked events). Should it take them between their commit and the
    # lock, they are seeded again.
    with session_factory() as holder:
        for _ in range(5):
            event_ids = seed_waiting_events(session_factory, tenant.tenant_id)
            held = holder.execute(
                select(OutboxEvent.id)
                .where(OutboxEvent.id.in_(event_ids), OutboxEvent.dispatched_at.is_(None))
                .with_for_update()
            ).all()
            if len(held) == len(event_ids):
                yield tenant
                holder.rollback()
                return
            holder.rollback()
            with session_factory.begin() as session:
                session.execute(
                    delete(WebhookDelivery).where(WebhookDelivery.event_id.in_(event_ids))
                )
                session.execute(delete(OutboxEvent).where(OutboxEvent.id.in_(event_ids)))
    pytest.fail("the suite's worker dispatched the seeded events five times over")


def signed_in(client: FlaskClient, key: str) -> FlaskClient:
    answer = sign_in(client, key)
    assert answer.status_code == 303, answer.text
    return client


def text_of(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</(?:span|dd|p)>', html, re.S)
    assert match, f"the page has #{element_id}"
    return " ".join(re.sub(r"<[^>]+>", "", match.group(1)).split())


def test_the_overview_shows_the_tenant_s_figures_as_charts_and_numbers(
    client: FlaskClient, seeded_tenant: TenantKeys
) -> None:
    page = signed_in(client, seeded_tenant.admin_key).get("/console/")

    assert page.status_code == 200
    html = page.text
    assert "<title>Overview" in html
    assert text_of(html, "writes-hour-total") == "3"
    assert text_of(html, "writes-day-total") == "3"
    assert text_of(html, "fallback-hour").startswith("33.3 % (1 of 3 requests: 1 asked for it")
    assert text_of(html, "outbox-backlog") == "2"
    assert text_of(html, "outbox-oldest").startswith("2 min ")  # 125 s ago at the seeding
    assert "https://receiver.example/failing-hook" in html
    assert "HTTP 503" in html
    assert re.search(r"Almost gone mug</th>.*?<td class=\"num\">4</td>", html, re.S)
    kinds = re.search(r'<table id="writes-by-kind-hour">.*?</table>', html, re.S)
    assert kinds
    assert re.search(
        r"<code>points.award</code></th>\s*<td class=\"num\">2</td><td class=\"num\">0</td>",
        kinds.group(0),
    )
    assert "<code>rewards.claim</code>" in kinds.group(0)
    # Four charts, each announced by its title and a summary of what it draws.
    labels = re.findall(
        r'<svg class="chart" viewBox="0 0 640 \d+" role="img" aria-label="([^"]+)"', html
    )
    assert len(labels) == 4
    assert labels[0].startswith(
        "Writes per minute, last hour (UTC). 3 writes in the last hour: 2 succeeded, 1 refused"
    )
    assert "<title>Writes per 15 minutes, last 24 hours (UTC)</title>" in html
    # It asks for fresh panels every 30 s, and for the last 24 hours every 5 minutes.
    assert re.search(r'hx-get="/console/overview/panels"\s+hx-trigger="every 30s"', html)
    assert re.search(r'hx-get="/console/overview/day"\s+hx-trigger="every 300s"', html)


def test_the_fragments_carry_the_figures_without_the_layout(
    client: FlaskClient, seeded_tenant: TenantKeys
) -> None:
    panels = signed_in(client, seeded_tenant.admin_key).get(
        "/console/overview/panels", headers={"HX-Request": "true"}
    )

    assert panels.status_code == 200
    assert panels.mimetype == "text/html"
    assert panels.headers["Cache-Control"] == "no-store"
    assert "<html" not in panels.text and "<nav" not in panels.text
    assert text_of(panels.text, "writes-hour-total") == "3"
    assert text_of(panels.text, "outbox-backlog") == "2"
    assert "writes-day-total" not in panels.text

    day = client.get("/console/overview/day", headers={"HX-Request": "true"})
    assert day.status_code == 200
    assert "<html" not in day.text
    assert text_of(day.text, "writes-day-total") == "3"
    assert text_of(day.text, "fallback-day").startswith("33.3 % (1 of 3 requests")
    assert "<title>Writes answered 202 per 15 minutes, last 24 hours (UTC)</title>" in day.text


def test_the_overview_shows_only_the_signed_in_environment(
    client: FlaskClient, seeded_tenant: TenantKeys
) -> None:
    html = signed_in(client, seeded_tenant.test_admin_key).get("/console/").text

    assert text_of(html, "writes-hour-total") == "1"
    assert text_of(html, "fallback-hour").startswith("0.0 % (0 of 1 requests")
    assert text_of(html, "outbox-backlog") == "0"
    assert text_of(html, "outbox-oldest") == "none waiting"
    assert "No webhook endpoint is failing." in html
    assert "No active reward has fewer than 10 units left." in html


def test_the_low_stock_threshold_is_a_setting(make_app: Any, seeded_tenant: TenantKeys) -> None:
    app: Flask = make_app(console_low_stock_threshold=4)
    html = signed_in(app.test_client(), seeded_tenant.admin_key).get("/console/").text

    assert "Almost gone mug" not in html
    assert "No active reward has fewer than 4 units left." in html


def test_signed_out_the_overview_and_its_panels_send_to_the_sign_in(client: FlaskClient) -> None:
    page = client.get("/console/")
    assert page.status_code == 303
    assert page.headers["Location"].startswith("/console/login")

    for fragment in ("/console/overview/panels", "/console/overview/day"):
        answer = client.get(fragment, headers={"HX-Request": "true"})
        assert answer.status_code == 401
        assert answer.headers["HX-Redirect"].startswith("/console/login")
        assert client.get(fragment).status_code == 303
