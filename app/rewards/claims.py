"""Claiming a reward: the worker-side transaction, eligibility, and claim history.

A worker drains the queued claims of one reward and runs them as one batch in one
transaction: lock the reward row, lock the paying participants (in external-id order:
the one lock order), decide every claim in submission order against the locked state
(window, per-user cap, stock, balance), then write the accepted ones set-wise: codes
allocated oldest first with one statement, ledger lines and balances, the append-only
claim rows and their `reward.reward_claimed` outbox events. The reward row lock serializes
claims of one reward, which is what makes "no oversell" and "one code per claim" hold with
any number of workers; batching is what makes that lock cheap to hold.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import String, any_, bindparam, func, insert, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.errors import DomainError
from app.ledger import (
    LockedBalance,
    insufficient_points,
    lock_balances,
    lock_existing_balances,
)
from app.models import Claim, Operation, Participant, ParticipantMultiplier, Reward
from app.operations import OperationKind, register_kind
from app.outbox import REWARD_CLAIMED, record_events
from app.points.pgcopy import array_literal, fetch_tuples, plain_array_literal
from app.rewards.catalog import (
    CODELESS_TYPES,
    available_codes,
    reward_not_found,
)

CLAIM_KIND = "reward.claim"

# Unambiguous characters for generated codes (no 0/O, 1/I/L).
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
_GENERATED_PREFIX_DEFAULTS = {"physical": "ORD-", "digital": "KEY-"}

# The oldest unallocated codes, handed to the batch's claims in claim order. The lock is
# taken in a CTE without the window function (PostgreSQL refuses FOR UPDATE beside one).
_ALLOCATE_OLDEST_CODES = text(
    """
    WITH locked AS (
        SELECT id FROM reward_codes
        WHERE reward_id = :reward_id AND claim_id IS NULL
        ORDER BY id
        LIMIT :count
        FOR UPDATE SKIP LOCKED
    ),
    numbered AS (SELECT id, row_number() OVER (ORDER BY id) AS position FROM locked),
    wanted AS (
        SELECT claim_id, position
        FROM unnest(CAST(:claim_ids AS uuid[])) WITH ORDINALITY AS w(claim_id, position)
    )
    UPDATE reward_codes AS code
    SET claim_id = wanted.claim_id, allocated_at = :now
    FROM numbered JOIN wanted USING (position)
    WHERE code.id = numbered.id
    RETURNING wanted.claim_id, code.code
    """
)


def claim_blocker(
    reward: Reward,
    *,
    now: datetime,
    claims_by_participant: int,
    points_deduction: bool,
    balance: int | None,
) -> DomainError | None:
    """Why this participant cannot claim this reward now, or None.

    The claim transaction and the catalog's per-participant listing both ask this, so
    they always give the same answer. `balance` is only consulted for a paid claim.
    """
    if not reward.is_active:
        return reward_not_found()
    if reward.available_from is not None and now < reward.available_from:
        return DomainError("reward_not_available", "Reward not yet available", 400)
    if reward.expires_at is not None and now >= reward.expires_at:
        return DomainError("reward_expired", "Reward has expired", 400)
    if claims_by_participant >= reward.max_claims_per_user:
        return DomainError("max_claims_reached", "Maximum claims reached for this reward", 400)
    if available_codes(reward) == 0:
        return DomainError("reward_out_of_stock", "Reward is out of stock", 400)
    cost = reward.points_cost or 0
    if points_deduction and cost > 0 and (balance or 0) < cost:
        return insufficient_points(balance or 0, cost)
    return None


# One index probe per participant (the LATERAL form of app.ledger's lock): `participant_id
# = ANY(...)` was planned as a filter over every claim of the reward, which a hot drop
# makes thousands long.
_CLAIMS_SO_FAR = """
    SELECT wanted.participant_id, counted.claims
    FROM unnest(CAST(%(participant_ids)s AS text[])) AS wanted(participant_id)
    CROSS JOIN LATERAL (
        SELECT count(*) AS claims FROM claims
        WHERE reward_id = %(reward_id)s AND participant_id = wanted.participant_id
    ) AS counted
    WHERE counted.claims > 0
