"""The claim rules applied to a batch: each claim, use or cancel decided in submission
order against the state read under lock. Pure: the claim transaction
(app.rewards.claim_batches) reads, this decides, app.rewards.claim_writes writes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.errors import DomainError
from app.models import Reward
from app.points.lots import LotBook
from app.rewards.catalog import CODELESS_TYPES, reward_not_found
from app.rewards.claims import (
    CANCEL,
    CANCELLED,
    USED,
    claim_blocker,
    claim_change_blocker,
    claim_not_found,
)


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    operation_id: uuid.UUID
    idempotency_key: str | None
    reward_id: uuid.UUID
    participant_id: str
    points_deduction: bool
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ClaimChangeRequest:
    """A use or a cancel (`change`: USE or CANCEL) of a claim of `reward_id`."""

    operation_id: uuid.UUID
    claim_id: uuid.UUID
    reward_id: uuid.UUID
    change: str


@dataclass(slots=True)
class HeldClaim:
    """A claim row read under lock; `status` advances as the batch decides."""

    claim_id: uuid.UUID
    reward_id: uuid.UUID
    participant_id: str
    status: str
    points_deducted: int | None
    holds_preloaded_code: bool
    claimed_at: datetime
    used_at: datetime | None = None
    cancelled_at: datetime | None = None


@dataclass(slots=True)
class AcceptedChange:
    request: ClaimChangeRequest
    claim: HeldClaim
    reward: Reward
    points_refunded: int | None = None
    new_balance: int | None = None


@dataclass(slots=True)
class AcceptedClaim:
    request: ClaimRequest
    reward: Reward
    claim_id: uuid.UUID
    points_deducted: int | None
    new_balance: int | None
    preloaded: bool  # takes one of the reward's pre-loaded codes (else one is generated)
    code_value: str | None = None


ClaimDecision = AcceptedClaim | AcceptedChange | DomainError


def decide_claims(
    requests: list[ClaimRequest | ClaimChangeRequest],
    rewards: dict[uuid.UUID, Reward],
    balances: dict[str, int],
    claims_so_far: dict[tuple[uuid.UUID, str], int],
    now: datetime,
    new_claim_id: Callable[[], uuid.UUID] = uuid.uuid4,
    lots: dict[str, LotBook] | None = None,
    held: dict[uuid.UUID, HeldClaim] | None = None,
) -> list[ClaimDecision]:
    """Each claim's, use's or cancel's decision, in order. No I/O: it reads and advances
    the locked state it is given (the rewards' counters, balances, claims so far, what
    each payer can spend, from its lots, and the claims to change, `held`) as each is
    taken. A participant without lots can spend its whole balance."""
    lots = {} if lots is None else lots
    held = {} if held is None else held
    decisions: list[ClaimDecision] = []
    for request in requests:
        if isinstance(request, ClaimChangeRequest):
            decisions.append(
                _decide_change(request, held, rewards, balances, claims_so_far, lots, now)
            )
            continue
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


def _decide_change(
    request: ClaimChangeRequest,
    held: dict[uuid.UUID, HeldClaim],
    rewards: dict[uuid.UUID, Reward],
    balances: dict[str, int],
    claims_so_far: dict[tuple[uuid.UUID, str], int],
    lots: dict[str, LotBook],
    now: datetime,
) -> AcceptedChange | DomainError:
    """A use marks the claim used. A cancel undoes the claim: its unit goes back to the
    reward's stock (its pre-loaded code too), it stops counting against the participant's
    cap, and the points it cost come back as open points (the lot they were spent from
    may have expired since: they are given back as never-expiring points)."""
    claim = held.get(request.claim_id)
    if claim is None or claim.reward_id != request.reward_id:
        return claim_not_found()
    blocker = claim_change_blocker(claim.status, request.change)
    if blocker is not None:
        return blocker
    reward = rewards[claim.reward_id]
    if request.change != CANCEL:
        claim.status, claim.used_at = USED, now
        return AcceptedChange(request, claim, reward)
    claim.status, claim.cancelled_at = CANCELLED, now
    reward.claims_count -= 1
    if claim.holds_preloaded_code:
        reward.codes_allocated -= 1
    counted = (claim.reward_id, claim.participant_id)
    if counted in claims_so_far:
        claims_so_far[counted] -= 1
    refund = claim.points_deducted or 0
    if refund <= 0:
        return AcceptedChange(request, claim, reward)
    participant_id = claim.participant_id
    balances[participant_id] = balances[participant_id] + refund
    book = lots.get(participant_id)
    if book is not None:
        book.credit(refund, None)
    return AcceptedChange(request, claim, reward, refund, balances[participant_id])
