"""`python -m bench`: baselines and scenarios in one run, printed as a table and JSON.

Starts its own API (gunicorn) and Celery workers against a fresh database on the local
PostgreSQL and the local Redis, and generates load from separate processes over HTTP.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import baselines, scenarios
from bench.actions import action_flow
from bench.coupons import coupon_flow
from bench.expiry import expiry_sweep
from bench.services import Database, Services
from bench.soak import SoakOptions, soak_tables
from bench.spread import KINDS, SpreadOptions, spread_writes


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def _numbers(value: str) -> list[int]:
    return [int(part) for part in value.split(",") if part.strip()]


def _spread_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> SpreadOptions:
    clients = _numbers(args.spread_clients)
    requests = _numbers(args.spread_requests)
    if len(requests) == 1:
        requests *= len(clients)
    kinds = tuple(kind.strip() for kind in args.spread_kinds.split(",") if kind.strip())
    if not clients or len(requests) != len(clients) or min(clients + requests) < 1:
        parser.error("--spread-requests: one count, or one per --spread-clients entry")
    if not kinds or not set(kinds) <= set(KINDS):
        parser.error(f"--spread-kinds: a comma list of {', '.join(KINDS)}")
    return SpreadOptions(
        kinds=kinds,
        requests=dict(zip(clients, requests, strict=True)),
        participants=args.spread_participants,
        rewards=args.spread_rewards,
        count_requests=args.spread_count_requests,
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument(
        "--scenarios",
        default="hot,async,batch,bulk,webhooks,actions",
        help="comma list of: hot, async, batch, batch-expiry, bulk, webhooks, actions, spread, "
        "expiry, coupons, soak",
    )
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--api-connections", type=int, default=1000)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64, help="load clients")
    parser.add_argument("--participants", type=int, default=20_000)
    parser.add_argument("--codes", type=int, default=5_000)
    parser.add_argument("--awards", type=int, default=1_000_000, help="batch and bulk scenarios")
    parser.add_argument("--actions", type=int, default=1_000_000, help="actions scenario")
    parser.add_argument(
        "--leaderboard-reads-per-s", type=float, default=500, help="actions scenario"
    )
    parser.add_argument("--events", type=int, default=10_000, help="webhook scenario")
    parser.add_argument(
        "--coupon-codes", type=int, default=1_000_000, help="coupons scenario: codes generated"
    )
    parser.add_argument("--lots", type=int, default=1_000_000, help="expiry scenario")
    parser.add_argument("--lot-participants", type=int, default=100_000, help="expiry scenario")
    parser.add_argument("--spread-kinds", default=",".join(KINDS), help="spread scenario")
    parser.add_argument("--spread-clients", default="1,8,64", help="spread: client counts")
    parser.add_argument(
        "--spread-requests",
        default="500,1000,2000",
        help="spread: requests per timed run, one per --spread-clients entry (or one for all)",
    )
    parser.add_argument("--spread-participants", type=int, default=10_000)
    parser.add_argument("--spread-rewards", type=int, default=100)
    parser.add_argument(
        "--spread-count-requests",
        type=int,
        default=200,
        help="spread: requests per (kind, clients) of the statement-counting pass (0: none)",
    )
    soak = SoakOptions()
    parser.add_argument("--soak-events", type=int, default=soak.events, help="soak: events")
    parser.add_argument("--soak-seconds", type=float, default=soak.seconds, help="soak: duration")
    parser.add_argument(
        "--soak-retention-seconds",
        type=float,
        default=soak.retention_s,
        help="soak: outbox, delivery and audit retention, and the operations' age window",
    )
    parser.add_argument(
        "--soak-sample-seconds", type=float, default=soak.sample_s, help="soak: sample period"
    )
    parser.add_argument(
        "--soak-vacuum-seconds",
        type=float,
        default=soak.vacuum_s,
        help="soak: VACUUM (ANALYZE) the purged tables this often, as autovacuum would (0: never)",
    )
    parser.add_argument(
        "--soak-delivered-share",
        type=float,
        default=soak.delivered_share,
        help="soak: share of the events delivered to a local receiver (the rest: unsubscribed)",
    )
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()

    wanted = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    spread_options = _spread_options(args, parser) if "spread" in wanted else None
    logs = Path(tempfile.mkdtemp(prefix="rewards-bench-"))
    database = Database.create()
    report: dict[str, object] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "settings": vars(args) | {"out": str(args.out)},
        "baselines": {},
        "scenarios": [],
    }
    try:
        database.migrate()
        env = Services.environment(database)
        # The harness itself publishes baseline tasks: same settings as its children.
        os.environ.update(
            {key: env[key] for key in ("DATABASE_URL", "REDIS_URL", "REDIS_KEY_PREFIX")}
        )
        if not args.skip_baselines:
            report["baselines"] = {
                "pgbench_tps": round(baselines.pgbench_tps(database), 1),
            }
            noop = Services(env, logs)
            try:
                report["baselines"]["celery_noop_tasks_per_s"] = round(  # type: ignore[index]
                    baselines.celery_noop_rate(noop, args.worker_concurrency), 1
                )
            finally:
                noop.stop()
        services = Services(env, logs)
        try:
            api_url = services.start_api(args.api_workers, args.api_connections)
            services.start_workers(args.worker_concurrency)
            if not args.skip_baselines:
                report["baselines"]["flask_trivial_req_per_s"] = round(  # type: ignore[index]
                    baselines.flask_trivial_rate(api_url, args.concurrency), 1
                )
            engine = scenarios.make_engine(database.url)
            results = []
            drops = {"hot": scenarios.hot_reward_drop, "async": scenarios.async_claims}
            for name in wanted:
                api_url = services.api_url  # the spread scenario restarts the services
                if name in drops:
                    results.append(
                        drops[name](
                            engine,
                            api_url,
                            participants=args.participants,
                            codes=args.codes,
                            concurrency=args.concurrency,
                        )
                    )
                elif name in ("batch", "batch-expiry"):
                    results.append(
                        scenarios.batch_awarding(
                            engine,
                            api_url,
                            awards=args.awards,
                            per_request=100,
                            concurrency=args.concurrency,
                            terms={"expires_in_days": 30} if name == "batch-expiry" else {},
                        )
                    )
                elif name == "actions":
                    results.append(
                        action_flow(
                            engine,
                            api_url,
                            actions=args.actions,
                            per_request=100,
                            concurrency=args.concurrency,
                            reads_per_s=args.leaderboard_reads_per_s,
                        )
                    )
                elif name == "expiry":
                    results.append(
                        expiry_sweep(
                            engine, services, lots=args.lots, participants=args.lot_participants
                        )
                    )
                elif name == "coupons":
                    results.append(
                        coupon_flow(
                            engine,
                            api_url,
                            generate=args.coupon_codes,
                            participants=args.participants,
                            codes=args.codes,
                            concurrency=args.concurrency,
                        )
                    )
                elif name == "bulk":
                    results.append(scenarios.bulk_awarding(engine, api_url, awards=args.awards))
                elif name == "webhooks":
                    results.append(scenarios.webhook_fanout(args.events))
                elif name == "soak":
                    options = SoakOptions(
                        events=args.soak_events,
                        seconds=args.soak_seconds,
                        retention_s=args.soak_retention_seconds,
                        sample_s=args.soak_sample_seconds,
                        vacuum_s=args.soak_vacuum_seconds,
                        delivered_share=args.soak_delivered_share,
                    )
                    results.append(soak_tables(engine, services, database, options))
                elif name == "spread" and spread_options is not None:
                    results.append(spread_writes(engine, services, database, spread_options))
                else:
                    parser.error(f"unknown scenario {name!r}")
            engine.dispose()
            report["scenarios"] = scenarios.as_json(results)
        finally:
            services.stop()
    finally:
        database.drop()

    _print_table(report)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench-{report['date']}.json".replace(":", "")
    path.write_text(json.dumps(report, indent=2))
    print(f"\nJSON: {path}\nlogs: {logs}")
    return 1 if any(s["violations"] for s in report["scenarios"]) else 0  # type: ignore[index, union-attr, attr-defined]


def _print_table(report: dict[str, object]) -> None:
    baselines_ = report["baselines"]
    print(f"rewards-engine bench {report['date']} commit {report['commit']}")
    for name, value in baselines_.items():  # type: ignore[attr-defined]
        print(f"  baseline {name:<28} {value:>10}")
    pg = baselines_.get("pgbench_tps")  # type: ignore[attr-defined]
    for scenario in report["scenarios"]:  # type: ignore[attr-defined]
        print(f"\n  {scenario['name']}")
        for key, value in scenario["figures"].items():
            print(f"    {key:<26} {value:>10}")
        if scenario.get("table"):
            _print_rows(scenario["table"])
        if pg and "requests_per_s" in scenario["figures"]:
            print(f"    {'x pgbench tps':<26} {scenario['figures']['requests_per_s'] / pg:>10.2f}")
        print(f"    violations: {scenario['violations'] or 'none'}")


# (heading, key, width) of a scenario's table of rows; CPU in ms per write.
_COLUMNS = (
    ("kind", "kind", 6),
    ("clients", "clients", 7),
    ("requests", "requests", 8),
    ("req/s", "requests_per_s", 7),
    ("p50 ms", "p50_ms", 7),
    ("p99 ms", "p99_ms", 7),
    ("web", "cpu_ms_web", 6),
    ("worker", "cpu_ms_worker", 6),
    ("pg", "cpu_ms_postgres", 6),
    ("redis", "cpu_ms_redis", 6),
    ("load", "cpu_ms_load", 6),
    ("total", "cpu_ms_total", 6),
    ("machine", "cpu_ms_machine", 7),
    ("tasks/w", "celery_tasks_per_write", 7),
    ("stmts/w", "statements_per_write", 7),
    ("txns/w", "transactions_per_write", 6),
)


# The soak's rows: one per purged table, sizes in MB (pg_total_relation_size).
_SOAK_COLUMNS = (
    ("table", "table", 18),
    ("warm-up MB", "warmup_mb", 10),
    ("max MB", "max_mb", 8),
    ("end MB", "end_mb", 8),
    ("end/warm-up", "end_over_warmup", 11),
    ("warm-up rows", "warmup_rows", 12),
    ("end rows", "end_rows", 10),
    ("MB/h after", "growth_mb_per_h", 10),
)


def _print_rows(rows: list[dict[str, object]]) -> None:
    columns = _SOAK_COLUMNS if "table" in rows[0] else _COLUMNS
    print("    " + " ".join(f"{heading:>{width}}" for heading, _, width in columns))
    for row in rows:
        print("    " + " ".join(f"{row.get(key, '')!s:>{width}}" for _, key, width in columns))
    if columns is _SOAK_COLUMNS:
        print("    MB/h after: least-squares growth over the samples from the warm-up on")
        return
    print(
        "    web .. machine: CPU ms per write; tasks/w: Celery tasks per write;"
        " stmts/w, txns/w: SQL statements and BEGINs per write (counting pass)"
    )


if __name__ == "__main__":
    sys.exit(main())