"""


def _claims_so_far(
    session: Session, reward_id: uuid.UUID, participant_ids: Iterable[str]
) -> dict[str, int]:
    rows = fetch_tuples(
        session,
        _CLAIMS_SO_FAR,
        {
            "reward_id": reward_id,
            "participant_ids": array_literal(sorted(set(participant_ids))),
        },
    )
    return {participant_id: int(count) for participant_id, count in rows}


def _unlocked_balances(
    session: Session, tenant_id: uuid.UUID, env: str, participant_ids: Iterable[str]
) -> dict[str, int]:
    rows = session.execute(
        select(Participant.external_id, Participant.balance).where(
            Participant.tenant_id == tenant_id,
            Participant.env == env,
            Participant.external_id
            == any_(bindparam("pids", sorted(set(participant_ids)), type_=ARRAY(String))),
        )
    ).all()
    return {external_id: int(balance) for external_id, balance in rows}


def _generate_code(reward: Reward) -> str:
    config = reward.config or {}
    prefix = str(config.get("code_prefix", _GENERATED_PREFIX_DEFAULTS.get(reward.type, "")))
    # 10 characters of a 31-letter alphabet: ~50 bits, so a collision (which the unique
    # constraint would still catch) is out of reach for any real inventory.
    return prefix + "".join(secrets.choice(_CODE_ALPHABET) for _ in range(10))


def _allocate_preloaded(
    session: Session, reward: Reward, claim_ids: list[uuid.UUID], now: datetime
) -> dict[uuid.UUID, str]:
    """The oldest unallocated codes, one per claim, in claim order: one statement."""
    if not claim_ids:
        return {}
    rows = session.execute(
        _ALLOCATE_OLDEST_CODES,
        {"reward_id": reward.id, "claim_ids": claim_ids, "count": len(claim_ids), "now": now},
    )
    allocated = {claim_id: str(code) for claim_id, code in rows}
    if len(allocated) != len(claim_ids):
        # The counters promised these codes; the table disagrees. Roll the batch back.
        raise RuntimeError(f"reward {reward.id}: inventory counters out of step with codes")
    return allocated


def _claim_expiry(reward: Reward, now: datetime) -> datetime | None:
    if reward.code_expiry_days is not None:
        return now + timedelta(days=reward.code_expiry_days)
    return reward.expires_at


@dataclass
class _Accepted:
    operation: Operation
    claim_id: uuid.UUID
    participant_id: str
    points_deducted: int | None
    new_balance: int | None
    preloaded: bool
    code_value: str | None = None


# The reward row lock: it serializes the claims of one reward (see the module docstring).
_LOCK_REWARD = (
    select(Reward)
    .where(
        Reward.id == bindparam("reward_id"),
        Reward.tenant_id == bindparam("tenant_id"),
        Reward.env == bindparam("env"),
    )
    .with_for_update()
    .execution_options(populate_existing=True)
)


def execute_claims(
    session: Session, operations: list[Operation]
) -> dict[uuid.UUID, dict[str, Any] | DomainError]:
    """Run claims of one reward set-wise: a handful of statements for the whole batch.

    Every decision is made in Python against the locked rows before anything is written,
    so a refused claim writes nothing and needs no savepoint; the writes for the accepted
    ones are a few multi-row statements. Answers are keyed by operation id.
    """
    first = operations[0]
    now = utcnow()
    reward = session.execute(
        _LOCK_REWARD,
        {
            "reward_id": uuid.UUID(first.payload["reward_id"]),
            "tenant_id": first.tenant_id,
            "env": first.env,
        },
    ).scalar_one_or_none()
    if reward is None or not reward.is_active:
        return {operation.id: reward_not_found() for operation in operations}

    requested = [
        (
            operation,
            operation.payload["participant_id"],
            bool(operation.payload["points_deduction"]),
        )
        for operation in operations
    ]
    locked, balances = _lock_payers(session, reward, requested, now)
    claims_so_far = _claims_so_far(session, reward.id, (p for _, p, _ in requested))
    cost = reward.points_cost or 0

    answers: dict[uuid.UUID, dict[str, Any] | DomainError] = {}
    accepted: list[_Accepted] = []
    for operation, participant_id, deduct in requested:
        blocker = claim_blocker(
            reward,
            now=now,
            claims_by_participant=claims_so_far.get(participant_id, 0),
            points_deduction=deduct,
            balance=balances.get(participant_id, 0),
        )
        if blocker is not None:
            answers[operation.id] = blocker
            continue
        claims_so_far[participant_id] = claims_so_far.get(participant_id, 0) + 1
        points_deducted = new_balance = None
        if deduct:
            balances[participant_id] = balances.get(participant_id, 0) - cost
            points_deducted, new_balance = cost, balances[participant_id]
        preloaded = (
            reward.type not in CODELESS_TYPES and reward.codes_allocated < reward.codes_loaded
        )
        if preloaded:
            reward.codes_allocated += 1
        reward.claims_count += 1
        accepted.append(
            _Accepted(
                operation, uuid.uuid4(), participant_id, points_deducted, new_balance, preloaded
            )
        )
    if not accepted:
        return answers

    codes = _allocate_preloaded(session, reward, [a.claim_id for a in accepted if a.preloaded], now)
    for claim in accepted:
        if claim.preloaded:
            claim.code_value = codes[claim.claim_id]
        elif reward.type not in CODELESS_TYPES:
            claim.code_value = _generate_code(reward)
    _write_points(session, reward, locked, accepted, cost, now)
    if reward.type == "points_multiplier":
        _activate_multipliers(session, reward, locked, accepted, now)
    expires_at = _claim_expiry(reward, now)
    _insert_claims(session, reward, accepted, now, expires_at)
    events = []
    for claim in accepted:
        body = {
            "claim_id": str(claim.claim_id),
            "participant_id": claim.participant_id,
            "reward_name": reward.name,
            "reward_type": reward.type,
            "code_value": claim.code_value,
            "expires_at": expires_at.isoformat() if expires_at else None,
            "points_deducted": claim.points_deducted,
            "new_balance": claim.new_balance,
        }
        answers[claim.operation.id] = body
        events.append(
            {
                **body,
                "reward_id": str(reward.id),
                "claimed_at": now.isoformat(),
                "environment": reward.env,
            }
        )
    record_events(session, reward.tenant_id, reward.env, REWARD_CLAIMED, events)
    session.flush()
    return answers


def _lock_payers(
    session: Session,
    reward: Reward,
    requested: list[tuple[Operation, str, bool]],
    now: datetime,
) -> tuple[dict[str, LockedBalance], dict[str, int]]:
    """Lock the participants the batch may write to; the balances its decisions read.

    Lock order: the reward (taken by the caller), then participants in external-id order.
    """
    if (
        claim_blocker(
            reward, now=now, claims_by_participant=0, points_deduction=False, balance=None
        )
        is not None
    ):
        # The reward refuses every claim (a drained drop, a closed window): nothing will be
        # written, and a balance is only consulted after those checks, so no participant
        # is locked or read.
        return {}, {}
    cost = reward.points_cost or 0
    if reward.type == "points_multiplier":
        # Every claimant gets a multiplier row, so every claimant needs a participant row.
        locked = lock_balances(session, reward.tenant_id, reward.env, (p for _, p, _ in requested))
    else:
        # Only payers are written to, and one with no row has nothing to pay with: none is
        # created for it (its refused claim writes nothing).
        payers = {p for _, p, deduct in requested if deduct and cost > 0}
        locked = lock_existing_balances(session, reward.tenant_id, reward.env, payers)
    balances = {participant_id: row.balance for participant_id, row in locked.items()}
    free_deductions = {p for _, p, deduct in requested if deduct and cost == 0} - set(balances)
    if free_deductions:
        balances.update(_unlocked_balances(session, reward.tenant_id, reward.env, free_deductions))
    return locked, balances


# The claim rows of a batch, from one JSON document (one parameter whatever the size).
_INSERT_CLAIMS = """
    INSERT INTO claims (
        id, tenant_id, env, reward_id, participant_id, code_value, claimed_at, expires_at,
        points_deducted, new_balance, operation_id, idempotency_key
    )
    SELECT c.id, %(tenant_id)s, %(env)s, %(reward_id)s, c.participant_id, c.code_value,
           %(claimed_at)s, %(expires_at)s, c.points_deducted, c.new_balance, c.operation_id,
           c.idempotency_key
    FROM jsonb_to_recordset(CAST(%(claims)s AS jsonb)) AS c(
        id uuid, participant_id text, code_value text, points_deducted integer,
        new_balance bigint, operation_id uuid, idempotency_key text
    )
