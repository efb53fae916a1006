"""Benchmark scenarios: each sets up its own data, runs load over HTTP, checks correctness."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from app.models import Environment
from app.rewards.catalog import create_reward
from app.rewards.inventory import upload_codes
from app.tenancy import create_api_key, create_tenant
from bench.load import LoadResult, Request, run_load

GAMIFY = "/api/v1/gamify"


@dataclass
class ScenarioResult:
    name: str
    figures: dict[str, float | int | str] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    # A scenario measured at several settings: one row of figures per setting.
    table: list[dict[str, float | int | str]] = field(default_factory=list)
    # A scenario followed over time: what it read at each moment (kept in the JSON only).
    samples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Tenant:
    tenant_id: uuid.UUID
    admin_key: str
    participant_key: str


def make_tenant(engine: Engine) -> Tenant:
    with sessionmaker(bind=engine).begin() as session:
        tenant = create_tenant(session, "bench")
        admin = create_api_key(session, tenant.id, Environment.LIVE, ["admin"]).key
        participant = create_api_key(session, tenant.id, Environment.LIVE, []).key
        return Tenant(tenant.id, admin, participant)


def fund_participants(engine: Engine, tenant: Tenant, count: int, points: int) -> None:
    """`count` participants p0..p{count-1} with `points` each, ledger included (set-wise)."""
    with engine.begin() as connection:
        connection.execute(
            text(
                """
                INSERT INTO participants (id, tenant_id, env, external_id, balance, total_earned,
                                          total_spent, created_at)
                SELECT gen_random_uuid(), :tenant, 'live', 'p' || n, :points, :points, 0, now()
                FROM generate_series(0, :count - 1) AS n
                """
            ),
            {"tenant": tenant.tenant_id, "points": points, "count": count},
        )
        connection.execute(
            text(
                """
                INSERT INTO ledger_entries (id, tenant_id, env, participant_pk, type, amount,
                                            base_amount, balance_after, created_at)
                SELECT gen_random_uuid(), tenant_id, env, id, 'award', balance, balance,
                       balance, now()
                FROM participants WHERE tenant_id = :tenant
                """
            ),
            {"tenant": tenant.tenant_id},
        )


def stocked_reward(
    engine: Engine,
    tenant: Tenant,
    codes: int,
    points_cost: int,
    *,
    name: str = "Black Friday drop",
    code_prefix: str = "BF-",
    max_claims_per_user: int = 1,
) -> uuid.UUID:
    """A coupon with `codes` pre-loaded codes."""
    with sessionmaker(bind=engine).begin() as session:
        reward = create_reward(
            session,
            tenant.tenant_id,
            "live",
            {
                "name": name,
                "type": "coupon",
                "points_cost": points_cost,
                "max_claims_per_user": max_claims_per_user,
            },
        )
        upload_codes(
            session,
            tenant.tenant_id,
            "live",
            reward.id,
            [f"{code_prefix}{n:07d}" for n in range(codes)],
        )
        return reward.id


def claim_requests(
    tenant: Tenant, reward_id: uuid.UUID, participants: int, prefer_async: bool
) -> list[Request]:
    headers = {"X-API-Key": tenant.participant_key, "Content-Type": "application/json"}
    if prefer_async:
        headers["Prefer"] = "respond-async"
    return [
        Request(
            "POST",
            f"{GAMIFY}/rewards/{reward_id}/claim",
            {**headers, "Idempotency-Key": f"drop-{reward_id}-{n}"},
            json.dumps({"participant_id": f"p{n}", "points_deduction": True}).encode(),
        )
        for n in range(participants)
    ]


def check_drop(engine: Engine, tenant: Tenant, reward_id: uuid.UUID, codes: int) -> list[str]:
    violations = []
    with engine.connect() as connection:
        claims, distinct_codes = connection.execute(
            text("SELECT count(*), count(DISTINCT code_value) FROM claims WHERE reward_id = :r"),
            {"r": reward_id},
        ).one()
    if claims != codes:
        violations.append(f"{claims} claims succeeded, expected {codes}")
    if distinct_codes != claims:
        violations.append(f"{claims} claims share {distinct_codes} codes")
    return violations + check_balances(engine, tenant)


def check_balances(engine: Engine, tenant: Tenant) -> list[str]:
    """No balance below zero, and every balance equal to the sum of its ledger."""
    violations = []
    with engine.connect() as connection:
        negative = connection.execute(
            text("SELECT count(*) FROM participants WHERE tenant_id = :t AND balance < 0"),
            {"t": tenant.tenant_id},
        ).scalar_one()
        ledger_mismatch = connection.execute(
            text(
                """
                SELECT count(*) FROM (
                    SELECT p.id FROM participants p
                    LEFT JOIN ledger_entries l ON l.participant_pk = p.id
                    WHERE p.tenant_id = :t
                    GROUP BY p.id HAVING p.balance <> COALESCE(sum(l.amount), 0)) AS broken
                """
            ),
            {"t": tenant.tenant_id},
        ).scalar_one()
    if negative:
        violations.append(f"{negative} balances below zero")
    if ledger_mismatch:
        violations.append(f"{ledger_mismatch} balances differ from their ledger")
    return violations


def hot_reward_drop(
    engine: Engine, api_url: str, *, participants: int, codes: int, concurrency: int
) -> ScenarioResult:
    tenant = make_tenant(engine)
    fund_participants(engine, tenant, participants, points=100)
    reward_id = stocked_reward(engine, tenant, codes, points_cost=10)
    load = run_load(api_url, claim_requests(tenant, reward_id, participants, False), concurrency)
    result = ScenarioResult("hot reward drop (sync)")
    _load_figures(result, load)
    result.figures["successful_claims"] = load.statuses.get(201, 0)
    result.violations = check_drop(engine, tenant, reward_id, codes)
    unexpected = {status: n for status, n in load.statuses.items() if status not in (201, 400)}
    if unexpected:
        result.violations.append(f"unexpected statuses {unexpected} {dict(load.error_codes)}")
    if load.statuses.get(201, 0) != codes:
        result.violations.append(f"{load.statuses.get(201, 0)} answers were 201, expected {codes}")
    return result


def async_claims(
    engine: Engine, api_url: str, *, participants: int, codes: int, concurrency: int
) -> ScenarioResult:
    tenant = make_tenant(engine)
    fund_participants(engine, tenant, participants, points=100)
    reward_id = stocked_reward(engine, tenant, codes, points_cost=10)
    started = time.perf_counter()
    load = run_load(api_url, claim_requests(tenant, reward_id, participants, True), concurrency)
    submitted = load.elapsed_seconds
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            pending = connection.execute(
                text(
                    "SELECT count(*) FROM operations WHERE tenant_id = :t "
                    "AND status IN ('queued', 'processing')"
                ),
                {"t": tenant.tenant_id},
            ).scalar_one()
        if pending == 0:
            break
        time.sleep(0.2)
    finished = time.perf_counter() - started - 1.5  # run_load's spawn delay
    result = ScenarioResult("async claims (Prefer: respond-async)")
    _load_figures(result, load)
    result.figures["accepted"] = load.statuses.get(202, 0)
    result.figures["all_finished_s"] = round(finished, 2)
    result.figures["finish_over_submit"] = round(finished / submitted, 2)
    result.violations = check_drop(engine, tenant, reward_id, codes)
    if load.statuses.get(202, 0) != participants:
        result.violations.append(f"only {load.statuses.get(202, 0)} of {participants} accepted")
    return result


def _load_figures(result: ScenarioResult, load: LoadResult) -> None:
    result.figures.update(
        requests=load.requests,
        seconds=round(load.elapsed_seconds, 2),
        requests_per_s=round(load.rate(), 1),
        p50_ms=round(load.p50(), 1),
        p99_ms=round(load.percentile(0.99), 1),
    )


def make_engine(database_url: str) -> Engine:
    return create_engine(database_url, pool_size=2)


def as_json(results: list[ScenarioResult]) -> list[dict[str, Any]]:
    return [
        {"name": result.name, "figures": result.figures, "violations": result.violations}
        | ({"table": result.table} if result.table else {})
        | ({"samples": result.samples} if result.samples else {})
        for result in results
    ]


def batch_awarding(
    engine: Engine,
    api_url: str,
    *,
    awards: int,
    per_request: int,
    concurrency: int,
    terms: dict[str, Any] | None = None,
) -> ScenarioResult:
    """`awards` awards through award-batch, `per_request` per call, over 100k participants;
    each award with `terms` (lot terms such as expires_in_days) if given."""
    terms = terms or {}
    tenant = make_tenant(engine)
    headers = {"X-API-Key": tenant.participant_key, "Content-Type": "application/json"}
    requests = [
        Request(
            "POST",
            f"{GAMIFY}/points/award-batch",
            headers,
            json.dumps(
                {
                    "awards": [
                        {"participant_id": f"m{(start + n) % 100_000}", "amount": 10, **terms}
                        for n in range(per_request)
                    ]
                }
            ).encode(),
        )
        for start in range(0, awards, per_request)
    ]
    load = run_load(api_url, requests, concurrency)
    result = ScenarioResult(
        f"batch awarding ({per_request} per award-batch request"
        + (f", {', '.join(f'{k} {v}' for k, v in terms.items())})" if terms else ")")
    )
    _load_figures(result, load)
    result.figures["awards_per_s"] = round(awards / load.elapsed_seconds, 1)
    with engine.connect() as connection:
        credited = connection.execute(
            text("SELECT coalesce(sum(balance), 0) FROM participants WHERE tenant_id = :t"),
            {"t": tenant.tenant_id},
        ).scalar_one()
    if credited != awards * 10:
        result.violations.append(f"credited {credited} points, expected {awards * 10}")
    if load.statuses.get(200, 0) != len(requests):
        result.violations.append(f"statuses {dict(load.statuses)} {dict(load.error_codes)}")
    return result


def bulk_awarding(engine: Engine, api_url: str, *, awards: int) -> ScenarioResult:
    """The same awards as one bulk job: upload a CSV, poll the operation to the end."""
    import http.client
    from urllib.parse import urlsplit

    tenant = make_tenant(engine)
    body = "participant_id,amount\n" + "".join(f"b{n % 100_000},10\n" for n in range(awards))
    parts = urlsplit(api_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    started = time.perf_counter()
    connection.request(
        "POST",
        f"{GAMIFY}/points/award-bulk",
        body=body.encode(),
        headers={"X-API-Key": tenant.admin_key, "Content-Type": "text/csv"},
    )
    response = connection.getresponse()
    accepted = json.loads(response.read())
    uploaded = time.perf_counter() - started
    result = ScenarioResult(f"bulk awarding ({awards} rows, one job)")
    if response.status != 202:
        result.violations.append(f"upload answered {response.status}: {accepted}")
        return result
    operation_id = accepted["operation_id"]
    status = "queued"
    while status not in ("succeeded", "failed") and time.perf_counter() - started < 900:
        time.sleep(0.5)
        connection.request(
            "GET", f"{GAMIFY}/operations/{operation_id}", headers={"X-API-Key": tenant.admin_key}
        )
        status = json.loads(connection.getresponse().read())["status"]
    elapsed = time.perf_counter() - started
    connection.close()
    result.figures.update(
        upload_s=round(uploaded, 2),
        job_s=round(elapsed, 2),
        awards_per_s=round(awards / elapsed, 1),
        status=status,
    )
    with engine.connect() as connection_:
        credited = connection_.execute(
            text("SELECT coalesce(sum(balance), 0) FROM participants WHERE tenant_id = :t"),
            {"t": tenant.tenant_id},
        ).scalar_one()
    if status != "succeeded" or credited != awards * 10:
        result.violations.append(f"status {status}, credited {credited}, expected {awards * 10}")
    return result


def webhook_fanout(events: int) -> ScenarioResult:
    """`python -m bench.webhooks` (its own database, worker and receiver)."""
    import re
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "bench.webhooks", "--events", str(events)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    result = ScenarioResult(f"webhook fan-out ({events} reward.reward_claimed events)")
    match = re.search(r"in ([0-9.]+) s: ([0-9]+) deliveries/s", out.stdout)
    if out.returncode != 0 or match is None:
        result.violations.append(f"bench.webhooks failed: {out.stdout[-500:]} {out.stderr[-500:]}")
        return result
    result.figures.update(seconds=float(match.group(1)), deliveries_per_s=int(match.group(2)))
    return result
