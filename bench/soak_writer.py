"""The soak's load process: events, finished operations and audit entries at a steady
rate, written with the engine's own writers, a tick's worth per transaction.

Not over HTTP: the whole write path tops out near 2,300 writes/s on this 2-core machine,
below the soak's 2,800 events/s, and what the soak measures is what retention does to the
tables, not the web. The writers are the ones the workers use:

- events: `app.outbox.record_events` (one INSERT per type per tick). `points.awarded`,
  which no endpoint subscribes to, is stored already dispatched (the writer's own path for
  unsubscribed types); a share of `reward.reward_claimed`, which one enabled endpoint on a
  local receiver subscribes to, is left for the real dispatcher (the workers' beat wakes it
  every WEBHOOK_DISPATCH_INTERVAL_SECONDS) to fan out, deliver and mark dispatched.
- operations: `app.operations.submit_operations`, then finished in the same transaction
  as a worker finishes them (status, answer, finished_at). Their finished_at is set
  IDEMPOTENCY_RETENTION_HOURS less the soak's window in the past: the 24-hour floor is the
  idempotency contract (a key replays for at least a day), so instead of lowering it the
  soak writes operations as if they had finished nearly a day ago, and the sweep purges
  them one window after they were written, as it would a day after in production.
- audit entries: `app.audit.record_audit`.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass
from multiprocessing.queues import Queue
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker

import app.kinds  # noqa: F401 (registers the operation kinds submit_operations checks)
from app.audit import record_audit
from app.operations import Write, submit_operations
from app.outbox import POINTS_AWARDED, REWARD_CLAIMED, record_events
from app.points.items import AWARD_KIND

_FINISH = text(
    """
    UPDATE operations
    SET status = 'succeeded', http_status = 200, attempts = 1,
        result = CAST(:result AS jsonb), finished_at = now() - make_interval(secs => :age)
    WHERE id = ANY(:ids)
    """
)


@dataclass(frozen=True)
class WritePlan:
    database_url: str
    tenant_id: uuid.UUID
    events: int
    seconds: float
    delivered_share: float  # of the events, of the type the receiver's endpoint subscribes to
    operations_share: float  # finished operations per event
    audit_share: float  # audit entries per event
    operation_age_s: float  # how far in the past their finished_at is set
    tick_s: float = 1.0
    max_batch: int = 10_000  # events per transaction when catching up


@dataclass
class Written:
    events: int = 0
    delivered_events: int = 0
    operations: int = 0
    audit_entries: int = 0


def _payload(number: int) -> dict[str, Any]:
    # The shape of a points.awarded event's data.
    return {
        "participant_id": f"soak-{number % 100_000}",
        "transaction_id": str(uuid.uuid4()),
        "amount": 10,
        "base_amount": 10,
        "new_balance": 10 * (number // 100_000 + 1),
        "reason": "soak",
        "metadata": None,
    }


def write(plan: WritePlan, results: Queue[dict[str, Any]]) -> None:
    """Write for `plan.seconds` or until `plan.events` are written; put the totals and the
    transactions' durations on `results`."""
    engine = create_engine(plan.database_url, pool_size=1)
    sessions = sessionmaker(bind=engine)
    written = Written()
    durations: list[float] = []
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < plan.seconds and written.events < plan.events:
        due = min(plan.events, int(plan.events * min(1.0, (elapsed + plan.tick_s) / plan.seconds)))
        count = min(due - written.events, plan.max_batch)
        if count > 0:
            began = time.monotonic()
            _write_tick(sessions, plan, written, count)
            durations.append(time.monotonic() - began)
        next_tick = started + (int(elapsed / plan.tick_s) + 1) * plan.tick_s
        time.sleep(max(0.0, next_tick - time.monotonic()))
    seconds = time.monotonic() - started
    engine.dispose()
    durations.sort()
    results.put(
        {
            **vars(written),
            "seconds": seconds,
            "transactions": len(durations),
            "transaction_p50_ms": 1000 * statistics.median(durations) if durations else 0.0,
            "transaction_max_ms": 1000 * durations[-1] if durations else 0.0,
        }
    )


def _write_tick(sessions: sessionmaker[Any], plan: WritePlan, written: Written, count: int) -> None:
    total = written.events + count
    # Shares kept exact over the run: each tick writes what brings the totals to their share.
    delivered = int(total * plan.delivered_share) - written.delivered_events
    operations = int(total * plan.operations_share) - written.operations
    audit = int(total * plan.audit_share) - written.audit_entries
    payloads = [_payload(written.events + n) for n in range(count)]
    with sessions.begin() as session:
        record_events(session, plan.tenant_id, "live", POINTS_AWARDED, payloads[delivered:])
        record_events(session, plan.tenant_id, "live", REWARD_CLAIMED, payloads[:delivered])
        if operations:
            writes = [
                Write(
                    plan.tenant_id,
                    "live",
                    AWARD_KIND,
                    {"participant_id": payload["participant_id"], "amount": 10},
                    f"soak-{uuid.uuid4()}",
                    request_id=None,
                )
                for payload in payloads[:operations]
            ]
            submit_operations(session.connection(), writes)
            session.execute(
                _FINISH,
                {
                    "ids": [w.operation_id for w in writes],
                    "result": '{"status": "succeeded"}',
                    "age": plan.operation_age_s,
                },
            )
        for payload in payloads[:audit]:
            record_audit(
                session,
                tenant_id=plan.tenant_id,
                env="live",
                actor_key_id=None,
                action="soak.touch",
                target_id=payload["transaction_id"],
                details={"participant_id": payload["participant_id"]},
            )
    written.events = total
    written.delivered_events += delivered
    written.operations += operations
    written.audit_entries += audit
