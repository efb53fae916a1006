"""A participant's standing while points are decided: balance, lifetime points, tier and
multipliers in force; the credits and debits applied to it, tier climbs, and the events
they make. Pure: the award pass (app.points.awards) and the everyday write
(app.points.balance_changes) read participants under lock, then decide with these.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy.orm import Session

from app.errors import DomainError
from app.infra.pgcopy import COPY_NULL, copy_field
from app.ledger import LockedRow, insufficient_points
from app.points.lots import LotBook, lot_dates
from app.points.multipliers import ActiveMultiplier, active_multipliers
from app.points.tiers import TierLadder, TierRung, load_ladder, qualifying_points

ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class TierUpgrade:
    code: str
    name: str
    level: int
    previous_code: str | None
    previous_level: int | None
    # In the tier events (not in the award's answer, whose shape the contract fixes).
    previous_name: str | None = None

    def as_body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "level": self.level,
            "previous_code": self.previous_code,
            "previous_level": self.previous_level,
        }


class Credit(NamedTuple):
    """One award as applied: `amount` is what was credited, after multipliers;
    `new_balance` the available balance after it (a pending award leaves it unchanged)."""

    transaction_id: str
    participant_id: str
    amount: int
    base_amount: int
    new_balance: int
    tier_upgrade: TierUpgrade | None
    available_at: datetime | None = None  # None: available at once
    expires_at: datetime | None = None  # None: never

    def as_body(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "participant_id": self.participant_id,
            "amount": self.amount,
            "new_balance": self.new_balance,
            "tier_upgrade": self.tier_upgrade.as_body() if self.tier_upgrade else None,
            "available_at": self.available_at.isoformat() if self.available_at else None,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }


@dataclass(frozen=True, slots=True)
class Debit:
    """One deduction as applied."""

    transaction_id: str
    participant_id: str
    amount: int
    new_balance: int

    def as_body(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "participant_id": self.participant_id,
            "amount": self.amount,
            "new_balance": self.new_balance,
        }


class _Placement:
    """A tier and what it (with a participant's boosts) makes an award worth."""

    __slots__ = ("applied", "applied_field", "factor", "tier", "tier_code", "upgrade_at")

    def __init__(
        self, tier: TierRung | None, ladder: TierLadder, boosts: Sequence[ActiveMultiplier]
    ) -> None:
        self.tier = tier
        self.tier_code = tier.code if tier is not None else None
        self.upgrade_at = ladder.upgrade_threshold(tier)
        factor = ONE
        applied: list[dict[str, Any]] = []
        if tier is not None and tier.multiplier != ONE:
            factor *= tier.multiplier
            applied.append(
                {"source": "tier", "tier_code": tier.code, "multiplier": float(tier.multiplier)}
            )
        for boost in boosts:
            factor *= boost.multiplier
            applied.append(boost.as_applied())
        # None: an award is worth its base amount.
        self.factor: Decimal | None = None if factor == ONE else factor
        # What the ledger records of them (None: nothing applied); serialized once for
        # COPY, shared by the entries of every participant placed alike.
        self.applied = applied or None
        self.applied_field = copy_field(json.dumps(applied)) if applied else COPY_NULL


class Placements:
    """Placements of participants without boosts, one per tier: most share a few."""

    def __init__(self, ladder: TierLadder) -> None:
        self.ladder = ladder
        self._by_tier: dict[str | None, _Placement] = {}

    def of(self, tier: TierRung | None, boosts: Sequence[ActiveMultiplier]) -> _Placement:
        if boosts:
            return _Placement(tier, self.ladder, boosts)
        code = tier.code if tier is not None else None
        placement = self._by_tier.get(code)
        if placement is None:
            placement = self._by_tier[code] = _Placement(tier, self.ladder, boosts)
        return placement


class Standing:
    """A locked participant's running state while a set of awards is computed."""

    __slots__ = (
        "applied",
        "applied_field",
        "balance",
        "boosts",
        "external_id",
        "factor",
        "lots",
        "participant_json",
        "pending",
        "pk",
        "qualifying",
        "tier",
        "tier_code",
        "tier_locked",
        "total_earned",
        "total_expired",
        "total_spent",
        "upgrade_at",
    )

    def __init__(
        self,
        locked: LockedRow,
        placements: Placements,
        boosts: list[ActiveMultiplier],
        qualifying: int | None = None,
    ) -> None:
        self.pk = locked.pk
        self.external_id = locked.external_id
        # The id as a JSON string inside a COPY field, for the events' payloads.
        self.participant_json = copy_field(json.dumps(locked.external_id))
        self.balance = locked.balance
        self.total_earned = locked.total_earned
        # The points its tier goes by: lifetime points, or the program's rolling window's.
        self.qualifying = locked.total_earned if qualifying is None else qualifying
        self.total_spent = locked.total_spent
        self.total_expired = locked.total_expired
        self.pending = locked.pending
        # What it can spend, for a participant the batch may debit (else None).
        self.lots: LotBook | None = None
        self.tier_locked = locked.tier_locked
        self.boosts = boosts
        ladder = placements.ladder
        self._place(placements.of(ladder.current(locked.tier_code, self.qualifying), boosts))

    def _place(self, placement: _Placement) -> None:
        self.tier = placement.tier
        self.tier_code = placement.tier_code
        # A tier set by hand and locked does not climb.
        self.upgrade_at = None if self.tier_locked else placement.upgrade_at
        self.factor = placement.factor
        self.applied = placement.applied
        self.applied_field = placement.applied_field

    def credit(
        self, base_amount: int, placements: Placements, *, pending: bool = False
    ) -> tuple[int, TierUpgrade | None]:
        """Credit an award: its base amount times the placement's factor, rounded down (the
        product is never negative, so int() does it); then climb to the tier it reaches.
        Returns the points credited and the upgrade, if any. Read `applied` before:
        the multipliers that applied are those of the tier the award started in.

        Pending points count for nothing (balance, lifetime points, tier) until released."""
        factor = self.factor
        credited = base_amount if factor is None else int(base_amount * factor)
        if pending:
            self.pending += credited
            return credited, None
        self.balance += credited
        self.total_earned += credited
        qualifying = self.qualifying = self.qualifying + credited
        if self.upgrade_at is not None and qualifying >= self.upgrade_at:
            return credited, self.climb(placements)
        return credited, None

    def release(self, amount: int, placements: Placements) -> TierUpgrade | None:
        """Pending points become available: they count from now on, like a credit."""
        self.pending -= amount
        self.balance += amount
        self.total_earned += amount
        self.qualifying += amount
        return self.climb(placements)

    def expire(self, amount: int) -> None:
        """An available lot's remaining points expire."""
        self.balance -= amount
        self.total_expired += amount

    def debit(self, amount: int) -> DomainError | None:
        """Spend `amount` from its lots in order, or refuse (and change nothing) when what
        it can spend (`lots`, read for a participant the batch may debit) is short."""
        lots = self.lots
        if lots is None:
            raise RuntimeError(f"participant {self.external_id}: debited without its lots")
        if lots.spendable < amount:
            return insufficient_points(lots.spendable, amount)
        lots.spend(amount)
        self.balance -= amount
        self.total_spent += amount
        return None

    def climb(self, placements: Placements) -> TierUpgrade | None:
        """Move up to the tier the lifetime points now reach, reporting the upgrade."""
        if self.upgrade_at is None or self.qualifying < self.upgrade_at:
            return None
        reached = placements.ladder.qualifying(self.qualifying)
        previous = self.tier
        if reached is None or (previous is not None and reached.level <= previous.level):
            return None
        self._place(placements.of(reached, self.boosts))
        return TierUpgrade(
            code=reached.code,
            name=reached.name,
            level=reached.level,
            previous_code=previous.code if previous else None,
            previous_level=previous.level if previous else None,
            previous_name=previous.name if previous else None,
        )


def load_standings(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    locked: dict[str, LockedRow],
    now: datetime,
    tier_window_days: int | None = None,
) -> tuple[Placements, dict[str, Standing]]:
    """What deciding awards needs of locked participants: the tenant's tier ladder, and
    each participant's standing (balance, tier, active multipliers, and with a rolling
    tier window its qualifying points) by external id."""
    pks = [row.pk for row in locked.values()]
    boosts = active_multipliers(session, pks, now)
    qualifying = (
        qualifying_points(session, pks, tier_window_days, now)
        if tier_window_days is not None
        else None
    )
    return place_standings(load_ladder(session, tenant_id, env), locked, boosts, qualifying)


def place_standings(
    ladder: TierLadder,
    locked: dict[str, LockedRow],
    boosts: Mapping[uuid.UUID, list[ActiveMultiplier]],
    qualifying: Mapping[str, int] | None = None,
) -> tuple[Placements, dict[str, Standing]]:
    """Each locked participant's standing on `ladder` with its active multipliers; with
    `qualifying` (by key: a rolling tier window's points), its tier goes by those."""
    placements = Placements(ladder)
    by_pk = {str(pk): active for pk, active in boosts.items()}
    standings = {
        external_id: Standing(
            row,
            placements,
            by_pk.get(row.pk, []),
            None if qualifying is None else qualifying.get(row.pk, 0),
        )
        for external_id, row in locked.items()
    }
    return placements, standings


def awarded_payload(
    credit: Credit, reason: str | None, metadata: dict[str, Any] | None
) -> dict[str, Any]:
    """The points.awarded event's payload (the award pass formats the same JSON by hand)."""
    return {
        "participant_id": credit.participant_id,
        "transaction_id": credit.transaction_id,
        "amount": credit.amount,
        "base_amount": credit.base_amount,
        "new_balance": credit.new_balance,
        "reason": reason,
        "metadata": metadata,
    }


def upgraded_payload(
    participant_id: str, transaction_id: str, upgrade: TierUpgrade, qualifying: int
) -> dict[str, Any]:
    previous = (
        {
            "code": upgrade.previous_code,
            "name": upgrade.previous_name,
            "level": upgrade.previous_level,
        }
        if upgrade.previous_code is not None
        else None
    )
    return {
        "participant_id": participant_id,
        "transaction_id": transaction_id,
        "previous_tier": previous,
        "new_tier": {"code": upgrade.code, "name": upgrade.name, "level": upgrade.level},
        "qualifying_points": qualifying,
    }


# One award as decided, as a plain tuple: a bulk job decides a million, and with a named
# tuple per award, award-batch and bulk ran 3-6% slower in alternating runs. Fields:
# transaction id, participant id, points credited, base amount, new balance, tier upgrade
# or None, the standing after it, the multipliers that applied (a COPY field), qualifying
# points after it, available_at and expires_at (app.points.lots.lot_dates).
AwardDecision = tuple[
    str,
    str,
    int,
    int,
    int,
    "TierUpgrade | None",
    Standing,
    str,
    int,
    "datetime | None",
    "datetime | None",
]


def decide_awards(
    awards: Iterable[Sequence[Any]],
    standings: dict[str, Standing],
    placements: Placements,
    transaction_ids: Iterable[str],
    now: datetime,
    default_expiry_days: int | None = None,
) -> Iterator[AwardDecision]:
    """Each award's decision, in order, against the running standings (changed in place);
    an award is (participant_id, base amount, reason, metadata, action, available_at,
    expires_at). Pure, and lazy: the award pass writes each block of lines while the next
    is decided, and keeps no list of a million."""
    for transaction_id, award in zip(transaction_ids, awards, strict=True):
        participant_id, base_amount = award[0], award[1]
        available_at, expires_at = award[5], award[6]
        if available_at is not None or expires_at is not None or default_expiry_days:
            available_at, expires_at = lot_dates(available_at, expires_at, now, default_expiry_days)
        standing = standings[participant_id]
        applied_field = standing.applied_field
        credited, upgrade = standing.credit(
            base_amount, placements, pending=available_at is not None
        )
        yield (
            transaction_id,
            participant_id,
            credited,
            base_amount,
            standing.balance,
            upgrade,
            standing,
            applied_field,
            standing.qualifying,
            available_at,
            expires_at,
        )
