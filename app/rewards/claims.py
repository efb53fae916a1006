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
from app.errors import DomainError
from app.ledger import (
    insufficient_points,
)
from app.models import Claim, Participant, Reward
from app.rewards.catalog import (
    available_codes,
    reward_not_found,
)

CLAIM_KIND = "reward.claim"


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
