"""A participant's points balance, tier standing and ledger history."""

from __future__ import annotations

from flask import Blueprint

from api.auth import current_principal
from api.endpoint import Access, endpoint
from api.points.schemas import PointsBalance, TransactionsPage, TransactionsQuery
from api.runtime import runtime
from api.validation import check_participant_id
from app.points.queries import points_summary, transactions_page

bp = Blueprint("points_balances", __name__, url_prefix="/api/v1/gamify")


@endpoint(
    bp,
    "GET",
    "/participants/<participant_id>/points",
    summary="Balance, lifetime totals, tier standing and active multipliers",
    tag="points",
    access=Access.PARTICIPANT,
    responses={200: PointsBalance},
)
def get_points(participant_id: str) -> tuple[PointsBalance, int]:
    check_participant_id(participant_id)
    principal = current_principal()
    with runtime().session_factory() as session:
        summary = points_summary(session, principal.tenant_id, principal.env, participant_id)
    return PointsBalance.model_validate(summary), 200


@endpoint(
    bp,
    "GET",
    "/participants/<participant_id>/points/transactions",
    summary="The participant's points transactions, newest first, optionally filtered",
    tag="points",
    access=Access.PARTICIPANT,
    query=TransactionsQuery,
    responses={200: TransactionsPage},
)
def list_transactions(
    participant_id: str, query: TransactionsQuery
) -> tuple[TransactionsPage, int]:
    check_participant_id(participant_id)
    principal = current_principal()
    with runtime().session_factory() as session:
        entries, total = transactions_page(
            session,
            principal.tenant_id,
            principal.env,
            participant_id,
            query.offset,
            query.page_size,
            query.ledger_filter(),
        )
    return TransactionsPage.model_validate(
        {"transactions": entries, "total": total, "page": query.page, "page_size": query.page_size}
    ), 200
