"""Admin: the tenant environment's points program settings."""

from __future__ import annotations

from flask import Blueprint

from api.audit import audit_change
from api.auth import current_principal
from api.endpoint import Access, endpoint
from api.points.schemas import ProgramUpdate, ProgramView, TierQualificationView
from api.runtime import runtime
from app.points.program import StoredProgram, read_program, update_program

bp = Blueprint("program", __name__, url_prefix="/api/v1/gamify")


def _view(stored: StoredProgram) -> ProgramView:
    window_days = stored.program.tier_window_days
    return ProgramView(
        points_expiry_days=stored.program.points_expiry_days,
        expiring_soon_days=stored.program.expiring_soon_days,
        tier_qualification=TierQualificationView(
            basis="lifetime" if window_days is None else "rolling", window_days=window_days
        ),
        holidays=list(stored.program.holidays),
        updated_at=stored.updated_at,
    )


@endpoint(
    bp,
    "GET",
    "/admin/program",
    summary="The points program settings (the defaults until changed)",
    tag="program",
    access=Access.ADMIN,
    responses={200: ProgramView},
)
def get_program() -> tuple[ProgramView, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        return _view(read_program(session, principal.tenant_id, principal.env)), 200


@endpoint(
    bp,
    "PATCH",
    "/admin/program",
    summary="Change the points program settings; fields not sent keep their values",
    tag="program",
    access=Access.ADMIN,
    body=ProgramUpdate,
    responses={200: ProgramView},
)
def patch_program(body: ProgramUpdate) -> tuple[ProgramView, int]:
    principal = current_principal()
    changes = body.changes()
    with runtime().session_factory.begin() as session:
        stored = update_program(session, principal.tenant_id, principal.env, changes)
        if changes:
            # The program has no id of its own: it is the tenant's (the entry has the env).
            details = {"changed": sorted(changes), "values": changes}
            audit_change(session, "program.updated", principal.tenant_id, details)
        return _view(stored), 200
