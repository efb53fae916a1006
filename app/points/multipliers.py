"""Participants' active points multipliers (won by claiming points_multiplier rewards)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import String, Uuid, any_, bindparam, cast, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from app.infra.pgcopy import plain_array_literal
from app.models import ParticipantMultiplier


@dataclass(frozen=True, slots=True)
class ActiveMultiplier:
    id: uuid.UUID
    multiplier: Decimal
    claim_id: uuid.UUID | None
    starts_at: datetime
    expires_at: datetime | None

    def as_applied(self) -> dict[str, Any]:
        """How the ledger entry records this multiplier."""
        return {
            "source": "reward",
            "multiplier_id": str(self.id),
            "claim_id": str(self.claim_id) if self.claim_id else None,
            "multiplier": float(self.multiplier),
        }


def active_multipliers(
    session: Session, participant_pks: Collection[uuid.UUID | str], now: datetime
) -> dict[uuid.UUID, list[ActiveMultiplier]]:
    """Multipliers in force at `now`, by participant, oldest first; one statement for all.

    The keys may be given as UUIDs or their text; thousands travel as one array literal.
    """
    if not participant_pks:
        return {}
    pks = plain_array_literal(map(str, participant_pks))
    rows = session.execute(
        select(
            ParticipantMultiplier.participant_pk,
            ParticipantMultiplier.id,
            ParticipantMultiplier.multiplier,
            ParticipantMultiplier.claim_id,
            ParticipantMultiplier.starts_at,
            ParticipantMultiplier.expires_at,
        )
        .where(
            ParticipantMultiplier.participant_pk
            == any_(cast(bindparam("participant_pks", pks, type_=String()), ARRAY(Uuid()))),
            ParticipantMultiplier.starts_at <= now,
            or_(ParticipantMultiplier.expires_at.is_(None), ParticipantMultiplier.expires_at > now),
        )
        .order_by(ParticipantMultiplier.starts_at, ParticipantMultiplier.id)
    )
    by_participant: dict[uuid.UUID, list[ActiveMultiplier]] = defaultdict(list)
    for participant_pk, multiplier_id, multiplier, claim_id, starts_at, expires_at in rows:
        by_participant[participant_pk].append(
            ActiveMultiplier(multiplier_id, multiplier, claim_id, starts_at, expires_at)
        )
    return dict(by_participant)
