"""Announcing expired coupons, from the periodic sweep (the workers' lot sweep task runs
it per shard, app.points.sweeps.Shard, sharded by coupon id).

A batch takes the active coupons past expires_at not yet announced, by the indexed due
time, SKIP LOCKED (a coupon a redemption holds is taken by the next run), marks them
announced and records one `coupon.expired` each, in one transaction: an event is
recorded once per expiry, and a coupon whose expires_at is moved later is announced
again when the new one passes (app.coupons.definitions.update_coupon clears the mark).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.infra.pgcopy import fetch_tuples
from app.outbox import COUPON_EXPIRED, record_events
from app.points.sweeps import WHOLE, Shard, drain_in_batches, shard_filter

SWEEP_BATCH_COUPONS = 1_000

_ANNOUNCE_DUE = f"""
    WITH due AS (
        SELECT id FROM coupons
        WHERE expired_event_at IS NULL AND expires_at IS NOT NULL AND expires_at <= %(now)s
          AND active AND {shard_filter("id")}
        ORDER BY expires_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    )
    UPDATE coupons AS c SET expired_event_at = %(now)s
    FROM due WHERE c.id = due.id
    RETURNING c.tenant_id, c.env, c.id, c.code, c.campaign, c.expires_at, c.usage_count,
              c.usage_limit
"""  # noqa: S608 (a constant fragment)


def sweep_coupon_batch(
    session: Session, now: datetime, shard: Shard = WHOLE, limit: int = SWEEP_BATCH_COUPONS
) -> int:
    """Announce up to `limit` expired coupons (of `shard`); how many."""
    rows = fetch_tuples(
        session,
        _ANNOUNCE_DUE,
        {"now": now, "limit": limit, "shard": shard.position, "shards": shard.total},
    )
    by_program: dict[tuple[uuid.UUID, str], list[dict[str, Any]]] = {}
    for tenant_id, env, coupon_id, code, campaign, expires_at, usage_count, usage_limit in rows:
        by_program.setdefault((tenant_id, env), []).append(
            {
                "coupon_id": str(coupon_id),
                "code": code,
                "campaign": campaign,
                "expires_at": expires_at.isoformat(),
                "usage_count": usage_count,
                "usage_limit": usage_limit,
                "environment": env,
            }
        )
    for (tenant_id, env), events in by_program.items():
        record_events(session, tenant_id, env, COUPON_EXPIRED, events)
    return len(rows)


def sweep_coupons(
    session_factory: sessionmaker[Session],
    *,
    now: Callable[[], datetime] = utcnow,
    shard: Shard = WHOLE,
    limit: int = SWEEP_BATCH_COUPONS,
) -> int:
    """Announce every expired coupon (of `shard`), a batch per transaction; how many."""
    started = now()
    return drain_in_batches(
        session_factory,
        lambda session: sweep_coupon_batch(session, started, shard, limit),
        limit,
    )
