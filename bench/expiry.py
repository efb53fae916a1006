"""The `expiry` scenario: a million lots expire at once; how long the workers take to
sweep them.

The lots (with their participants' balances and award lines, so that `rewards ledger
verify` holds) are written set-wise, all already past `expires_at`. Then the harness
starts the lot sweeps as the workers' periodic task does (one task per shard; the
workers' own beat keeps running beside it) and times until no lot is left due.
"""

from __future__ import annotations

import time

from sqlalchemy import text
from sqlalchemy.engine import Engine

from bench.scenarios import ScenarioResult, make_tenant
from bench.services import Services
from workers.celery_app import QUEUE_MAINTENANCE, TASK_SWEEP_LOTS

_DUE_LEFT = text(
    """
    SELECT count(*) FROM point_lots
    WHERE NOT pending AND expires_at IS NOT NULL AND expires_at <= now()
    """
)

_SETUP = (
    """
    INSERT INTO participants (id, tenant_id, env, external_id, balance, total_earned,
                              total_spent, created_at)
    SELECT gen_random_uuid(), :tenant, 'live', 'x' || n, 10 * :per, 10 * :per, 0, now()
    FROM generate_series(0, :participants - 1) AS n
    """,
    """
    INSERT INTO ledger_entries (id, tenant_id, env, participant_pk, type, amount, base_amount,
                                balance_after, expires_at, created_at)
    SELECT gen_random_uuid(), p.tenant_id, p.env, p.id, 'award', 10, 10, 10 * k,
           now() - interval '1 minute', now()
    FROM participants p, generate_series(1, :per) AS k
    WHERE p.tenant_id = :tenant
    ORDER BY p.id, k
    """,
    """
    INSERT INTO point_lots (participant_pk, amount, remaining, pending, expires_at, created_at)
    SELECT e.participant_pk, 10, 10, false, e.expires_at, now()
    FROM ledger_entries e
    WHERE e.tenant_id = :tenant
    ORDER BY e.seq
    """,
)


def expiry_sweep(
    engine: Engine, services: Services, *, lots: int, participants: int
) -> ScenarioResult:
    tenant = make_tenant(engine)
    per = max(1, lots // participants)
    result = ScenarioResult(f"expiry sweep ({per * participants} lots due at once)")
    started = time.perf_counter()
    with engine.begin() as connection:
        for statement in _SETUP:
            connection.execute(
                text(statement),
                {"tenant": tenant.tenant_id, "per": per, "participants": participants},
            )
        connection.execute(text("ANALYZE point_lots"))
    result.figures["setup_seconds"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    services.celery().send_task(TASK_SWEEP_LOTS, queue=QUEUE_MAINTENANCE)
    while True:
        time.sleep(0.5)
        with engine.connect() as connection:
            if connection.execute(_DUE_LEFT).scalar_one() == 0:
                break
    elapsed = time.perf_counter() - started
    expected = per * participants
    result.figures.update(
        sweep_seconds=round(elapsed, 1),
        lots_per_s=round(expected / elapsed, 1),
    )
    with engine.connect() as connection:
        left, balances, expired = connection.execute(
            text(
                """
                SELECT (SELECT count(*) FROM point_lots l JOIN participants p
                          ON p.id = l.participant_pk
                        WHERE p.tenant_id = :t),
                       sum(balance), sum(total_expired)
                FROM participants WHERE tenant_id = :t
                """
            ),
            {"t": tenant.tenant_id},
        ).one()
    lines = _expire_lines(engine, tenant.tenant_id)
    if lines != expected or left or balances or expired != 10 * expected:
        result.violations.append(
            f"expire lines {lines}, lots left {left}, balances {balances}, total_expired {expired}"
        )
    return result


def _expire_lines(engine: Engine, tenant_id: object) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT count(*) FROM ledger_entries WHERE tenant_id = :t AND type = 'expire'"
                ),
                {"t": tenant_id},
            ).scalar_one()
        )
