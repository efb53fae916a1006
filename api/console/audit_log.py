"""The audit log of the signed-in tenant and environment, newest first, paged."""

from __future__ import annotations

from flask import Response

from api.console import bp
from api.console.forms import parse_console_query
from api.console.pages import render_page, signed_in
from api.runtime import runtime
from api.schemas import PageQuery
from app.audit import list_audit_entries


@bp.get("/audit")
def audit_log() -> Response:
    query = parse_console_query(PageQuery)  # a bad page number is a 422 page, never a 500
    principal = signed_in().principal
    with runtime().session_factory() as session:
        entries, total = list_audit_entries(
            session, principal.tenant_id, principal.env, offset=query.offset, limit=query.page_size
        )
    return render_page(
        "console/audit.html",
        title="Audit log",
        entries=entries,
        total=total,
        page=query.page,
        page_size=query.page_size,
    )
