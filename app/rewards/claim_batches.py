"""Claims in batches: the worker-side transaction that runs queued claims, and the uses
and cancels of claims.

A drain takes the queued operations of its lane (one or many rewards of a tenant, see
CLAIM_LANES): claims, and uses and cancels of earlier claims, which share the lane of the
claim's reward (a cancel gives stock back and refunds points, so it needs the very locks
a claim takes, in the same order). It runs them in one transaction:

1. read under lock: the rewards, in id order; the claims to use or cancel; then the
   participants the batch may write to, in external-id order (the one lock order:
   rewards, claims, participants), with the claims each participant already has of each
   reward;
2. decide (app.rewards.claim_decisions, pure): every operation in submission order
   against that state (window, per-user cap, stock, balance; a claim's status), so each
   gets the answer it would get alone;
3. write the accepted ones set-wise (app.rewards.claim_writes): status changes and codes
   back in stock, codes allocated oldest first (one statement per reward), ledger lines
   and balances, the claim rows and their `reward.reward_claimed` outbox events (one
   statement each for the whole batch).

The reward row lock is what makes "no oversell" and "one code per claim" hold with any
number of workers; batching is what makes that lock cheap to hold, and a hot reward's
claims all fall in one lane, so a drop is drained by one worker at a time.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from app.clock import utcnow
from app.errors import DomainError
from app.infra.pgcopy import array_literal, fetch_tuples, plain_array_literal
from app.ledger import LockedRow, lock_changing_rows
from app.models import Operation, Reward
from app.operation_kinds import OperationKind, lane_of
from app.points.lots import (
    LOT_BOOKS,
    LotBook,
    lot_books,
    lot_books_params,
    spenders_with_lots,
)
from app.rewards.claim_decisions import (
    AcceptedChange,
    AcceptedClaim,
    ClaimChangeRequest,
    ClaimRequest,
    HeldClaim,
    decide_claims,
)
from app.rewards.claim_writes import write_claims
from app.rewards.claims import (
    CANCEL,
    CLAIM_CANCEL_KIND,
    CLAIM_KIND,
    CLAIM_USE_KIND,
    FULFILLED,
    OUT_OF_STOCK,
    USE,
    claim_blocker,
    unlocked_balances,
)

# Claims of a tenant drain in this many lanes, a reward's always in the same one: claims
# spread over many rewards share transactions, and two lanes keep the usual two worker
# processes busy. A tenant's hot rewards that fall in one lane share its drain.
CLAIM_LANES = 2


def claim_lane(payload: dict[str, Any]) -> str:
    return lane_of(str(payload["reward_id"]), CLAIM_LANES)


_CHANGES = {CLAIM_USE_KIND: USE, CLAIM_CANCEL_KIND: CANCEL}


def _request_of(operation: Operation) -> ClaimRequest | ClaimChangeRequest:
    payload = operation.payload
    change = _CHANGES.get(operation.kind)
    if change is not None:
        return ClaimChangeRequest(
            operation.id, uuid.UUID(payload["claim_id"]), uuid.UUID(payload["reward_id"]), change
        )
    return ClaimRequest(
        operation.id,
        operation.idempotency_key,
        uuid.UUID(payload["reward_id"]),
        payload["participant_id"],
        bool(payload["points_deduction"]),
        payload.get("metadata"),
    )


def execute_claims(
    session: Session, operations: list[Operation]
) -> dict[uuid.UUID, dict[str, Any] | DomainError]:
    """Run queued claims, uses and cancels of one tenant set-wise: read under lock,
    decide, write.

    Every decision is made against the locked rows before anything is written, so a
    refused operation writes nothing and needs no savepoint. Answers are keyed by
    operation id.
    """
    first = operations[0]
    tenant_id, env, now = first.tenant_id, first.env, utcnow()
    requests = [_request_of(operation) for operation in operations]
    claims = [request for request in requests if isinstance(request, ClaimRequest)]
    changes = [request for request in requests if isinstance(request, ClaimChangeRequest)]
    rewards = _lock_rewards(session, tenant_id, env, {r.reward_id for r in requests})
    held = _lock_claims(session, tenant_id, env, changes) if changes else {}
    cancelled = [
        held[change.claim_id]
        for change in changes
        if change.change == CANCEL
        and change.claim_id in held
        and held[change.claim_id].status == FULFILLED
    ]
    # A reward that refuses every claim (a drained drop, a closed window) writes nothing,
    # and a balance is only consulted after those checks: its claimants are not read. One
    # out of stock that a cancel of this batch restocks may accept some: they are judged.
    restocked = {claim.reward_id for claim in cancelled}
    open_requests = []
    for request in claims:
        reward = rewards.get(request.reward_id)
        if reward is None:
            continue
        blocker = claim_blocker(
            reward, now=now, claims_by_participant=0, points_deduction=False, balance=None
        )
        if blocker is None or (blocker.code == OUT_OF_STOCK and reward.id in restocked):
            open_requests.append(request)
    refunded = {claim.participant_id for claim in cancelled if claim.points_deducted}
    locked, balances, spending = _lock_payers(
        session, tenant_id, env, open_requests, rewards, refunded
    )
    # Read for every active reward, open or not: the per-user cap is answered before stock.
    claims_so_far, lots = _claims_so_far_and_lots(
        session,
        [r for r in claims if r.reward_id in rewards and rewards[r.reward_id].is_active],
        locked,
        spending,
        now,
    )
    decisions = decide_claims(requests, rewards, balances, claims_so_far, now, lots=lots, held=held)
    accepted = [
        decision for decision in decisions if isinstance(decision, AcceptedClaim | AcceptedChange)
    ]
    bodies = write_claims(session, tenant_id, env, accepted, locked, lots, now) if accepted else {}
    return {
        request.operation_id: (
            bodies[request.operation_id]
            if isinstance(decision, AcceptedClaim | AcceptedChange)
            else decision
        )
        for request, decision in zip(requests, decisions, strict=True)
    }


def _lock_rewards(
    session: Session, tenant_id: uuid.UUID, env: str, reward_ids: set[uuid.UUID]
) -> dict[uuid.UUID, Reward]:
    """The rewards among `reward_ids`, row-locked in id order (rows are locked as the sort
    hands them out). Inactive ones too: a cancel of one of their claims still gives its
    stock and points back; claims of them are refused by claim_blocker."""
    rows = session.execute(
        select(Reward)
        .where(Reward.id.in_(sorted(reward_ids)), Reward.tenant_id == tenant_id, Reward.env == env)
        .order_by(Reward.id)
        .options(*_NOT_FOR_CLAIMS)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalars()
    return {reward.id: reward for reward in rows}


# What the catalog shows of a reward and no claim reads: not loaded on the hot path (the
# JSON and array columns cost their parsing on every batch); reading one there is an
# error. The ring of recent claims is moved on by the database (move_recent_claims).
_NOT_FOR_CLAIMS = [
    defer(column, raiseload=True)
    for column in (
        Reward.description,
        Reward.category,
        Reward.image_url,
        Reward.slug,
        Reward.custom_attributes,
        Reward.media,
        Reward.recent_claims,
        Reward.recent_claims_through,
    )
]


# The claims to use or cancel, row-locked (after the rewards, before the participants: the
# one lock order); whether each holds one of its reward's pre-loaded codes.
_LOCK_CLAIMS = """
    SELECT CAST(claim.id AS text), CAST(claim.reward_id AS text), claim.participant_id,
           claim.status, claim.points_deducted, claim.claimed_at, claim.used_at,
           claim.cancelled_at,
           EXISTS (SELECT FROM reward_codes AS code WHERE code.claim_id = claim.id)
    FROM claims AS claim
    WHERE claim.id = ANY(CAST(%(claim_ids)s AS uuid[]))
      AND claim.tenant_id = %(tenant_id)s AND claim.env = %(env)s
    ORDER BY claim.id
    FOR UPDATE OF claim
