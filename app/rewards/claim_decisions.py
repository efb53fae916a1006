"""The claim rules applied to a batch: each claim decided in submission order against the
state read under lock. Pure: the claim transaction (app.rewards.claim_batches) reads,
this decides, app.rewards.claim_writes writes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from app.errors import DomainError
from app.models import Reward
from app.points.lots import LotBook
from app.rewards.catalog import CODELESS_TYPES, reward_not_found
from app.rewards.claims import claim_blocker


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
    lots: dict[str, LotBook] | None = None,
) -> list[ClaimDecision]:
    """Each claim's decision, in order. No I/O: it reads and advances the locked state
    it is given (the rewards' counters, balances, claims so far, and what each payer can
    spend, from its lots) as each claim is taken. A participant without lots can spend
    its whole balance."""
    lots = {} if lots is None else lots
    decisions: list[ClaimDecision] = []
    for request in requests:
        reward = rewards.get(request.reward_id)
        if reward is None:
            decisions.append(reward_not_found())
            continue
        participant_id, deduct = request.participant_id, request.points_deduction
        counted = (reward.id, participant_id)
        book = lots.get(participant_id)
        blocker = claim_blocker(
            reward,
            now=now,
            claims_by_participant=claims_so_far.get(counted, 0),
            points_deduction=deduct,
            balance=book.spendable if book is not None else balances.get(participant_id, 0),
        )
        if blocker is not None:
            decisions.append(blocker)
            continue
        claims_so_far[counted] = claims_so_far.get(counted, 0) + 1
        points_deducted = new_balance = None
        if deduct:
            cost = reward.points_cost or 0
            if book is not None:
                book.spend(cost)
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
