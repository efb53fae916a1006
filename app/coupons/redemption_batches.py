"""Redemptions in batches, and voids: the worker-side transactions of coupon writes.

A redeem names a code, not a coupon, so redemptions drain in lanes of their code
(REDEEM_LANES per tenant): every redemption of one code, the stampede on a published
code, falls in one lane and is drained by one worker at a time, many per transaction.
A batch runs:

1. read under lock: the codes' coupons, row-locked in id order (the one lock order of
   coupons), then, under those locks, the code rows (which single-use codes are held),
   each participant's live uses, returning customers and the orders already redeemed;
2. decide (app.coupons.redemption_decisions, pure): every redemption in submission order
   against that state, so each gets the answer it would get alone;
3. write the accepted ones set-wise: the redemption rows, the single-use codes they hold,
   the coupons' usage counts and the `coupon.redeemed` events.

The coupon row lock is what makes "usage counted exactly once" hold with any number of
workers, whichever lanes a coupon's codes fall in: every redemption and void of a coupon
holds it while it reads and writes the coupon's uses. Generated codes of one coupon
spread over the lanes and meet at that lock.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.coupons.redemption_decisions import (
    AcceptedRedemption,
    RedeemRequest,
    decide_redemptions,
    order_of,
    redemption_body,
)
from app.coupons.rules import new_customers_only
from app.coupons.usage import (
    PriorRedemption,
    find_codes,
    load_coupons,
    participant_uses,
    prior_redemptions,
    returning_customers,
)
from app.errors import DomainError, NotFound, parse_uuid
from app.infra.pgcopy import array_literal, fetch_tuples
from app.models import CouponRedemption, Operation
from app.operation_kinds import OperationKind, lane_of
from app.operations import fingerprint
from app.outbox import COUPON_REDEEMED, record_events

REDEEM_KIND = "coupons.redeem"
VOID_KIND = "coupons.void"
# Two lanes keep the usual two worker processes busy with a tenant's redemptions.
REDEEM_LANES = 2


def redemption_not_found() -> NotFound:
    return NotFound("redemption_not_found", "No coupon redemption exists with this id")


def parse_redemption_id(value: str) -> uuid.UUID:
    return parse_uuid(value, redemption_not_found())


def redeem_lane(payload: dict[str, Any]) -> str:
    return lane_of(payload["code"], REDEEM_LANES)


def _request(operation: Operation) -> RedeemRequest:
    payload = operation.payload
    return RedeemRequest(
        operation.id,
        payload["code"],
        payload["participant_id"],
        payload["order_id"],
        order_of(payload),
        fingerprint(REDEEM_KIND, payload),
    )


def execute_redemptions(
    session: Session, operations: list[Operation]
) -> dict[uuid.UUID, dict[str, Any] | DomainError]:
    """Run queued redemptions of one tenant lane: read under lock, decide, write."""
    first = operations[0]
    tenant_id, env, now = first.tenant_id, first.env, utcnow()
    requests = [_request(operation) for operation in operations]
    # Which coupon a code names never changes: read before the lock, what it holds after.
    named = find_codes(session, tenant_id, env, (r.code for r in requests))
    coupons = load_coupons(
        session, tenant_id, env, (row.coupon_id for row in named.values()), lock=True
    )
    codes = find_codes(session, tenant_id, env, named)
    # The requests whose code names a coupon, with it.
    found = [
        (request, coupons[codes[request.code].coupon_id])
        for request in requests
        if request.code in codes and codes[request.code].coupon_id in coupons
    ]
    uses = participant_uses(session, {(coupon.id, r.participant_id) for r, coupon in found})
    newcomers_only = {r.participant_id for r, coupon in found if new_customers_only(coupon)}
    _lock_newcomers(session, tenant_id, env, newcomers_only)
    returning = returning_customers(session, tenant_id, env, newcomers_only)
    priors = prior_redemptions(session, {(coupon.id, r.order_id) for r, coupon in found})
    decisions = decide_redemptions(requests, codes, coupons, uses, returning, priors, now)
    accepted = [decision for decision in decisions if isinstance(decision, AcceptedRedemption)]
    if accepted:
        _write_redemptions(session, tenant_id, env, accepted, now)
    answers: dict[uuid.UUID, dict[str, Any] | DomainError] = {}
    for request, decision in zip(requests, decisions, strict=True):
        if isinstance(decision, AcceptedRedemption):
            answers[request.operation_id] = redemption_body(decision.as_prior(), decision.coupon)
        elif isinstance(decision, PriorRedemption):
            answers[request.operation_id] = redemption_body(decision, coupons[decision.coupon_id])
        else:
            answers[request.operation_id] = decision
    return answers


# A participant's first redemption is decided by one batch at a time, whichever coupons
# (and lanes) are involved: a transaction-scoped advisory lock per participant, in the
# two-key space under this class (the one-key space is the dispatcher's). Taken after the
# coupons and in key order, so no two batches wait on each other in a cycle; a hash clash
# only serializes two participants needlessly.
_NEWCOMER_LOCK_CLASS = 0x0C0F
_LOCK_NEWCOMERS = """
    SELECT pg_advisory_xact_lock(%(lock_class)s, key)
    FROM (
        SELECT DISTINCT hashtext(%(program)s || participant_id) AS key
        FROM unnest(CAST(%(participant_ids)s AS text[])) AS wanted(participant_id)
        ORDER BY key
    ) AS keys
