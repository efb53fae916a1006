"""The `expiry` scenario: a million lots expire at once; how long the sweep takes.

The lots (with their participants' balances and award lines, so that `rewards ledger
verify` holds) are written set-wise, all already past `expires_at`; then one
`sweep_lots` run, the code the workers' periodic task runs, expires them all.
"""

from __future__ import annotations

import time

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from app.points.sweeps import sweep_lots
from bench.scenarios import ScenarioResult, make_tenant

_SETUP = (
    """
    INSERT INTO participants (id, tenant_id, env, external_id, balance, total_earned,
                              total_spent, created_at)
    SELECT gen_random_uuid(), :tenant, 'live', 'x' || n, 10 * :per, 10 * :per, 0, now()
    FROM generate_series(0, :participants - 1) AS n
    """,
    """
    INSERT INTO ledger_entries (id, tenant_id, env, participant_pk, type, amount, base_amount,
                                balance_after, created_at)
    SELECT gen_random_uuid(), p.tenant_id, p.env, p.id, 'award', 10, 10, 10 * k, now()
    FROM participants p, generate_series(1, :per) AS k
    WHERE p.tenant_id = :tenant
    ORDER BY p.id, k
    """,
    """
    INSERT INTO point_lots (id, participant_pk, amount, remaining, pending, expires_at,
                            created_at)
    SELECT e.id, e.participant_pk, 10, 10, false, now() - interval '1 minute', now()
    FROM ledger_entries e
    WHERE e.tenant_id = :tenant
    """,
)


def expiry_sweep(engine: Engine, *, lots: int, participants: int) -> ScenarioResult:
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
    report = sweep_lots(sessionmaker(bind=engine, expire_on_commit=False))
    elapsed = time.perf_counter() - started
    result.figures.update(
        lots_expired=report.expired,
        sweep_seconds=round(elapsed, 1),
        lots_per_s=round(report.expired / elapsed, 1),
    )
    with engine.connect() as connection:
        left, balances, expired = connection.execute(
            text(
                """
                SELECT (SELECT count(*) FROM point_lots l JOIN participants p
                          ON p.id = l.participant_pk
                        WHERE p.tenant_id = :t AND l.remaining > 0),
                       sum(balance), sum(total_expired)
                FROM participants WHERE tenant_id = :t
                """
            ),
            {"t": tenant.tenant_id},
        ).one()
    if (
        report.expired != per * participants
        or left
        or balances
        or expired != 10 * per * participants
    ):
        result.violations.append(
            f"expired {report.expired}, lots left {left}, balances {balances}, "
            f"total_expired {expired}"
        )
    return result
