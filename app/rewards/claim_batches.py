"""Claims in batches: the worker-side transaction that runs queued claims.

A drain takes the queued claims of its lane (one or many rewards of a tenant, see
CLAIM_LANES) and runs them in one transaction:

1. read under lock: the rewards, in id order, then the participants the batch may write
   to, in external-id order (the one lock order: rewards first, then participants), with
   the claims each participant already has of each reward;
2. decide (`decide_claims`, pure): every claim in submission order against that state
   (window, per-user cap, stock, balance), so each gets the answer it would get alone;
3. write the accepted ones set-wise: codes allocated oldest first (one statement per
   reward), ledger lines and balances, the append-only claim rows and their
   `reward.reward_claimed` outbox events (one statement each for the whole batch).

The reward row lock is what makes "no oversell" and "one code per claim" hold with any
number of workers; batching is what makes that lock cheap to hold, and a hot reward's
claims all fall in one lane, so a drop is drained by one worker at a time.
"""

from __future__ import annotations

import json
import secrets
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.errors import DomainError
from app.ledger import LockedRow, lock_changing_rows
from app.models import Operation, ParticipantMultiplier, Reward
from app.operations import OperationKind, register_kind
from app.outbox import REWARD_CLAIMED, record_events
from app.points.pgcopy import array_literal, fetch_tuples, plain_array_literal
from app.rewards.catalog import CODELESS_TYPES, reward_not_found
from app.rewards.claims import CLAIM_KIND, claim_blocker, unlocked_balances

# Claims of a tenant drain in this many lanes, a reward's always in the same one: claims
# spread over many rewards share transactions, and two lanes keep the usual two worker
# processes busy. A tenant's hot rewards that fall in one lane share its drain.
CLAIM_LANES = 2

# Unambiguous characters for generated codes (no 0/O, 1/I/L).
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
_GENERATED_PREFIX_DEFAULTS = {"physical": "ORD-", "digital": "KEY-"}


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    operation_id: uuid.UUID
    idempotency_key: str | None
    reward_id: uuid.UUID
    participant_id: str
    points_deduction: bool


@dataclass(slots=True)
class AcceptedClaim:
    request: ClaimRequest
    reward: Reward
    claim_id: uuid.UUID
    points_deducted: int | None
    new_balance: int | None
    preloaded: bool  # takes one of the reward's pre-loaded codes (else one is generated)
    code_value: str | None = None


ClaimDecision = AcceptedClaim | DomainError


def decide_claims(
    requests: list[ClaimRequest],
    rewards: dict[uuid.UUID, Reward],
    balances: dict[str, int],
    claims_so_far: dict[tuple[uuid.UUID, str], int],
    now: datetime,
    new_claim_id: Callable[[], uuid.UUID] = uuid.uuid4,
) -> list[ClaimDecision]:
    """Each claim's decision, in order. No I/O: it reads and advances the locked state
    it is given (the rewards' counters, balances, claims so far) as each claim is taken."""
    decisions: list[ClaimDecision] = []
    for request in requests:
        reward = rewards.get(request.reward_id)
        if reward is None:
            decisions.append(reward_not_found())
            continue
        participant_id, deduct = request.participant_id, request.points_deduction
        counted = (reward.id, participant_id)
        blocker = claim_blocker(
            reward,
            now=now,
            claims_by_participant=claims_so_far.get(counted, 0),
            points_deduction=deduct,
            balance=balances.get(participant_id, 0),
        )
        if blocker is not None:
            decisions.append(blocker)
            continue
        claims_so_far[counted] = claims_so_far.get(counted, 0) + 1
        points_deducted = new_balance = None
        if deduct:
            cost = reward.points_cost or 0
            balances[participant_id] = balances.get(participant_id, 0) - cost
            points_deducted, new_balance = cost, balances[participant_id]
        preloaded = (
            reward.type not in CODELESS_TYPES and reward.codes_allocated < reward.codes_loaded
        )
        if preloaded:
            reward.codes_allocated += 1
        reward.claims_count += 1
        decisions.append(
            AcceptedClaim(request, reward, new_claim_id(), points_deducted, new_balance, preloaded)
        )
    return decisions


def claim_lane(payload: dict[str, Any]) -> str:
    # crc32, not hash(): the web processes that record and the workers must agree.
    return f"lane-{zlib.crc32(str(payload['reward_id']).encode()) % CLAIM_LANES}"


