"""The `soak` scenario: events written at a steady rate for a long time, retention windows
short, and whether the purged tables stay flat.

The workers run as in production (their beat sends the periodic sweep, which purges, and
the webhook dispatcher) with OUTBOX_RETENTION_DAYS, DELIVERY_RETENTION_DAYS and
AUDIT_RETENTION_DAYS set to the soak's window; operations are written as finished nearly a
day ago instead (see bench/soak_writer.py). A load process writes (bench/soak_writer.py);
the harness samples the tables' sizes and row counts every `sample_s`.

PostgreSQL reuses a deleted row's space only once VACUUM has passed over it. Production
servers run autovacuum (on by default); this machine's PostgreSQL has it off, and a table
cannot turn it on for itself while the server's is off. So the harness runs
`VACUUM (ANALYZE)` of the four tables every `vacuum_s` as autovacuum would (0: never, to
see what retention alone does to the files).
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import Engine

from app.config import Settings, load_settings
from bench.flatness import Sample, growth_violations, table_growth
from bench.scenarios import ScenarioResult
from bench.services import Database, Services, free_port
from bench.soak_writer import WritePlan, write
from bench.webhooks import receiving_tenant, wait_for_port

TABLES = ("outbox_events", "webhook_deliveries", "operations", "audit_entries")
# A table is flat when its end size is at most this many times its size at the end of the
# warm-up: room for the sawtooth between two VACUUMs and for a sample that lands just
# before one, not for a trend (a table that keeps growing crosses it within the hour).
FLAT_BOUND = 1.5
# The writer must keep up: below this share of the target rate the run says so.
RATE_FLOOR = 0.9

# One statement for the four counts (table names are the constants above, no input).
_COUNTS = text("SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in TABLES))  # noqa: S608
_SIZES = text(
    "SELECT relname, pg_total_relation_size(oid) FROM pg_class "
    "WHERE relkind = 'r' AND relname = ANY(:tables)"
).bindparams(tables=list(TABLES))


@dataclass(frozen=True)
class SoakOptions:
    events: int = 10_000_000
    seconds: float = 3600.0
    retention_s: float = 120.0
    sample_s: float = 60.0
    vacuum_s: float = 60.0  # 0: never
    delivered_share: float = 0.1
    operations_share: float = 0.1
    audit_share: float = 0.01

    def warmup_s(self, sweep_interval_s: float) -> float:
        """The first retention window, then the sweep that first purges past it, then the
        VACUUM that makes that space reusable: from then on a table should be flat."""
        return self.retention_s + sweep_interval_s + self.vacuum_s


def soak_tables(
    engine: Engine, services: Services, database: Database, options: SoakOptions
) -> ScenarioResult:
    days = str(options.retention_s / 86400)
    soak_env = {
        "OUTBOX_RETENTION_DAYS": days,
        "DELIVERY_RETENTION_DAYS": days,
        "AUDIT_RETENTION_DAYS": days,
        "WEBHOOK_ALLOW_PRIVATE": "true",
    }
    settings = load_settings(**{key.lower(): value for key, value in soak_env.items()})
    saved = dict(services.env)
    receiver_port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, "-m", "bench.webhooks", "--serve", str(receiver_port)]
    )
    try:
        wait_for_port(receiver_port)
        tenant_id = receiving_tenant(engine, f"http://127.0.0.1:{receiver_port}/hooks", 1)
        services.env.update(soak_env)
        services.restart()
        return _run(engine, database, tenant_id, options, settings)
    finally:
        receiver.terminate()
        receiver.wait(10)
        services.env.clear()
        services.env.update(saved)
        services.restart()


def _run(
    engine: Engine,
    database: Database,
    tenant_id: Any,
    options: SoakOptions,
    settings: Settings,
) -> ScenarioResult:
    plan = WritePlan(
        database_url=database.url,
        tenant_id=tenant_id,
        events=options.events,
        seconds=options.seconds,
        delivered_share=options.delivered_share,
        operations_share=options.operations_share,
        audit_share=options.audit_share,
        operation_age_s=settings.idempotency_retention_hours * 3600 - options.retention_s,
    )
    context = multiprocessing.get_context("spawn")
    results: Any = context.Queue()
    writer = context.Process(target=write, args=(plan, results), name="soak-writer")
    stop = threading.Event()
    vacuums: list[float] = []
    vacuumer = threading.Thread(
        target=_vacuum_every, args=(database, options.vacuum_s, stop, vacuums), daemon=True
    )
    samples = [_sample(engine, 0.0)]
    writer.start()
    started = time.monotonic()
    if options.vacuum_s > 0:
        vacuumer.start()
    while writer.is_alive():
        writer.join(max(0.0, started + len(samples) * options.sample_s - time.monotonic()))
        samples.append(_sample(engine, time.monotonic() - started))
    stop.set()
    if vacuumer.is_alive():
        vacuumer.join()
    written = results.get(timeout=10)
    return _result(engine, options, settings.sweep_interval_seconds, samples, written, vacuums)


def _result(
    engine: Engine,
    options: SoakOptions,
    sweep_interval_s: float,
    samples: list[Sample],
    written: dict[str, Any],
    vacuums: list[float],
) -> ScenarioResult:
    rate = written["events"] / written["seconds"]
    target = options.events / options.seconds
    result = ScenarioResult(
        f"soak ({options.events} events over {options.seconds:.0f} s, retention "
        f"{options.retention_s:.0f} s, VACUUM "
        + (f"every {options.vacuum_s:.0f} s)" if options.vacuum_s > 0 else "never)")
    )
    warmup = options.warmup_s(sweep_interval_s)
    growth = [table_growth(samples, table, warmup) for table in TABLES]
    with engine.connect() as connection:
        undispatched, pending = connection.execute(
            text(
                "SELECT (SELECT count(*) FROM outbox_events WHERE dispatched_at IS NULL), "
                "(SELECT count(*) FROM webhook_deliveries WHERE status = 'pending')"
            )
        ).one()
    result.figures.update(
        events_written=written["events"],
        events_per_s=round(rate, 1),
        target_events_per_s=round(target, 1),
        delivered_events_written=written["delivered_events"],
        operations_written=written["operations"],
        audit_entries_written=written["audit_entries"],
        seconds=round(written["seconds"], 1),
        write_tx_p50_ms=round(written["transaction_p50_ms"], 1),
        write_tx_max_ms=round(written["transaction_max_ms"], 1),
        warmup_s=round(warmup, 1),
        samples=len(samples),
        vacuum_runs=len(vacuums),
        vacuum_max_s=round(max(vacuums, default=0.0), 2),
        undispatched_events_end=undispatched,
        pending_deliveries_end=pending,
    )
    result.table = [each.as_row() for each in growth]
    result.samples = [{"at_s": round(s.at_s, 1), "bytes": s.bytes, "rows": s.rows} for s in samples]
    if samples[-1].at_s < warmup:
        result.violations.append(f"the run ended before its warm-up ({warmup:.0f} s)")
    result.violations += growth_violations(growth, FLAT_BOUND)
    if rate < RATE_FLOOR * target:
        result.violations.append(
            f"wrote {rate:.0f} events/s, below {RATE_FLOOR} x the target {target:.0f}/s"
        )
    return result


def _sample(engine: Engine, at_s: float) -> Sample:
    with engine.connect() as connection:
        sizes: dict[str, int] = dict(connection.execute(_SIZES).tuples().all())
        # count(*): a few hundred thousand rows per table at the soak's steady state.
        counts = connection.execute(_COUNTS).one()
    return Sample(at_s, {t: int(sizes[t]) for t in TABLES}, dict(zip(TABLES, counts, strict=True)))


def _vacuum_every(
    database: Database, every_s: float, stop: threading.Event, durations: list[float]
) -> None:
    with psycopg.connect(database.libpq_url, autocommit=True) as connection:
        while not stop.wait(every_s):
            began = time.monotonic()
            connection.execute(f"VACUUM (ANALYZE) {', '.join(TABLES)}")
            durations.append(time.monotonic() - began)
