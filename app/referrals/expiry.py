"""Expiring pending referrals past their expires_at, from the periodic sweep (the workers'
lot sweep task runs it per shard, app.points.sweeps.Shard, sharded by referral id).

A batch takes the due referrals by the indexed due time (ix_referrals_due), SKIP LOCKED (a
referral a completion holds is taken by the next run, which finds it completed or still
due), and flips them to expired in one statement: idempotent, and a batch killed midway
rolls back whole. Reads and completion judge expiry from expires_at already
(app.referrals.completion.EFFECTIVE_STATUS), so the sweep only makes the stored status
catch up; no event is recorded (the webhook events have no referral expiry).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.infra.pgcopy import fetch_tuples
from app.points.sweeps import WHOLE, Shard, drain_in_batches, shard_filter

SWEEP_BATCH_REFERRALS = 1_000

_EXPIRE_DUE = f"""
    WITH due AS (
        SELECT id FROM referrals
        WHERE status = 'pending' AND expires_at IS NOT NULL AND expires_at <= %(now)s
          AND {shard_filter("id")}
        ORDER BY expires_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    )
    UPDATE referrals AS r SET status = 'expired'
    FROM due WHERE r.id = due.id
    RETURNING r.id
"""  # noqa: S608 (a constant fragment)


def sweep_referral_batch(
    session: Session, now: datetime, shard: Shard = WHOLE, limit: int = SWEEP_BATCH_REFERRALS
) -> int:
    """Expire up to `limit` due referrals (of `shard`); how many."""
    rows = fetch_tuples(
        session,
        _EXPIRE_DUE,
        {"now": now, "limit": limit, "shard": shard.position, "shards": shard.total},
    )
    return len(rows)


def sweep_referrals(
    session_factory: sessionmaker[Session],
    *,
    now: Callable[[], datetime] = utcnow,
    shard: Shard = WHOLE,
    limit: int = SWEEP_BATCH_REFERRALS,
) -> int:
    """Expire every due referral (of `shard`), a batch per transaction; how many."""
    started = now()
    return drain_in_batches(
        session_factory,
        lambda session: sweep_referral_batch(session, started, shard, limit),
        limit,
    )
