"""Breaking streaks past their deadline, from the periodic sweep (the workers' lot sweep
task runs it per shard of participants, app.points.sweeps.Shard).

A batch on the write path's pattern: pick due runs by the indexed deadline (a plain
read), lock their participants in the one lock order, read the runs again under those
locks (an action may have extended one meanwhile), break those still past due, and
record `streak.broken` for each, in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.infra.pgcopy import fetch_tuples, plain_array_literal
from app.ledger import lock_changing_rows
from app.outbox import STREAK_BROKEN, record_events
from app.points.sweeps import WHOLE, Shard, shard_filter

SWEEP_BATCH_STREAKS = 5_000

_DUE = f"""
    SELECT s.tenant_id, s.env, p.external_id
    FROM participant_streaks AS ps
    JOIN streaks AS s ON s.id = ps.streak_id
    JOIN participants AS p ON p.id = ps.participant_pk
    WHERE ps.current_count > 0 AND ps.deadline < %(now)s AND {shard_filter("ps.participant_pk")}
    ORDER BY ps.deadline
    LIMIT %(limit)s
"""  # noqa: S608 (a constant fragment)
# The runs still past due under the participants' locks (an action may have extended one
# since it was found due), broken; each answered with its length before.
_BREAK = """
    UPDATE participant_streaks AS ps
    SET current_count = 0, run = ps.run + 1, milestones_paid = '[]'
    FROM (
        SELECT due.streak_id, due.participant_pk, due.current_count, s.streak_type
        FROM participant_streaks AS due
        JOIN streaks AS s ON s.id = due.streak_id
        WHERE due.participant_pk = ANY(CAST(%(pks)s AS uuid[]))
          AND due.current_count > 0 AND due.deadline < %(now)s
        FOR UPDATE OF due
    ) AS before
    WHERE ps.streak_id = before.streak_id AND ps.participant_pk = before.participant_pk
    RETURNING CAST(ps.participant_pk AS text), before.streak_type, ps.run - 1,
              before.current_count
"""


def sweep_streak_batch(
    session: Session, now: datetime, shard: Shard = WHOLE, limit: int = SWEEP_BATCH_STREAKS
) -> int:
    """Break up to `limit` runs past their deadline (of `shard`); how many broke."""
    due = fetch_tuples(
        session, _DUE, {"now": now, "limit": limit, "shard": shard.position, "shards": shard.total}
    )
    by_program: dict[tuple[uuid.UUID, str], set[str]] = {}
    for tenant_id, env, external_id in due:
        by_program.setdefault((tenant_id, env), set()).add(external_id)
    broken = 0
    for (tenant_id, env), external_ids in sorted(by_program.items(), key=lambda item: str(item[0])):
        locked = lock_changing_rows(session, tenant_id, env, create=(), existing=external_ids)
        by_pk = {row.pk: external_id for external_id, row in locked.items()}
        rows = fetch_tuples(
            session, _BREAK, {"pks": plain_array_literal(sorted(by_pk)), "now": now}
        )
        events: list[dict[str, Any]] = [
            {"participant_id": by_pk[pk], "streak_type": streak_type, "count": count, "run": run}
            for pk, streak_type, run, count in rows
        ]
        record_events(session, tenant_id, env, STREAK_BROKEN, events)
        broken += len(rows)
    return broken


def sweep_streaks(
    session_factory: sessionmaker[Session],
    *,
    now: Callable[[], datetime] = utcnow,
    shard: Shard = WHOLE,
    limit: int = SWEEP_BATCH_STREAKS,
) -> int:
    """Break every run past its deadline (of the participants in `shard`), a batch per
    transaction; how many broke."""
    started = now()
    broken = 0
    while True:
        with session_factory.begin() as session:
            batch = sweep_streak_batch(session, started, shard, limit)
        broken += batch
        if batch == 0:
            return broken