def execute_claims(
    session: Session, operations: list[Operation]
) -> dict[uuid.UUID, dict[str, Any] | DomainError]:
    """Run queued claims of one tenant set-wise: read under lock, decide, write.

    Every decision is made against the locked rows before anything is written, so a
    refused claim writes nothing and needs no savepoint. Answers are keyed by operation id.
    """
    first = operations[0]
    tenant_id, env, now = first.tenant_id, first.env, utcnow()
    requests = [
        ClaimRequest(
            operation.id,
            operation.idempotency_key,
            uuid.UUID(operation.payload["reward_id"]),
            operation.payload["participant_id"],
            bool(operation.payload["points_deduction"]),
        )
        for operation in operations
    ]
    rewards = _lock_rewards(session, tenant_id, env, {r.reward_id for r in requests})
    # A reward that refuses every claim (a drained drop, a closed window) writes nothing,
    # and a balance is only consulted after those checks: its claimants are not read.
    open_requests = [
        request
        for request in requests
        if request.reward_id in rewards
        and claim_blocker(
            rewards[request.reward_id],
            now=now,
            claims_by_participant=0,
            points_deduction=False,
            balance=None,
        )
        is None
    ]
    locked, balances = _lock_payers(session, tenant_id, env, open_requests, rewards)
    # Read for every reward, open or not: the per-user cap is answered before stock.
    claims_so_far = _claims_so_far(session, [r for r in requests if r.reward_id in rewards])
    decisions = decide_claims(requests, rewards, balances, claims_so_far, now)
    accepted = [decision for decision in decisions if isinstance(decision, AcceptedClaim)]
    bodies = _write_claims(session, tenant_id, env, accepted, locked, now) if accepted else {}
    return {
        request.operation_id: (
            bodies[decision.claim_id] if isinstance(decision, AcceptedClaim) else decision
        )
        for request, decision in zip(requests, decisions, strict=True)
    }