"""


def _insert_claims(
    session: Session,
    reward: Reward,
    accepted: list[_Accepted],
    now: datetime,
    expires_at: datetime | None,
) -> None:
    claims = [
        {
            "id": str(claim.claim_id),
            "participant_id": claim.participant_id,
            "code_value": claim.code_value,
            "points_deducted": claim.points_deducted,
            "new_balance": claim.new_balance,
            "operation_id": str(claim.operation.id),
            "idempotency_key": claim.operation.idempotency_key,
        }
        for claim in accepted
    ]
    session.connection().exec_driver_sql(
        _INSERT_CLAIMS,
        {
            "tenant_id": reward.tenant_id,
            "env": reward.env,
            "reward_id": reward.id,
            "claimed_at": now,
            "expires_at": expires_at,
            "claims": json.dumps(claims),
        },
    )


# One ledger line per paid claim, in claim order (the ledger's seq is its insert order,
# so a participant's lines follow its balance down), then each payer's balance, debited
# once by its total: one statement. The payers are locked by this transaction; their ids
# also come as an array, so that they are found by primary key (see _STORE_ANSWERS in
# app.operations).
_DEBIT_CLAIMS = """
    WITH lines AS (
        SELECT * FROM ROWS FROM (
            jsonb_to_recordset(CAST(%(lines)s AS jsonb))
                AS (participant_pk uuid, balance_after bigint, operation_id uuid, claim_id uuid)
        ) WITH ORDINALITY AS line(participant_pk, balance_after, operation_id, claim_id, position)
    ),
    ledger AS (
        INSERT INTO ledger_entries (
            id, tenant_id, env, participant_pk, type, amount, base_amount, reason,
            balance_after, operation_id, claim_id, created_at
        )
        SELECT gen_random_uuid(), %(tenant_id)s, %(env)s, participant_pk, 'claim', -%(cost)s,
               -%(cost)s, %(reason)s, balance_after, operation_id, claim_id, %(now)s
        FROM lines
        ORDER BY position
    )
    UPDATE participants AS p
    SET balance = p.balance - spent.amount,
        total_spent = p.total_spent + spent.amount,
        updated_at = %(now)s
    FROM (
        SELECT participant_pk, count(*) * %(cost)s AS amount FROM lines GROUP BY participant_pk
    ) AS spent
    WHERE p.id = ANY(CAST(%(payers)s AS uuid[])) AND p.id = spent.participant_pk
