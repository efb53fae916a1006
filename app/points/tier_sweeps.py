"""Rolling tier qualification: tiers held on the points earned in the program's last
`tier_window_days`, and the sweep that moves a participant down when its points leave
the window.

Qualifying points are the credits that became available within the window: awards
available at once and releases of pending ones (app.points.sweeps). Climbing happens at
award and release time, on these points (app.points.standings). Falling is the sweep's:
each tiered participant carries `tier_expires_at`, when its tier lapses unless new points
come (None: not evaluated since its tier changed), and the sweep evaluates those due, in
batches, on the write path's pattern: lock the participants in the one lock order, read
their credits in the window, decide (`evaluate_tier`, pure), write tiers and events. A tier
set by hand and locked is left alone until its lock ends.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.infra.pgcopy import fetch_tuples, plain_array_literal
from app.ledger import lock_changing_rows
from app.outbox import TIER_DOWNGRADED, record_events
from app.points.sweeps import WHOLE, Shard, shard_filter
from app.points.tiers import TierLadder, TierRung, load_ladder, qualifying_credits

# When a tier whose threshold is 0 lapses: never (a date, not None, which means "due").
NEVER_LAPSES = datetime(9999, 12, 31, tzinfo=UTC)
SWEEP_BATCH_PARTICIPANTS = 1_000


@dataclass(frozen=True, slots=True)
class TierEvaluation:
    tier: TierRung | None  # the tier the points hold now
    downgraded: bool
    qualifying_points: int
    # When that tier lapses unless new points come; None: no tier.
    expires_at: datetime | None


def evaluate_tier(
    ladder: TierLadder,
    current: TierRung | None,
    credits: Sequence[tuple[datetime, int]],
    window_days: int,
    now: datetime,
) -> TierEvaluation:
    """Where a participant's credits in the window (newest first) leave it: in its tier,
    or down to the highest one they still reach; and when that tier lapses. Pure. The
    sweep moves no one up: climbing is the awards' (a tier held by hand may be lower)."""
    points = sum(amount for _, amount in credits)
    tier = current
    downgraded = False
    if current is not None and points < current.points_required:
        tier = ladder.qualifying(points)
        downgraded = True
    return TierEvaluation(tier, downgraded, points, lapse_time(tier, credits, window_days, now))


def lapse_time(
    tier: TierRung | None,
    credits: Sequence[tuple[datetime, int]],
    window_days: int,
    now: datetime,
) -> datetime | None:
    """When `tier` lapses if no new points come: the newest credits that still reach its
    threshold stay in the window until the oldest of them leaves it. `now` for a tier its
    points no longer reach (held by hand): it lapses when the sweep next sees it."""
    if tier is None:
        return None
    if tier.points_required <= 0:
        return NEVER_LAPSES
    running = 0
    for created_at, amount in credits:
        running += amount
        if running >= tier.points_required:
            return created_at + timedelta(days=window_days)
    return now


# Tiered participants of one program whose tier is due for evaluation and not locked.
_DUE = (
    """
    SELECT external_id FROM participants
    WHERE tenant_id = %(tenant_id)s AND env = %(env)s AND tier_code IS NOT NULL
      AND (tier_expires_at IS NULL OR tier_expires_at <= %(now)s)
      AND (tier_locked_until IS NULL OR tier_locked_until <= %(now)s)
      AND """  # noqa: S608 (constant fragments, no input)
    + shard_filter("id")
    + """
    LIMIT %(limit)s
"""
)
_HELD_BY_HAND = """
    SELECT CAST(id AS text) FROM participants
    WHERE id = ANY(CAST(%(pks)s AS uuid[])) AND tier_locked_until > %(now)s
"""
_WRITE_TIERS = """
    UPDATE participants AS p
    SET tier_code = t.tier_code, tier_expires_at = t.expires_at, updated_at = %(now)s,
        tier_since = CASE WHEN p.tier_code IS DISTINCT FROM t.tier_code THEN %(now)s
                          ELSE p.tier_since END
    FROM jsonb_to_recordset(CAST(%(tiers)s AS jsonb))
        AS t(pk uuid, tier_code text, expires_at timestamptz)
    WHERE p.id = ANY(CAST(%(pks)s AS uuid[])) AND p.id = t.pk
"""
_ROLLING_PROGRAMS = """
    SELECT tenant_id, env, tier_window_days FROM program_settings
    WHERE tier_window_days IS NOT NULL ORDER BY tenant_id, env
"""