def _lock_rewards(
    session: Session, tenant_id: uuid.UUID, env: str, reward_ids: set[uuid.UUID]
) -> dict[uuid.UUID, Reward]:
    """The active rewards among `reward_ids`, row-locked in id order (rows are locked as
    the sort hands them out)."""
    rows = session.execute(
        select(Reward)
        .where(Reward.id.in_(sorted(reward_ids)), Reward.tenant_id == tenant_id, Reward.env == env)
        .order_by(Reward.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalars()
    return {reward.id: reward for reward in rows if reward.is_active}


def _lock_payers(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    requests: list[ClaimRequest],
    rewards: dict[uuid.UUID, Reward],
) -> tuple[dict[str, LockedRow], dict[str, int]]:
    """Lock the participants the batch may write to; the balances its decisions read."""
    # Every claimant of a multiplier gets a multiplier row, so needs a participant row.
    create = {
        r.participant_id for r in requests if rewards[r.reward_id].type == "points_multiplier"
    }
    # Otherwise only payers are written to, and one with no row has nothing to pay with:
    # none is created for it (its refused claim writes nothing).
    payers = {
        r.participant_id
        for r in requests
        if r.points_deduction and (rewards[r.reward_id].points_cost or 0) > 0
    }
    locked = lock_changing_rows(session, tenant_id, env, create=create, existing=payers)
    balances = {participant_id: row.balance for participant_id, row in locked.items()}
    # A free claim with points_deduction answers the balance it leaves, unchanged.
    free = {r.participant_id for r in requests if r.points_deduction} - set(balances)
    if free:
        balances.update(unlocked_balances(session, tenant_id, env, free))
    return locked, balances


# One index probe per (reward, participant): `participant_id = ANY(...)` was planned as a
# filter over every claim of the reward, which a hot drop makes thousands long.
_CLAIMS_SO_FAR = """
    SELECT wanted.reward_id, wanted.participant_id, counted.claims
    FROM unnest(CAST(%(reward_ids)s AS uuid[]), CAST(%(participant_ids)s AS text[]))
        AS wanted(reward_id, participant_id)
    CROSS JOIN LATERAL (
        SELECT count(*) AS claims FROM claims
        WHERE reward_id = wanted.reward_id AND participant_id = wanted.participant_id
    ) AS counted
    WHERE counted.claims > 0
"""


def _claims_so_far(
    session: Session, requests: list[ClaimRequest]
) -> dict[tuple[uuid.UUID, str], int]:
    pairs = sorted({(str(r.reward_id), r.participant_id) for r in requests})
    if not pairs:
        return {}
    rows = fetch_tuples(
        session,
        _CLAIMS_SO_FAR,
        {
            "reward_ids": plain_array_literal(reward_id for reward_id, _ in pairs),
            "participant_ids": array_literal([participant_id for _, participant_id in pairs]),
        },
    )
    return {(reward_id, participant_id): int(count) for reward_id, participant_id, count in rows}


def _write_claims(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    accepted: list[AcceptedClaim],
    locked: dict[str, LockedRow],
    now: datetime,
) -> dict[uuid.UUID, dict[str, Any]]:
    """Write the accepted claims; returns each one's answer by claim id."""
    _hand_out_codes(session, accepted, now)
    _debit_payers(session, tenant_id, env, accepted, locked, now)
    _activate_multipliers(session, tenant_id, env, accepted, locked, now)
    bodies: dict[uuid.UUID, dict[str, Any]] = {}
    events = []
    for claim in accepted:
        reward = claim.reward
        expires_at = _claim_expiry(reward, now)
        body = bodies[claim.claim_id] = {
            "claim_id": str(claim.claim_id),
            "participant_id": claim.request.participant_id,
            "reward_name": reward.name,
            "reward_type": reward.type,
            "code_value": claim.code_value,
            "expires_at": expires_at.isoformat() if expires_at else None,
            "points_deducted": claim.points_deducted,
            "new_balance": claim.new_balance,
        }
        events.append(
            {
                **body,
                "reward_id": str(reward.id),
                "claimed_at": now.isoformat(),
                "environment": env,
            }
        )
    _insert_claims(session, tenant_id, env, accepted, now)
    record_events(session, tenant_id, env, REWARD_CLAIMED, events)
    session.flush()  # the rewards' counters
    return bodies


# The oldest unallocated codes of a reward, handed to its claims in claim order. The lock
# is taken in a CTE without the window function (PostgreSQL refuses FOR UPDATE beside one).
_ALLOCATE_OLDEST_CODES = """
    WITH locked AS (
        SELECT id FROM reward_codes
        WHERE reward_id = %(reward_id)s AND claim_id IS NULL
        ORDER BY id
        LIMIT %(count)s
        FOR UPDATE SKIP LOCKED
    ),
    numbered AS (SELECT id, row_number() OVER (ORDER BY id) AS position FROM locked),
    wanted AS (
        SELECT claim_id, position
        FROM unnest(CAST(%(claim_ids)s AS uuid[])) WITH ORDINALITY AS w(claim_id, position)
    )
    UPDATE reward_codes AS code
    SET claim_id = wanted.claim_id, allocated_at = %(now)s
    FROM numbered JOIN wanted USING (position)
    WHERE code.id = numbered.id
    RETURNING wanted.claim_id, code.code
"""


def _hand_out_codes(session: Session, accepted: list[AcceptedClaim], now: datetime) -> None:
    """Each claim's code: the reward's oldest pre-loaded ones (one statement per reward),
    or a generated one; codeless rewards (multipliers) get none."""
    preloaded: dict[uuid.UUID, list[AcceptedClaim]] = {}
    for claim in accepted:
        if claim.preloaded:
            preloaded.setdefault(claim.reward.id, []).append(claim)
        elif claim.reward.type not in CODELESS_TYPES:
            claim.code_value = _generate_code(claim.reward)
    for reward_id, claims in preloaded.items():
        rows = fetch_tuples(
            session,
            _ALLOCATE_OLDEST_CODES,
            {
                "reward_id": reward_id,
                "count": len(claims),
                "claim_ids": plain_array_literal(str(claim.claim_id) for claim in claims),
                "now": now,
            },
        )
        codes = {str(claim_id): str(code) for claim_id, code in rows}
        if len(codes) != len(claims):
            # The counters promised these codes; the table disagrees. Roll the batch back.
            raise RuntimeError(f"reward {reward_id}: inventory counters out of step with codes")
        for claim in claims:
            claim.code_value = codes[str(claim.claim_id)]


def _generate_code(reward: Reward) -> str:
    config = reward.config or {}
    prefix = str(config.get("code_prefix", _GENERATED_PREFIX_DEFAULTS.get(reward.type, "")))
    # 10 characters of a 31-letter alphabet: ~50 bits, so a collision (which the unique
    # constraint would still catch) is out of reach for any real inventory.
    return prefix + "".join(secrets.choice(_CODE_ALPHABET) for _ in range(10))


def _claim_expiry(reward: Reward, now: datetime) -> datetime | None:
    if reward.code_expiry_days is not None:
        return now + timedelta(days=reward.code_expiry_days)
    return reward.expires_at


# The claim rows of a batch, from one JSON document (one parameter whatever the size).
_INSERT_CLAIMS = """
    INSERT INTO claims (
        id, tenant_id, env, reward_id, participant_id, code_value, claimed_at, expires_at,
        points_deducted, new_balance, operation_id, idempotency_key
    )
    SELECT c.id, %(tenant_id)s, %(env)s, c.reward_id, c.participant_id, c.code_value,
           %(claimed_at)s, c.expires_at, c.points_deducted, c.new_balance, c.operation_id,
           c.idempotency_key
    FROM jsonb_to_recordset(CAST(%(claims)s AS jsonb)) AS c(
        id uuid, reward_id uuid, participant_id text, code_value text, expires_at timestamptz,
        points_deducted integer, new_balance bigint, operation_id uuid, idempotency_key text
    )
"""


def _insert_claims(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    accepted: list[AcceptedClaim],
    now: datetime,
) -> None:
    claims = []
    for claim in accepted:
        expires_at = _claim_expiry(claim.reward, now)
        claims.append(
            {
                "id": str(claim.claim_id),
                "reward_id": str(claim.reward.id),
                "participant_id": claim.request.participant_id,
                "code_value": claim.code_value,
                "expires_at": expires_at.isoformat() if expires_at else None,
                "points_deducted": claim.points_deducted,
                "new_balance": claim.new_balance,
                "operation_id": str(claim.request.operation_id),
                "idempotency_key": claim.request.idempotency_key,
            }
        )
    session.connection().exec_driver_sql(
        _INSERT_CLAIMS,
        {"tenant_id": tenant_id, "env": env, "claimed_at": now, "claims": json.dumps(claims)},
    )


# One ledger line per paid claim, in claim order (the ledger's seq is its insert order,
# so a participant's lines follow its balance down), then each payer's balance, debited
# once by its total: one statement. The payers are locked by this transaction; their ids
# also come as an array, so that they are found by primary key (see _STORE_ANSWERS in
# app.operations).
_DEBIT_CLAIMS = """
    WITH lines AS (
        SELECT * FROM ROWS FROM (
            jsonb_to_recordset(CAST(%(lines)s AS jsonb)) AS (
                participant_pk uuid, amount bigint, reason text, balance_after bigint,
                operation_id uuid, claim_id uuid
            )
        ) WITH ORDINALITY AS line(
            participant_pk, amount, reason, balance_after, operation_id, claim_id, position
        )
    ),
    ledger AS (
        INSERT INTO ledger_entries (
            id, tenant_id, env, participant_pk, type, amount, base_amount, reason,
            balance_after, operation_id, claim_id, created_at
        )
        SELECT gen_random_uuid(), %(tenant_id)s, %(env)s, participant_pk, 'claim', -amount,
               -amount, reason, balance_after, operation_id, claim_id, %(now)s
        FROM lines
        ORDER BY position
    )
    UPDATE participants AS p
    SET balance = p.balance - spent.amount,
        total_spent = p.total_spent + spent.amount,
        updated_at = %(now)s
    FROM (SELECT participant_pk, sum(amount) AS amount FROM lines GROUP BY participant_pk)
        AS spent
    WHERE p.id = ANY(CAST(%(payers)s AS uuid[])) AND p.id = spent.participant_pk
"""


def _debit_payers(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    accepted: list[AcceptedClaim],
    locked: dict[str, LockedRow],
    now: datetime,
) -> None:
    """One ledger line per paid claim and one balance update per participant."""
    paid = [claim for claim in accepted if claim.points_deducted]
    if not paid:
        return
    payers = {
        claim.request.participant_id: locked[claim.request.participant_id].pk for claim in paid
    }
    lines = [
        {
            "participant_pk": payers[claim.request.participant_id],
            "amount": claim.points_deducted,
            "reason": f"Claimed reward: {claim.reward.name}",
            "balance_after": claim.new_balance,
            "operation_id": str(claim.request.operation_id),
            "claim_id": str(claim.claim_id),
        }
        for claim in paid
    ]
    session.connection().exec_driver_sql(
        _DEBIT_CLAIMS,
        {
            "tenant_id": tenant_id,
            "env": env,
            "now": now,
            "lines": json.dumps(lines),
            "payers": plain_array_literal(payers.values()),
        },
    )


def _activate_multipliers(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    accepted: list[AcceptedClaim],
    locked: dict[str, LockedRow],
    now: datetime,
) -> None:
    rows = []
    for claim in accepted:
        if claim.reward.type != "points_multiplier":
            continue
        config = claim.reward.config or {}
        duration_days = config.get("duration_days")
        rows.append(
            {
                "id": uuid.uuid4(),
                "tenant_id": tenant_id,
                "env": env,
                "participant_pk": uuid.UUID(locked[claim.request.participant_id].pk),
                "multiplier": Decimal(str(config["multiplier"])),
                "starts_at": now,
                "expires_at": now + timedelta(days=int(duration_days)) if duration_days else None,
                "claim_id": claim.claim_id,
                "created_at": now,
            }
        )
    if rows:
        session.execute(insert(ParticipantMultiplier), rows)


register_kind(
    OperationKind(
        name=CLAIM_KIND,
        batch_handler=execute_claims,
        success_status=201,
        # A claim's idempotency key is part of the claim record: kept forever.
        retain_forever=True,
        partition=claim_lane,
    )
)
