"""Writing a batch's accepted claims, uses and cancels set-wise: status changes and codes
back in stock, codes handed out, ledger lines and balances, multipliers, claim rows and
their events, a handful of statements for the whole batch."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.infra.pgcopy import fetch_tuples, plain_array_literal
from app.ledger import LockedRow
from app.models import ParticipantMultiplier, Reward
from app.outbox import REWARD_CLAIMED, record_events
from app.points.lots import WRITE_LOTS, LotBook, write_lots_params
from app.rewards.catalog import CODELESS_TYPES, recent_claims_deltas
from app.rewards.claim_decisions import AcceptedChange, AcceptedClaim
from app.rewards.claims import CANCELLED, FULFILLED
from app.text import random_code

# Unambiguous characters for generated codes (no 0/O, 1/I/L).
_GENERATED_PREFIX_DEFAULTS = {"physical": "ORD-", "digital": "KEY-"}


def write_claims(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    accepted: list[AcceptedClaim | AcceptedChange],
    locked: dict[str, LockedRow],
    lots: dict[str, LotBook],
    now: datetime,
) -> dict[uuid.UUID, dict[str, Any]]:
    """Write the accepted claims, uses and cancels (in decision order); returns each one's
    answer by operation id."""
    claims = [decision for decision in accepted if isinstance(decision, AcceptedClaim)]
    changes = [decision for decision in accepted if isinstance(decision, AcceptedChange)]
    bodies: dict[uuid.UUID, dict[str, Any]] = {}
    if changes:
        # First: a cancelled claim's code is back in stock before this batch's claims
        # take codes, and gives its code up before a new claim row holds it.
        _change_claims(session, changes, now)
        bodies.update((change.request.operation_id, _change_body(change)) for change in changes)
    _hand_out_codes(session, claims, now)
    _move_points(session, tenant_id, env, accepted, locked, lots, now)
    _activate_multipliers(session, tenant_id, env, claims, locked, now)
    events = []
    for claim in claims:
        reward = claim.reward
        expires_at = _claim_expiry(reward, now)
        body = bodies[claim.request.operation_id] = {
            "claim_id": str(claim.claim_id),
            "participant_id": claim.request.participant_id,
            "reward_name": reward.name,
            "reward_type": reward.type,
            "code_value": claim.code_value,
            "expires_at": expires_at.isoformat() if expires_at else None,
            "points_deducted": claim.points_deducted,
            "new_balance": claim.new_balance,
            "status": FULFILLED,
            "metadata": claim.request.metadata,
        }
        events.append(
            {
                **body,
                "reward_id": str(reward.id),
                "claimed_at": now.isoformat(),
                "environment": env,
            }
        )
    if claims:
        _insert_claims(session, tenant_id, env, claims, now)
        record_events(session, tenant_id, env, REWARD_CLAIMED, events)
    _write_reward_counters(session, claims, changes, now)
    return bodies


# The rewards' counters as decided, and each one's ring of recent claims (the catalog's
# `popular` sort) moved on to today with the claims and cancels it counts: one statement
# for the batch, in place of the ORM's flush of the counters (an UPDATE per reward, built
# by the unit of work), so that the ring is never read into Python on the claim path.
_WRITE_REWARD_COUNTERS = """
    UPDATE rewards AS reward
    SET claims_count = counted.claims_count,
        codes_allocated = counted.codes_allocated,
        recent_claims = reward_recent_claims(
            reward.recent_claims, reward.recent_claims_through, %(today)s,
            CAST(counted.deltas AS integer[])
        ),
        recent_claims_through = greatest(
            coalesce(reward.recent_claims_through, %(today)s), %(today)s
        )
    FROM jsonb_to_recordset(CAST(%(rewards)s AS jsonb)) AS counted(
        id uuid, claims_count integer, codes_allocated integer, deltas text
    )
    WHERE reward.id = ANY(CAST(%(reward_ids)s AS uuid[])) AND reward.id = counted.id
