"""The console's start page: the write traffic, the 202 share, the outbox backlog, failing
webhook endpoints and low-stock rewards of the signed-in tenant and environment, as
server-drawn charts and figures that refresh themselves, and who is signed in until when.

Two fragments refresh the page (htmx polls them): the panels of the last hour and the
levels every 30 s, and the last 24 hours every 5 minutes, since reading a day of writes
costs the database some 24 times an hour's (app.console_overview.read_last_day) and a
quarter-hour chart barely moves in 30 s.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Response, render_template

from api.console import bp
from api.console.overview_charts import age_text, day_charts, hour_charts, utc_text
from api.console.pages import render_page, signed_in
from api.runtime import runtime
from app.clock import utcnow
from app.console_overview import read_last_day, read_overview

PANELS_REFRESH_SECONDS = 30
DAY_REFRESH_SECONDS = 300

bp.add_app_template_filter(age_text, "age_text")
bp.add_app_template_filter(utc_text, "utc_text")


def _sync_wait() -> timedelta:
    return timedelta(seconds=runtime().settings.sync_wait_timeout_seconds)


def _panels() -> dict[str, Any]:
    principal = signed_in().principal
    rt = runtime()
    with rt.session_factory() as session:
        overview = read_overview(
            session,
            principal.tenant_id,
            principal.env,
            now=utcnow(),
            sync_wait=_sync_wait(),
            low_stock_threshold=rt.settings.console_low_stock_threshold,
        )
    return {
        "overview": overview,
        "charts": hour_charts(overview.last_hour),
        "refresh_seconds": PANELS_REFRESH_SECONDS,
    }


def _day() -> dict[str, Any]:
    principal = signed_in().principal
    with runtime().session_factory() as session:
        last_day = read_last_day(
            session, principal.tenant_id, principal.env, now=utcnow(), sync_wait=_sync_wait()
        )
    return {
        "last_day": last_day,
        "day_charts": day_charts(last_day),
        "day_refresh_seconds": DAY_REFRESH_SECONDS,
    }


def _fragment(template: str, context: dict[str, Any]) -> Response:
    return Response(render_template(template, **context), mimetype="text/html")


@bp.get("/")
def overview() -> Response:
    return render_page(
        "console/overview.html", title="Overview", sign_in=signed_in(), **_panels(), **_day()
    )


@bp.get("/overview/panels")
def overview_panels() -> Response:
    """The last hour's panels and the levels, for the page's refresh."""
    return _fragment("console/overview_panels.html", _panels())


@bp.get("/overview/day")
def overview_day() -> Response:
    """The last 24 hours' panels, for the page's (slower) refresh."""
    return _fragment("console/overview_day.html", _day())
