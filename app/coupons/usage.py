"""Reading what the coupon rules decide on: the codes asked for and their coupons, each
participant's live uses, who is a returning customer, and the orders already redeemed.

Validate reads these in the web process without locks; a redemption batch reads them
after locking the batch's coupons (app.coupons.redemption_batches), which is what
makes them exact there: every redemption and void of a coupon holds its row lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.infra.pgcopy import array_literal, fetch_tuples, plain_array_literal
from app.models import Coupon, CouponRedemption


@dataclass(frozen=True, slots=True)
class CodeRow:
    code: str
    coupon_id: uuid.UUID
    single_use: bool
    redemption_id: uuid.UUID | None  # the live redemption holding a single-use code


@dataclass(frozen=True, slots=True)
class PriorRedemption:
    """A live redemption of a coupon for an order: what a replay of the order answers."""

    redemption_id: uuid.UUID
    coupon_id: uuid.UUID
    code: str
    participant_id: str
    order_id: str
    order_amount: Decimal | None
    discount_amount: Decimal | None
    request_fingerprint: str
    redeemed_at: datetime

    @classmethod
    def of(cls, row: CouponRedemption) -> PriorRedemption:
        return cls(
            row.id,
            row.coupon_id,
            row.code,
            row.participant_id,
            row.order_id,
            row.order_amount,
            row.discount_amount,
            row.request_fingerprint,
            row.redeemed_at,
        )


_CODES = """
    SELECT code, coupon_id, single_use, redemption_id FROM coupon_codes
    WHERE tenant_id = %(tenant_id)s AND env = %(env)s AND code = ANY(CAST(%(codes)s AS text[]))
"""


def find_codes(
    session: Session, tenant_id: uuid.UUID, env: str, codes: Iterable[str]
) -> dict[str, CodeRow]:
    """The code rows among `codes` (normalized), by code: one primary-key probe each."""
    wanted = sorted(set(codes))
    if not wanted:
        return {}
    rows = fetch_tuples(
        session, _CODES, {"tenant_id": tenant_id, "env": env, "codes": array_literal(wanted)}
    )
    return {row[0]: CodeRow(*row) for row in rows}


def load_coupons(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    coupon_ids: Iterable[uuid.UUID],
    *,
    lock: bool,
) -> dict[uuid.UUID, Coupon]:
    """The coupons by id; with `lock`, row-locked in id order (the one lock order of
    coupons: every batch and void takes them so, then nothing else that waits)."""
    ids = sorted(set(coupon_ids))
    if not ids:
        return {}
    query = (
        select(Coupon)
        .where(Coupon.id.in_(ids), Coupon.tenant_id == tenant_id, Coupon.env == env)
        .order_by(Coupon.id)
        .execution_options(populate_existing=True)
    )
    if lock:
        query = query.with_for_update()
    return {coupon.id: coupon for coupon in session.execute(query).scalars()}


# One index probe per (coupon, participant), as for claims (app.rewards.claim_batches).
_USES = """
    SELECT wanted.coupon_id, wanted.participant_id, counted.uses
    FROM unnest(CAST(%(coupon_ids)s AS uuid[]), CAST(%(participant_ids)s AS text[]))
        AS wanted(coupon_id, participant_id)
    CROSS JOIN LATERAL (
        SELECT count(*) AS uses FROM coupon_redemptions
        WHERE coupon_id = wanted.coupon_id AND participant_id = wanted.participant_id
          AND status = 'redeemed'
    ) AS counted
    WHERE counted.uses > 0
"""


def participant_uses(
    session: Session, pairs: Iterable[tuple[uuid.UUID, str]]
) -> dict[tuple[uuid.UUID, str], int]:
    """Each participant's live redemptions of each coupon (absent: none)."""
    wanted = sorted(set(pairs))
    if not wanted:
        return {}
    rows = fetch_tuples(
        session,
        _USES,
        {
            "coupon_ids": plain_array_literal(str(coupon_id) for coupon_id, _ in wanted),
            "participant_ids": array_literal([participant for _, participant in wanted]),
        },
    )
    return {(coupon_id, participant): int(uses) for coupon_id, participant, uses in rows}


_RETURNING = """
    SELECT wanted.participant_id
    FROM unnest(CAST(%(participant_ids)s AS text[])) AS wanted(participant_id)
    WHERE EXISTS (
        SELECT FROM coupon_redemptions
        WHERE tenant_id = %(tenant_id)s AND env = %(env)s
          AND participant_id = wanted.participant_id AND status = 'redeemed'
    ) OR EXISTS (
        SELECT FROM claims
        WHERE tenant_id = %(tenant_id)s AND env = %(env)s
          AND participant_id = wanted.participant_id
    )
"""


def returning_customers(
    session: Session, tenant_id: uuid.UUID, env: str, participants: Iterable[str]
) -> set[str]:
    """Those among `participants` with a live redemption of any coupon or any claim."""
    wanted = sorted(set(participants))
    if not wanted:
        return set()
    rows = fetch_tuples(
        session,
        _RETURNING,
        {"tenant_id": tenant_id, "env": env, "participant_ids": array_literal(wanted)},
    )
    return {participant for (participant,) in rows}


_PRIOR = """
    SELECT r.id, r.coupon_id, r.code, r.participant_id, r.order_id, r.order_amount,
           r.discount_amount, r.request_fingerprint, r.redeemed_at
    FROM unnest(CAST(%(coupon_ids)s AS uuid[]), CAST(%(order_ids)s AS text[]))
        AS wanted(coupon_id, order_id)
    JOIN coupon_redemptions AS r
      ON r.coupon_id = wanted.coupon_id AND r.order_id = wanted.order_id
     AND r.status = 'redeemed'
"""


def prior_redemptions(
    session: Session, pairs: Iterable[tuple[uuid.UUID, str]]
) -> dict[tuple[uuid.UUID, str], PriorRedemption]:
    """The live redemption of each (coupon, order id), if any."""
    wanted = sorted(set(pairs))
    if not wanted:
        return {}
    rows: Any = fetch_tuples(
        session,
        _PRIOR,
        {
            "coupon_ids": plain_array_literal(str(coupon_id) for coupon_id, _ in wanted),
            "order_ids": array_literal([order_id for _, order_id in wanted]),
        },
    )
    priors = [PriorRedemption(*row) for row in rows]
    return {(prior.coupon_id, prior.order_id): prior for prior in priors}