"""


def _write_reward_counters(
    session: Session, claims: list[AcceptedClaim], changes: list[AcceptedChange], now: datetime
) -> None:
    """Each reward's claims of today and cancels of the days they were taken, with its
    counters (claims_count, codes_allocated), which the decisions moved."""
    today = now.astimezone(UTC).date()
    counted: dict[uuid.UUID, tuple[Reward, list[tuple[date, int]]]] = {}
    for claim in claims:
        counted.setdefault(claim.reward.id, (claim.reward, []))[1].append((today, 1))
    for change in changes:
        if change.claim.status == CANCELLED:
            day = change.claim.claimed_at.astimezone(UTC).date()
            counted.setdefault(change.reward.id, (change.reward, []))[1].append((day, -1))
    if not counted:
        return
    rows = []
    for reward, days in counted.values():
        deltas = recent_claims_deltas(days, today)
        rows.append(
            {
                "id": str(reward.id),
                "claims_count": reward.claims_count,
                "codes_allocated": reward.codes_allocated,
                "deltas": plain_array_literal(str(delta) for delta in deltas) if deltas else None,
            }
        )
        # Written: the unit of work has nothing left to flush for them.
        set_committed_value(reward, "claims_count", reward.claims_count)
        set_committed_value(reward, "codes_allocated", reward.codes_allocated)
    session.connection().exec_driver_sql(
        _WRITE_REWARD_COUNTERS,
        {
            "today": today,
            "rewards": json.dumps(rows),
            "reward_ids": plain_array_literal(str(reward_id) for reward_id in counted),
        },
    )


def _change_body(change: AcceptedChange) -> dict[str, Any]:
    claim = change.claim
    return {
        "claim_id": str(claim.claim_id),
        "reward_id": str(claim.reward_id),
        "participant_id": claim.participant_id,
        "status": claim.status,
        "used_at": claim.used_at.isoformat() if claim.used_at else None,
        "cancelled_at": claim.cancelled_at.isoformat() if claim.cancelled_at else None,
        "points_refunded": change.points_refunded,
        "new_balance": change.new_balance,
        "code_returned": claim.status == CANCELLED and claim.holds_preloaded_code,
    }


# Uses and cancels of one batch in one statement: each claim moves from fulfilled only
# (the claim rows are locked, and a claim that is no longer fulfilled changes nothing, so
# a cancel can never be applied twice), cancelled claims' pre-loaded codes go back to
# stock, and their multipliers (points_multiplier rewards) end now, found through the
# participant's key (points earned with them stay).
_CHANGE_CLAIMS = """
    WITH wanted AS (
        SELECT * FROM jsonb_to_recordset(CAST(%(changes)s AS jsonb)) AS wanted(
            id uuid, status text, used_at timestamptz, cancelled_at timestamptz
        )
    ),
    changed AS (
        UPDATE claims AS claim
        SET status = wanted.status, used_at = wanted.used_at,
            cancelled_at = wanted.cancelled_at
        FROM wanted
        WHERE claim.id = ANY(CAST(%(claim_ids)s AS uuid[])) AND claim.id = wanted.id
          AND claim.status = 'fulfilled'
        RETURNING claim.id, claim.tenant_id, claim.env, claim.participant_id,
                  claim.reward_id, claim.claimed_at, wanted.status
    ),
    ended AS (
        UPDATE participant_multipliers AS multiplier SET expires_at = %(now)s
        FROM changed
        JOIN participants AS participant
            ON participant.tenant_id = changed.tenant_id AND participant.env = changed.env
           AND participant.external_id = changed.participant_id
        WHERE changed.status = 'cancelled' AND multiplier.participant_pk = participant.id
          AND multiplier.claim_id = changed.id
          AND (multiplier.expires_at IS NULL OR multiplier.expires_at > %(now)s)
    ),
    restocked AS (
        UPDATE reward_codes SET claim_id = NULL, allocated_at = NULL
        WHERE claim_id = ANY(CAST(%(restocked_ids)s AS uuid[]))
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM changed), (SELECT count(*) FROM restocked)
"""


def _change_claims(session: Session, changes: list[AcceptedChange], now: datetime) -> None:
    restocked = [
        str(change.claim.claim_id)
        for change in changes
        if change.claim.status == CANCELLED and change.claim.holds_preloaded_code
    ]
    [(changed, returned)] = fetch_tuples(
        session,
        _CHANGE_CLAIMS,
        {
            "changes": json.dumps(
                [
                    {
                        "id": str(change.claim.claim_id),
                        "status": change.claim.status,
                        "used_at": change.claim.used_at.isoformat()
                        if change.claim.used_at
                        else None,
                        "cancelled_at": change.claim.cancelled_at.isoformat()
                        if change.claim.cancelled_at
                        else None,
                    }
                    for change in changes
                ]
            ),
            "claim_ids": plain_array_literal(str(change.claim.claim_id) for change in changes),
            "restocked_ids": plain_array_literal(restocked),
            "now": now,
        },
    )
    if changed != len(changes) or returned != len(restocked):
        # The rows read under lock said these claims were fulfilled and held these codes;
        # the tables disagree. Roll the batch back rather than refund on a guess.
        raise RuntimeError("claim status changes out of step with the claims read under lock")


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
    return random_code(10, prefix)


def _claim_expiry(reward: Reward, now: datetime) -> datetime | None:
    if reward.code_expiry_days is not None:
        return now + timedelta(days=reward.code_expiry_days)
    return reward.expires_at


# The claim rows of a batch, from one JSON document (one parameter whatever the size).
# Metadata comes as JSON text, so that the json column keeps it exactly as sent.
_INSERT_CLAIMS = """
    INSERT INTO claims (
        id, tenant_id, env, reward_id, participant_id, code_value, claimed_at, expires_at,
        points_deducted, new_balance, operation_id, idempotency_key, metadata
    )
    SELECT c.id, %(tenant_id)s, %(env)s, c.reward_id, c.participant_id, c.code_value,
           %(claimed_at)s, c.expires_at, c.points_deducted, c.new_balance, c.operation_id,
           c.idempotency_key, CAST(c.metadata AS json)
    FROM jsonb_to_recordset(CAST(%(claims)s AS jsonb)) AS c(
        id uuid, reward_id uuid, participant_id text, code_value text, expires_at timestamptz,
        points_deducted integer, new_balance bigint, operation_id uuid, idempotency_key text,
        metadata text
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
                "metadata": json.dumps(claim.request.metadata)
                if claim.request.metadata is not None
                else None,
            }
        )
    session.connection().exec_driver_sql(
        _INSERT_CLAIMS,
        {
            "tenant_id": tenant_id,
            "env": env,
            "claimed_at": now,
            "claims": json.dumps(claims),
        },
    )


