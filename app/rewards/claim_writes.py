"""Writing a batch's accepted claims set-wise: codes, ledger lines and balances,
multipliers, claim rows and their events, a handful of statements for the whole batch."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from app.infra.pgcopy import fetch_tuples, plain_array_literal
from app.ledger import LockedRow
from app.models import ParticipantMultiplier, Reward
from app.outbox import REWARD_CLAIMED, record_events
from app.points.lots import WRITE_LOTS, LotBook, write_lots_params
from app.rewards.catalog import CODELESS_TYPES
from app.rewards.claim_decisions import AcceptedClaim

# Unambiguous characters for generated codes (no 0/O, 1/I/L).
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
_GENERATED_PREFIX_DEFAULTS = {"physical": "ORD-", "digital": "KEY-"}


def write_claims(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    accepted: list[AcceptedClaim],
    locked: dict[str, LockedRow],
    lots: dict[str, LotBook],
    now: datetime,
) -> dict[uuid.UUID, dict[str, Any]]:
    """Write the accepted claims; returns each one's answer by claim id."""
    _hand_out_codes(session, accepted, now)
    _debit_payers(session, tenant_id, env, accepted, locked, lots, now)
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
# so a participant's lines follow its balance down), the lots paid from, then each
# payer's balance, debited once by its total: one statement. The payers are locked by
# this transaction; their ids also come as an array, so that they are found by primary
# key (see _STORE_ANSWERS in app.operation_runs).
_DEBIT_CLAIMS_HEAD = """
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
"""
_DEBIT_CLAIMS_TAIL = """
    UPDATE participants AS p
    SET balance = p.balance - spent.amount,
        total_spent = p.total_spent + spent.amount,
        updated_at = %(now)s
    FROM (SELECT participant_pk, sum(amount) AS amount FROM lines GROUP BY participant_pk)
        AS spent
    WHERE p.id = ANY(CAST(%(payers)s AS uuid[])) AND p.id = spent.participant_pk
"""
_DEBIT_CLAIMS = _DEBIT_CLAIMS_HEAD + _DEBIT_CLAIMS_TAIL
_DEBIT_CLAIMS_WITH_LOTS = _DEBIT_CLAIMS_HEAD + "," + WRITE_LOTS + _DEBIT_CLAIMS_TAIL


def _debit_payers(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    accepted: list[AcceptedClaim],
    locked: dict[str, LockedRow],
    lots: dict[str, LotBook],
    now: datetime,
) -> None:
    """One ledger line per paid claim, the lots paid from, and one balance update per
    participant."""
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
    lot_changes = write_lots_params((), (lots[payer] for payer in payers if payer in lots))
    session.connection().exec_driver_sql(
        _DEBIT_CLAIMS_WITH_LOTS if lot_changes else _DEBIT_CLAIMS,
        {
            "tenant_id": tenant_id,
            "env": env,
            "now": now,
            "lines": json.dumps(lines),
            "payers": plain_array_literal(payers.values()),
            **lot_changes,
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