"""


def _lock_claims(
    session: Session, tenant_id: uuid.UUID, env: str, changes: list[ClaimChangeRequest]
) -> dict[uuid.UUID, HeldClaim]:
    rows = fetch_tuples(
        session,
        _LOCK_CLAIMS,
        {
            "claim_ids": plain_array_literal(sorted({str(c.claim_id) for c in changes})),
            "tenant_id": tenant_id,
            "env": env,
        },
    )
    return {
        uuid.UUID(claim_id): HeldClaim(
            uuid.UUID(claim_id),
            uuid.UUID(reward_id),
            participant_id,
            status,
            points_deducted,
            bool(holds_code),
            claimed_at,
            used_at,
            cancelled_at,
        )
        for (
            claim_id,
            reward_id,
            participant_id,
            status,
            points_deducted,
            claimed_at,
            used_at,
            cancelled_at,
            holds_code,
        ) in rows
    }


def _lock_payers(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    requests: list[ClaimRequest],
    rewards: dict[uuid.UUID, Reward],
    refunded: set[str],
) -> tuple[dict[str, LockedRow], dict[str, int], dict[str, int]]:
    """Lock the participants the batch may write to (claimants who may pay, and those a
    cancel refunds); the balances its decisions read, and the points each may pay (by
    participant id)."""
    # Every claimant of a multiplier gets a multiplier row, so needs a participant row.
    create = {
        r.participant_id for r in requests if rewards[r.reward_id].type == "points_multiplier"
    }
    # Otherwise only payers are written to, and one with no row has nothing to pay with:
    # none is created for it (its refused claim writes nothing).
    spending: dict[str, int] = {}
    for r in requests:
        cost = rewards[r.reward_id].points_cost or 0
        if r.points_deduction and cost > 0:
            spending[r.participant_id] = spending.get(r.participant_id, 0) + cost
    locked = lock_changing_rows(
        session,
        tenant_id,
        env,
        create=create,
        existing=[*spending, *refunded],
        spending=bool(spending),
    )
    balances = {participant_id: row.balance for participant_id, row in locked.items()}
    # A free claim with points_deduction answers the balance it leaves, unchanged.
    free = {r.participant_id for r in requests if r.points_deduction} - set(balances)
    if free:
        balances.update(unlocked_balances(session, tenant_id, env, free))
    return locked, balances, spending


# One index probe per (reward, participant): `participant_id = ANY(...)` was planned as a
# filter over every claim of the reward, which a hot drop makes thousands long. With the
# payers' lots (app.points.lots.LOT_BOOKS) when some may pay: one round trip.
_CLAIMS_SO_FAR = """
    SELECT coalesce(json_agg(json_build_array(
               wanted.reward_id, wanted.participant_id, counted.claims)), '[]')::text
    FROM unnest(CAST(%(reward_ids)s AS uuid[]), CAST(%(participant_ids)s AS text[]))
        AS wanted(reward_id, participant_id)
    CROSS JOIN LATERAL (
        SELECT count(*) AS claims FROM claims
        WHERE reward_id = wanted.reward_id AND participant_id = wanted.participant_id
          AND status <> 'cancelled'
    ) AS counted
    WHERE counted.claims > 0