def sweep_tier_batch(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    window_days: int,
    now: datetime,
    shard: Shard = WHOLE,
    limit: int = SWEEP_BATCH_PARTICIPANTS,
) -> int:
    """Evaluate up to `limit` due participants of one rolling program (of `shard`); how
    many were evaluated (0: none left due)."""
    due = fetch_tuples(
        session,
        _DUE,
        {
            "tenant_id": tenant_id,
            "env": env,
            "now": now,
            "limit": limit,
            "shard": shard.position,
            "shards": shard.total,
        },
    )
    if not due:
        return 0
    locked = lock_changing_rows(
        session, tenant_id, env, create=(), existing=(external_id for (external_id,) in due)
    )
    # Locked by hand since it was found due? Asked under the lock, on the sweep's clock.
    held = {
        pk
        for (pk,) in fetch_tuples(
            session,
            _HELD_BY_HAND,
            {"pks": plain_array_literal(row.pk for row in locked.values()), "now": now},
        )
    }
    ladder = load_ladder(session, tenant_id, env)
    credits = qualifying_credits(session, (row.pk for row in locked.values()), window_days, now)
    tiers: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for external_id, row in locked.items():
        if row.pk in held or row.tier_code is None:
            continue  # set by hand, or moved down by another sweep, meanwhile
        # A tier that left the ladder counts as none: the points place the participant.
        current = ladder.current(row.tier_code, 0)
        evaluation = evaluate_tier(ladder, current, credits.get(row.pk, []), window_days, now)
        if current is None:
            evaluation = evaluate_tier(
                ladder, ladder.qualifying(evaluation.qualifying_points), (), window_days, now
            )
        new_tier = evaluation.tier
        tiers.append(
            {
                "pk": row.pk,
                "tier_code": new_tier.code if new_tier is not None else None,
                "expires_at": (
                    evaluation.expires_at.isoformat() if evaluation.expires_at else None
                ),
            }
        )
        if evaluation.downgraded and current is not None:
            events.append(_downgraded_payload(external_id, current, evaluation))
    if tiers:
        session.connection().exec_driver_sql(
            _WRITE_TIERS,
            {
                "now": now,
                "tiers": json.dumps(tiers),
                "pks": plain_array_literal(str(each["pk"]) for each in tiers),
            },
        )
    record_events(session, tenant_id, env, TIER_DOWNGRADED, events)
    return len(tiers)


def _downgraded_payload(
    participant_id: str, previous: TierRung, evaluation: TierEvaluation
) -> dict[str, Any]:
    tier = evaluation.tier
    return {
        "participant_id": participant_id,
        "previous_tier": previous.reference(),
        "new_tier": tier.reference() if tier is not None else None,
        "qualifying_points": evaluation.qualifying_points,
        "reason": "rolling_window",
        "manual": False,
    }


def rolling_programs(session: Session) -> list[tuple[uuid.UUID, str, int]]:
    """Every (tenant, env, window days) whose tiers qualify on a rolling window."""
    return [tuple(row) for row in fetch_tuples(session, _ROLLING_PROGRAMS, {})]  # type: ignore[misc]


def sweep_tiers(
    session_factory: sessionmaker[Session],
    *,
    now: Callable[[], datetime] = utcnow,
    shard: Shard = WHOLE,
    limit: int = SWEEP_BATCH_PARTICIPANTS,
) -> int:
    """Evaluate every due tier of every rolling program (of the participants in `shard`),
    a batch per transaction; how many were evaluated."""
    started = now()
    with session_factory() as session:
        programs = rolling_programs(session)
    evaluated = 0
    for tenant_id, env, window_days in programs:
        while True:
            with session_factory.begin() as session:
                batch = sweep_tier_batch(
                    session, tenant_id, env, window_days, started, shard, limit
                )
            evaluated += batch
            if batch == 0:
                break
    return evaluated