"""


def _lock_newcomers(
    session: Session, tenant_id: uuid.UUID, env: str, participants: set[str]
) -> None:
    """Serialize the new_customers_only decisions of `participants` with every other
    batch's: without it, two batches in different lanes could each see no earlier
    redemption and both accept a participant's first."""
    if participants:
        fetch_tuples(
            session,
            _LOCK_NEWCOMERS,
            {
                "lock_class": _NEWCOMER_LOCK_CLASS,
                "program": f"{tenant_id}:{env}:",
                "participant_ids": array_literal(sorted(participants)),
            },
        )


def _decimal_text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


_INSERT_REDEMPTIONS = """
    INSERT INTO coupon_redemptions (
        id, tenant_id, env, coupon_id, code, participant_id, order_id, order_amount,
        discount_amount, status, request_fingerprint, operation_id, redeemed_at
    )
    SELECT r.id, %(tenant_id)s, %(env)s, r.coupon_id, r.code, r.participant_id, r.order_id,
           r.order_amount, r.discount_amount, 'redeemed', r.request_fingerprint,
           r.operation_id, %(now)s
    FROM jsonb_to_recordset(CAST(%(redemptions)s AS jsonb)) AS r(
        id uuid, coupon_id uuid, code text, participant_id text, order_id text,
        order_amount numeric, discount_amount numeric, request_fingerprint text,
        operation_id uuid
    )
"""
# The single-use codes the batch's redemptions now hold (by primary key).
_HOLD_CODES = """
    UPDATE coupon_codes AS cc SET redemption_id = held.redemption_id
    FROM unnest(CAST(%(codes)s AS text[]), CAST(%(redemption_ids)s AS uuid[]))
        AS held(code, redemption_id)
    WHERE cc.tenant_id = %(tenant_id)s AND cc.env = %(env)s AND cc.code = held.code
"""


def _write_redemptions(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    accepted: list[AcceptedRedemption],
    now: datetime,
) -> None:
    rows = [
        {
            "id": str(redemption.redemption_id),
            "coupon_id": str(redemption.coupon.id),
            "code": redemption.request.code,
            "participant_id": redemption.request.participant_id,
            "order_id": redemption.request.order_id,
            "order_amount": _decimal_text(redemption.request.order.total),
            "discount_amount": _decimal_text(redemption.discount.amount),
            "request_fingerprint": redemption.request.fingerprint,
            "operation_id": str(redemption.request.operation_id),
        }
        for redemption in accepted
    ]
    where = {"tenant_id": tenant_id, "env": env}
    connection = session.connection()
    connection.exec_driver_sql(
        _INSERT_REDEMPTIONS, {**where, "now": now, "redemptions": json.dumps(rows)}
    )
    held = [redemption for redemption in accepted if redemption.single_use]
    if held:
        connection.exec_driver_sql(
            _HOLD_CODES,
            {
                **where,
                "codes": [redemption.request.code for redemption in held],
                "redemption_ids": [redemption.redemption_id for redemption in held],
            },
        )
    events = [
        {
            **redemption_body(redemption.as_prior(), redemption.coupon),
            "campaign": redemption.coupon.campaign,
            "environment": env,
        }
        for redemption in accepted
    ]
    record_events(session, tenant_id, env, COUPON_REDEEMED, events)
    session.flush()  # the coupons' usage counts


# A single-use code the voided redemption held is free again (a coupon's own code holds
# no redemption: nothing to release).
_RELEASE_CODE = """
    UPDATE coupon_codes SET redemption_id = NULL
    WHERE tenant_id = %(tenant_id)s AND env = %(env)s AND code = %(code)s
      AND redemption_id = %(held)s
"""


def void_redemption(session: Session, operation: Operation) -> dict[str, Any]:
    """Void a redemption (its order was cancelled): the use goes back to the coupon, to
    the participant's limit and, for a single-use code, to the code. Voiding a voided
    redemption answers as the first void did."""
    tenant_id, env = operation.tenant_id, operation.env
    redemption_id = uuid.UUID(operation.payload["redemption_id"])
    query = select(CouponRedemption).where(
        CouponRedemption.id == redemption_id,
        CouponRedemption.tenant_id == tenant_id,
        CouponRedemption.env == env,
    )
    found = session.execute(query).scalar_one_or_none()
    if found is None:
        raise redemption_not_found()
    # The coupon first (the one lock order), then the redemption read again under it.
    coupon = load_coupons(session, tenant_id, env, [found.coupon_id], lock=True)[found.coupon_id]
    redemption = session.execute(
        query.with_for_update().execution_options(populate_existing=True)
    ).scalar_one()
    if redemption.status == "redeemed":
        redemption.status = "voided"
        redemption.voided_at = utcnow()
        coupon.usage_count -= 1
        session.connection().exec_driver_sql(
            "UPDATE coupon_codes SET redemption_id = NULL"
            " WHERE tenant_id = %(tenant_id)s AND env = %(env)s AND code = %(code)s"
            " AND redemption_id = %(redemption_id)s",
            {
                "tenant_id": tenant_id,
                "env": env,
                "code": redemption.code,
                "redemption_id": redemption_id,
            },
        )
        session.flush()
    return redemption_body(PriorRedemption.of(redemption), coupon, voided_at=redemption.voided_at)


COUPON_REDEEM = OperationKind(
    name=REDEEM_KIND,
    batch_handler=execute_redemptions,
    success_status=201,
    partition=redeem_lane,
)
COUPON_VOID = OperationKind(name=VOID_KIND, handler=void_redemption)