"""
_CLAIMS_SO_FAR_AND_LOTS = "SELECT (" + _CLAIMS_SO_FAR + "), " + LOT_BOOKS


def _claims_so_far_and_lots(
    session: Session,
    requests: list[ClaimRequest],
    locked: dict[str, LockedRow],
    spending: dict[str, int],
    now: datetime,
) -> tuple[dict[tuple[uuid.UUID, str], int], dict[str, LotBook]]:
    """The claims each participant already has of each reward, and the lots of those
    who may pay (by participant id)."""
    pairs = sorted({(str(r.reward_id), r.participant_id) for r in requests})
    spending_by_pk = spenders_with_lots(spending, locked)
    if not pairs:
        return {}, {}
    params = {
        "reward_ids": plain_array_literal(reward_id for reward_id, _ in pairs),
        "participant_ids": array_literal([participant_id for _, participant_id in pairs]),
    }
    books = "[]"
    if spending_by_pk:
        [(counted, books)] = fetch_tuples(
            session, _CLAIMS_SO_FAR_AND_LOTS, {**params, **lot_books_params(spending_by_pk, now)}
        )
    else:
        [(counted,)] = fetch_tuples(session, _CLAIMS_SO_FAR, params)
    lots = lot_books(books, spending, locked)
    claims_so_far = {
        (uuid.UUID(reward_id), participant_id): int(count)
        for reward_id, participant_id, count in json.loads(counted)
    }
    return claims_so_far, lots


CLAIM = OperationKind(
    name=CLAIM_KIND,
    batch_handler=execute_claims,
    success_status=201,
    # A claim's idempotency key is part of the claim record: kept forever.
    retain_forever=True,
    partition=claim_lane,
    lane=CLAIM_KIND,
)
# Uses and cancels drain in the lane of the claim's reward, through the same handler.
CLAIM_USE, CLAIM_CANCEL = (
    OperationKind(name=name, batch_handler=execute_claims, partition=claim_lane, lane=CLAIM_KIND)
    for name in (CLAIM_USE_KIND, CLAIM_CANCEL_KIND)
)
