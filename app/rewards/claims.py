"""Claiming a reward: the rule that says whether a claim can be taken, a participant's
eligibility in the catalog, and claim history. The worker-side transaction that takes
claims is app.rewards.claim_batches."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import String, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.errors import Conflict, DomainError, NotFound, parse_uuid
from app.ledger import (
    insufficient_points,
)
from app.models import Claim, Participant, Reward
from app.rewards.catalog import (
    available_codes,
    reward_not_found,
)

CLAIM_KIND = "reward.claim"
# A claim's later moves run in its reward's claim lane (app.rewards.claim_batches): a
# cancel gives stock back and refunds its payer, so it takes the claim's locks in their order.
CLAIM_USE_KIND = "reward.claim_use"
CLAIM_CANCEL_KIND = "reward.claim_cancel"
USE, CANCEL = "use", "cancel"
FULFILLED, USED, CANCELLED = "fulfilled", "used", "cancelled"
OUT_OF_STOCK = "reward_out_of_stock"


def claim_not_found() -> NotFound:
    return NotFound("claim_not_found", "Claim not found")


def claim_change_blocker(status: str, change: str) -> DomainError | None:
    """Why a claim in `status` cannot take `change` (USE or CANCEL), or None: only a
    fulfilled claim moves, once, to used or to cancelled."""
    if status == FULFILLED:
        return None
    if status == USED:
        if change == USE:
            return Conflict("claim_already_used", "The claim was already used")
        return Conflict("claim_already_used", "A used claim cannot be cancelled")
    if change == USE:
        return Conflict("claim_cancelled", "A cancelled claim cannot be used")
    return Conflict("claim_already_cancelled", "The claim was already cancelled")


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
        return DomainError(OUT_OF_STOCK, "Reward is out of stock", 400)
    cost = reward.points_cost or 0
    if points_deduction and cost > 0 and (balance or 0) < cost:
        return insufficient_points(balance or 0, cost)
    return None


def unlocked_balances(
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


def claim_payload(
    reward_id: uuid.UUID,
    participant_id: str,
    points_deduction: bool,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "reward_id": str(reward_id),
        "participant_id": participant_id,
        "points_deduction": points_deduction,
    }
    if metadata is not None:
        # Only when sent: a claim without it fingerprints as it always did.
        payload["metadata"] = metadata
    return payload


def claim_change_payload(
    session: Session, tenant_id: uuid.UUID, env: str, claim_id: str
) -> dict[str, Any]:
    """What a use or a cancel of a claim carries to the worker: the claim, and its reward
    and participant, which route it to the reward's claim lane and count against the
    participant's write cap. An unknown claim is answered at once (404)."""
    parsed_id = parse_uuid(claim_id, claim_not_found())
    found = session.execute(
        select(Claim.reward_id, Claim.participant_id).where(
            Claim.id == parsed_id,
            Claim.tenant_id == tenant_id,
            Claim.env == env,
        )
    ).one_or_none()
    if found is None:
        raise claim_not_found()
    reward_id, participant_id = found
    return {
        "claim_id": str(parsed_id),
        "reward_id": str(reward_id),
        "participant_id": participant_id,
    }


def list_participant_claims(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    participant_id: str,
    *,
    offset: int,
    limit: int,
) -> tuple[list[dict[str, Any]], int, int]:
    """A page of the participant's claims (newest first), how many it has, and the points
    they cost, net of refunds (a cancelled claim's points came back)."""
    conditions = (
        Claim.tenant_id == tenant_id,
        Claim.env == env,
        Claim.participant_id == participant_id,
    )
    total, spent = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(Claim.points_deducted).filter(Claim.status != CANCELLED), 0),
        ).where(*conditions)
    ).one()
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
            "status": claim.status,
            "used_at": claim.used_at,
            "cancelled_at": claim.cancelled_at,
            "metadata": claim.metadata_,
        }
        for claim, name, reward_type in rows
    ]
    return claims, int(total), int(spent or 0)


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
                Claim.status != CANCELLED,
            )
            .group_by(Claim.reward_id)
        ).all()
    }
    balance = unlocked_balances(session, tenant_id, env, [participant_id]).get(participant_id, 0)
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


def claim_time(session: Session, claim_id: uuid.UUID) -> datetime:
    """When a claim was made."""
    return session.execute(select(Claim.claimed_at).where(Claim.id == claim_id)).scalar_one()
