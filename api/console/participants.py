"""Participants in the console: search by id; a participant's balance, tier, ledger
(filtered, paged), claims, badges, streaks and challenges, read with the app query
functions the API uses; and points awarded or deducted by hand, through the API's write
path, idempotent on the form's token."""

from __future__ import annotations

import re
from typing import Any

from flask import Response, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from api.audit import audit_write_once
from api.console import bp
from api.console.forms import FieldErrors, FormInvalid, FormReader, parse_console_query
from api.console.pages import (
    FORM_TOKEN_FIELD,
    WriteAnswer,
    render_page,
    signed_in,
    submit_write,
)
from api.points.schemas import AwardRequest, DeductRequest, TransactionsQuery
from api.runtime import runtime
from api.validation import check_participant_id
from api.write_path import IDEMPOTENCY_KEY_PATTERN
from app.clock import utcnow
from app.engagement.badge_reads import participant_badges
from app.engagement.reads import list_challenges, participant_streaks
from app.errors import DomainError
from app.points.kinds import AWARD_KIND, DEDUCT_KIND
from app.points.queries import (
    find_participant_pk,
    points_summary,
    transactions_page,
)
from app.points.tier_status import tier_status
from app.rewards.claims import list_participant_claims

CLAIMS_SHOWN = 20
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
# Errors of a points write that belong to a field of the form.
WRITE_ERROR_FIELDS = {"insufficient_points": "amount"}
OPERATIONS = {"award": (AWARD_KIND, "points.awarded"), "deduct": (DEDUCT_KIND, "points.deducted")}


def _ledger_query() -> TransactionsQuery:
    """The ledger filters; a bare date (the form's date control) reads as 00:00 UTC."""
    args = dict(request.args)
    for name in ("from", "to"):
        if _DATE_ONLY.fullmatch(args.get(name, "")):
            args[name] += "T00:00:00Z"
    return parse_console_query(TransactionsQuery, args)


@bp.get("/participants")
def participants() -> BaseResponse:
    participant_id = request.args.get("participant_id", "").strip()
    if participant_id:
        check_participant_id(participant_id)
        return redirect(url_for("console.participant", participant_id=participant_id), 303)
    return render_page("console/participants.html", title="Participants")


def _participant_page(
    participant_id: str,
    *,
    status: int = 200,
    answer: WriteAnswer | None = None,
    done: str | None = None,
    errors: FieldErrors | None = None,
    fields: dict[str, str] | None = None,
) -> Response:
    check_participant_id(participant_id)
    query = _ledger_query()
    principal = signed_in().principal
    tenant_id, env, now = principal.tenant_id, principal.env, utcnow()
    with runtime().session_factory() as session:
        known = find_participant_pk(session, tenant_id, env, participant_id) is not None
        summary = points_summary(session, tenant_id, env, participant_id)
        tier = tier_status(session, tenant_id, env, participant_id)
        entries, total = transactions_page(
            session,
            tenant_id,
            env,
            participant_id,
            query.offset,
            query.page_size,
            query.ledger_filter(),
        )
        claims, claims_total, points_spent = list_participant_claims(
            session, tenant_id, env, participant_id, offset=0, limit=CLAIMS_SHOWN
        )
        badges = participant_badges(session, tenant_id, env, participant_id)
        streaks = participant_streaks(session, tenant_id, env, participant_id, now)
        challenges = [
            challenge
            for challenge in list_challenges(
                session, tenant_id, env, now, participant_id=participant_id
            )
            if challenge["progress"]["current"] or challenge["progress"]["enrolled"]
        ]
    ledger_filters = {
        name: request.args.get(name, "") for name in ("direction", "type", "action", "from", "to")
    }
    return render_page(
        "console/participant.html",
        title=f"Participant {participant_id}",
        status=status,
        participant_id=participant_id,
        known=known,
        summary=summary,
        tier=tier,
        entries=entries,
        total=total,
        page=query.page,
        page_size=query.page_size,
        ledger_filters=ledger_filters,
        claims=claims,
        claims_total=claims_total,
        points_spent=points_spent,
        badges=badges,
        streaks=streaks,
        challenges=challenges,
        answer=answer,
        done=done,
        errors=errors,
        fields=fields or {},
    )


@bp.get("/participants/view")
def participant() -> Response:
    participant_id = request.args.get("participant_id", "")
    return _participant_page(participant_id)


@bp.post("/participants/points")
def change_points() -> Response:
    """Award or deduct by hand. The form's token is the write's Idempotency-Key: the same
    form posted twice is one write (the second gets the first's answer)."""
    participant_id = request.form.get("participant_id", "")
    check_participant_id(participant_id)
    reader = FormReader(request.form)
    operation = reader.raw("operation")
    token = reader.raw(FORM_TOKEN_FIELD)
    fields = dict(request.form)
    if operation not in OPERATIONS:
        reader.errors.add("operation", "choose award or deduct")
    if not IDEMPOTENCY_KEY_PATTERN.fullmatch(token):
        raise DomainError("validation_error", "The form's token is missing; reload the page", 422)
    values = {
        "participant_id": participant_id,
        "amount": reader.integer("amount"),
        "reason": reader.text("reason"),
    }
    body: AwardRequest | DeductRequest
    try:
        if operation == "deduct":
            body = reader.validate(DeductRequest, values)
        else:
            body = reader.validate(AwardRequest, values)
    except FormInvalid as invalid:
        return _participant_page(participant_id, status=422, errors=invalid.errors, fields=fields)
    kind, action = OPERATIONS[operation]
    payload = (
        body.payload()
        if isinstance(body, AwardRequest)
        else body.model_dump(exclude={"idempotency_key"})
    )
    answer = submit_write(kind, payload, token)
    if not (answer.succeeded or answer.accepted):
        errors = FieldErrors.from_error(DomainError.from_body(answer.body), WRITE_ERROR_FIELDS)
        return _participant_page(participant_id, status=answer.status, errors=errors, fields=fields)
    details: dict[str, Any] = {
        "participant_id": participant_id,
        "amount": body.amount,
        "reason": body.reason,
        "status": "succeeded" if answer.succeeded else "accepted",
        **{
            name: answer.body[name]
            for name in ("transaction_id", "new_balance", "operation_id")
            if name in answer.body
        },
    }
    with runtime().session_factory.begin() as session:
        audit_write_once(session, action, token, details)
    return _participant_page(participant_id, answer=answer, done=f"{operation}ed")