"""


def _write_points(
    session: Session,
    reward: Reward,
    locked: dict[str, LockedBalance],
    accepted: list[_Accepted],
    cost: int,
    now: datetime,
) -> None:
    """One ledger line per paid claim and one balance update per participant."""
    paid = [claim for claim in accepted if claim.points_deducted]
    if not paid:
        return
    payers = {claim.participant_id: str(locked[claim.participant_id].id) for claim in paid}
    lines = [
        {
            "participant_pk": payers[claim.participant_id],
            "balance_after": claim.new_balance,
            "operation_id": str(claim.operation.id),
            "claim_id": str(claim.claim_id),
        }
        for claim in paid
    ]
    session.connection().exec_driver_sql(
        _DEBIT_CLAIMS,
        {
            "tenant_id": reward.tenant_id,
            "env": reward.env,
            "cost": cost,
            "reason": f"Claimed reward: {reward.name}",
            "now": now,
            "lines": json.dumps(lines),
            "payers": plain_array_literal(payers.values()),
        },
    )


def _activate_multipliers(
    session: Session,
    reward: Reward,
    locked: dict[str, LockedBalance],
    accepted: list[_Accepted],
    now: datetime,
) -> None:
    config = reward.config or {}
    duration_days = config.get("duration_days")
    session.execute(
        insert(ParticipantMultiplier),
        [
            {
                "id": uuid.uuid4(),
                "tenant_id": reward.tenant_id,
                "env": reward.env,
                "participant_pk": locked[claim.participant_id].id,
                "multiplier": Decimal(str(config["multiplier"])),
                "starts_at": now,
                "expires_at": now + timedelta(days=int(duration_days)) if duration_days else None,
                "claim_id": claim.claim_id,
                "created_at": now,
            }
            for claim in accepted
        ],
    )


register_kind(
    OperationKind(
        name=CLAIM_KIND,
        batch_handler=execute_claims,
        success_status=201,
        # A claim's idempotency key is part of the claim record: kept forever.
        retain_forever=True,
        partition=lambda payload: str(payload["reward_id"]),
    )
)


def claim_payload(
    reward_id: uuid.UUID, participant_id: str, points_deduction: bool
) -> dict[str, Any]:
    return {
        "reward_id": str(reward_id),
        "participant_id": participant_id,
        "points_deduction": points_deduction,
    }


def list_participant_claims(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    participant_id: str,
    *,
    offset: int,
    limit: int,
) -> tuple[list[dict[str, Any]], int]:
    conditions = (
        Claim.tenant_id == tenant_id,
        Claim.env == env,
        Claim.participant_id == participant_id,
    )
    total = session.execute(select(func.count()).select_from(Claim).where(*conditions)).scalar_one()
    rows = session.execute(
        select(Claim, Reward.name, Reward.type)
        .join(Reward, Reward.id == Claim.reward_id)
        .where(*conditions)
        .order_by(Claim.claimed_at.desc(), Claim.id)
        .offset(offset)
        .limit(limit)
    ).all()
    claims = [
        {
            "claim_id": str(claim.id),
            "reward_id": str(claim.reward_id),
            "reward_name": name,
            "reward_type": reward_type,
            "code_value": claim.code_value,
            "claimed_at": claim.claimed_at,
            "expires_at": claim.expires_at,
            "points_deducted": claim.points_deducted,
        }
        for claim, name, reward_type in rows
    ]
    return claims, int(total)


def eligibility_for(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    participant_id: str,
    rewards: Iterable[Reward],
) -> dict[uuid.UUID, DomainError | None]:
    """For the catalog: why the participant cannot claim each reward now (None: can).

    A reward with a points cost is judged as a paid claim (points_deduction true).
    """
    rewards = list(rewards)
    counts: dict[uuid.UUID, int] = {
        reward_id: int(count)
        for reward_id, count in session.execute(
            select(Claim.reward_id, func.count())
            .where(
                Claim.participant_id == participant_id,
                Claim.reward_id.in_([reward.id for reward in rewards]),
            )
            .group_by(Claim.reward_id)
        ).all()
    }
    balance = _unlocked_balances(session, tenant_id, env, [participant_id]).get(participant_id, 0)
    now = utcnow()
    return {
        reward.id: claim_blocker(
            reward,
            now=now,
            claims_by_participant=counts.get(reward.id, 0),
            points_deduction=(reward.points_cost or 0) > 0,
            balance=balance,
        )
        for reward in rewards
    }