# One ledger line per paid claim and per refund of a cancelled one, in decision order (the
# ledger's seq is its insert order, so a participant's lines follow its balance), the lots
# paid from, then each participant's balance and total spent, moved once by its net
# amount (a refund takes back what its claim had added to total_spent): one statement.
# The participants are locked by this transaction; their ids also come as an array, so
# that they are found by primary key (see _STORE_ANSWERS in app.operation_runs).
_MOVE_POINTS_HEAD = """
    WITH lines AS (
        SELECT * FROM ROWS FROM (
            jsonb_to_recordset(CAST(%(lines)s AS jsonb)) AS (
                participant_pk uuid, type text, amount bigint, reason text,
                balance_after bigint, operation_id uuid, claim_id uuid
            )
        ) WITH ORDINALITY AS line(
            participant_pk, type, amount, reason, balance_after, operation_id, claim_id,
            position
        )
    ),
    ledger AS (
        INSERT INTO ledger_entries (
            id, tenant_id, env, participant_pk, type, amount, base_amount, reason,
            balance_after, operation_id, claim_id, created_at
        )
        SELECT gen_random_uuid(), %(tenant_id)s, %(env)s, participant_pk, type, amount,
               amount, reason, balance_after, operation_id, claim_id, %(now)s
        FROM lines
        ORDER BY position
    )
"""
_MOVE_POINTS_TAIL = """
    UPDATE participants AS p
    SET balance = p.balance + moved.amount,
        total_spent = p.total_spent - moved.amount,
        updated_at = %(now)s
    FROM (SELECT participant_pk, sum(amount) AS amount FROM lines GROUP BY participant_pk)
        AS moved
    WHERE p.id = ANY(CAST(%(participants)s AS uuid[])) AND p.id = moved.participant_pk
"""
_MOVE_POINTS = _MOVE_POINTS_HEAD + _MOVE_POINTS_TAIL
_MOVE_POINTS_WITH_LOTS = _MOVE_POINTS_HEAD + "," + WRITE_LOTS + _MOVE_POINTS_TAIL
CLAIM_ENTRY_TYPE = "claim"
# A credit that gives back spent points: `rewards ledger verify` counts it against
# total_spent, not as points earned (it does not climb tiers).
REFUND_ENTRY_TYPE = "refund"


def _ledger_line(
    decision: AcceptedClaim | AcceptedChange, locked: dict[str, LockedRow]
) -> dict[str, Any] | None:
    if isinstance(decision, AcceptedClaim):
        if not decision.points_deducted:
            return None
        participant_id, amount = decision.request.participant_id, -decision.points_deducted
        entry_type, reason = CLAIM_ENTRY_TYPE, f"Claimed reward: {decision.reward.name}"
        balance_after, claim_id = decision.new_balance, decision.claim_id
    else:
        if not decision.points_refunded:
            return None
        participant_id, amount = decision.claim.participant_id, decision.points_refunded
        entry_type, reason = REFUND_ENTRY_TYPE, "Refund of a cancelled claim"
        balance_after, claim_id = decision.new_balance, decision.claim.claim_id
    return {
        "participant_pk": locked[participant_id].pk,
        "type": entry_type,
        "amount": amount,
        "reason": reason,
        "balance_after": balance_after,
        "operation_id": str(decision.request.operation_id),
        "claim_id": str(claim_id),
    }


def _move_points(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    accepted: list[AcceptedClaim | AcceptedChange],
    locked: dict[str, LockedRow],
    lots: dict[str, LotBook],
    now: datetime,
) -> None:
    """One ledger line per paid claim and per refund, the lots paid from, and one balance
    update per participant."""
    lines = [line for line in (_ledger_line(d, locked) for d in accepted) if line is not None]
    if not lines:
        return
    participant_pks = {line["participant_pk"] for line in lines}
    lot_changes = write_lots_params(
        (), (book for pid, book in lots.items() if locked[pid].pk in participant_pks)
    )
    session.connection().exec_driver_sql(
        _MOVE_POINTS_WITH_LOTS if lot_changes else _MOVE_POINTS,
        {
            "tenant_id": tenant_id,
            "env": env,
            "now": now,
            "lines": json.dumps(lines),
            "participants": plain_array_literal(participant_pks),
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
