"""The `spread` scenario: sync awards, deductions and claims spread over many participants
and rewards, at several client counts, with what each write costs every part of the system.

For each (kind, clients) it reports the rate and latency, the CPU time per write of each
process group (from /proc, see bench/proc.py) and the Celery tasks per write, and, from a
separate counting pass after the timed runs (statement logging would slow them), the SQL
statements and transactions per write.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.engine import Engine

from bench.costs import (
    COUNT_SETTLE_SECONDS,
    Background,
    CpuReading,
    Probe,
    count_statements,
    cpu_ms_per_write,
    read_from,
    server_log,
    statement_logging,
    tasks_per_write,
)
from bench.load import LoadResult, Request, run_load
from bench.scenarios import (
    GAMIFY,
    ScenarioResult,
    Tenant,
    check_balances,
    fund_participants,
    make_tenant,
    stocked_reward,
)
from bench.services import Database, Services

KINDS = ("award", "deduct", "claim")
EXPECTED_STATUS = {"award": 200, "deduct": 200, "claim": 201}
AWARD_POINTS = 10
DEDUCT_POINTS = 1
CLAIM_COST = 5


@dataclass(frozen=True)
class SpreadOptions:
    kinds: tuple[str, ...]
    requests: dict[int, int]  # clients -> requests per timed run, in run order
    participants: int = 10_000
    rewards: int = 100
    count_requests: int = 200  # per (kind, clients) in the counting pass; 0: no pass

    def warm_up_requests(self) -> int:
        return 4 * max(self.requests)  # per kind, at the most clients

    def counted_requests(self, clients: int) -> int:
        # Every client sends at least two requests, so the pass is not all ramp-up.
        return max(self.count_requests, 2 * clients) if self.count_requests else 0

    def total_requests(self) -> int:
        """Requests of each kind over the whole scenario, warm-ups included."""
        counted = sum(self.counted_requests(clients) for clients in self.requests)
        warm_ups = 2 if self.count_requests else 1
        return sum(self.requests.values()) + counted + warm_ups * self.warm_up_requests()


@dataclass
class Plan:
    """The tenant, its participants and rewards, and each kind's next request number: a
    request's number picks its participant and reward (round robin, so consecutive
    requests hit different ones) and makes its Idempotency-Key."""

    tenant: Tenant
    participants: int
    funded_points: int  # each participant's balance before the first request
    reward_ids: list[uuid.UUID]
    next_number: Counter[str] = field(default_factory=Counter)
    successes: Counter[str] = field(default_factory=Counter)

    def requests(self, kind: str, count: int) -> list[Request]:
        start = self.next_number[kind]
        self.next_number[kind] += count
        return [self._request(kind, n) for n in range(start, start + count)]

    def _request(self, kind: str, n: int) -> Request:
        headers = {
            "X-API-Key": self.tenant.participant_key,
            "Content-Type": "application/json",
            "Idempotency-Key": f"spread-{kind}-{n}",
        }
        participant = f"p{n % self.participants}"
        if kind == "claim":
            reward_id = self.reward_ids[n % len(self.reward_ids)]
            body = {"participant_id": participant, "points_deduction": True}
            return Request("POST", f"{GAMIFY}/rewards/{reward_id}/claim", headers, _json(body))
        amount = AWARD_POINTS if kind == "award" else DEDUCT_POINTS
        body = {"participant_id": participant, "amount": amount}
        return Request("POST", f"{GAMIFY}/points/{kind}", headers, _json(body))

    def check(self, kind: str, clients: int, load: LoadResult) -> list[str]:
        """Every answer is the kind's success status; counts the successes."""
        expected = EXPECTED_STATUS[kind]
        self.successes[kind] += load.statuses.get(expected, 0)
        unexpected = {status: n for status, n in load.statuses.items() if status != expected}
        if not unexpected:
            return []
        return [
            f"{kind} at {clients} clients: {load.statuses.get(expected, 0)} of {load.requests} "
            f"answered {expected}; others {unexpected} {dict(load.error_codes)}"
        ]


def _json(body: dict[str, object]) -> bytes:
    return json.dumps(body).encode()


def make_plan(engine: Engine, options: SpreadOptions) -> Plan:
    """A tenant with funded participants and rewards holding enough codes for every claim."""
    tenant = make_tenant(engine)
    total = options.total_requests()
    per_participant = math.ceil(total / options.participants)
    # Enough for every deduction and claim a participant gets, before any award lands.
    points = max(1_000, 2 * per_participant * (DEDUCT_POINTS + CLAIM_COST))
    fund_participants(engine, tenant, options.participants, points=points)
    codes = math.ceil(total / options.rewards) + 1
    reward_ids = [
        stocked_reward(
            engine,
            tenant,
            codes,
            CLAIM_COST,
            name=f"Spread reward {index}",
            code_prefix=f"SP{index:03d}-",
            # Round robin gives a participant the same reward again after a while.
            max_claims_per_user=1_000_000,
        )
        for index in range(options.rewards)
    ]
    return Plan(tenant, options.participants, points, reward_ids)


def statements_per_write(
    plan: Plan,
    probe: Probe,
    database: Database,
    options: SpreadOptions,
    violations: list[str],
) -> dict[tuple[str, int], tuple[float, float]] | str:
    """(statements, transactions) per write for each (kind, clients), from the server log
    over a short second pass; a reason instead when the log cannot be read."""
    log = server_log(probe.admin)
    if log is None:
        return "server log not readable here"
    prefix = probe.admin.execute("SHOW log_line_prefix").fetchone()
    name = database.name if prefix and "%d" in prefix[0] else None
    found = {}
    with statement_logging(probe.admin, probe.services, database) as api_url:
        warm_up(plan, api_url, options, violations)  # pools connect outside the count
        time.sleep(COUNT_SETTLE_SECONDS)
        for kind in options.kinds:
            for clients in options.requests:
                offset = log.stat().st_size
                requests = plan.requests(kind, options.counted_requests(clients))
                load = run_load(api_url, requests, clients)
                time.sleep(COUNT_SETTLE_SECONDS)
                violations.extend(plan.check(kind, clients, load))
                counted = count_statements(read_from(log, offset), name)
                found[(kind, clients)] = (
                    round(counted[0] / max(load.requests, 1), 2),
                    round(counted[1] / max(load.requests, 1), 2),
                )
    return found


# -- the scenario ------------------------------------------------------------------------


def warm_up(plan: Plan, api_url: str, options: SpreadOptions, violations: list[str]) -> None:
    """Every kind at the most clients, unmeasured: the first requests of a fresh process
    (imports, pool connections, statement preparation) stay out of the figures."""
    clients = max(options.requests)
    for kind in options.kinds:
        load = run_load(api_url, plan.requests(kind, options.warm_up_requests()), clients)
        violations.extend(plan.check(kind, clients, load))


def timed_run(
    plan: Plan, probe: Probe, kind: str, clients: int, count: int, idle: Background
) -> tuple[LoadResult, dict[str, float | int | str]]:
    """One measured run. CPU is read when the load's clock starts (its processes spawned)
    and once every answer is in; the task count (a broker round trip) outside of that."""
    cpu: list[CpuReading] = []
    tasks_before = probe.tasks()
    load = run_load(
        probe.services.api_url,
        plan.requests(kind, count),
        clients,
        at_start=lambda: cpu.append(probe.cpu()),
    )
    cpu_after = probe.cpu()
    tasks_after = probe.tasks()
    return load, {
        "kind": kind,
        "clients": clients,
        "requests": load.requests,
        "requests_per_s": round(load.rate(), 1),
        "p50_ms": round(load.p50(), 1),
        "p99_ms": round(load.percentile(0.99), 1),
        **cpu_ms_per_write(cpu[0], cpu_after, load),
        "celery_tasks_per_write": tasks_per_write(tasks_before, tasks_after, idle, load.requests),
    }


def spread_writes(
    engine: Engine, services: Services, database: Database, options: SpreadOptions
) -> ScenarioResult:
    result = ScenarioResult(
        f"spread writes ({options.participants} participants, {options.rewards} rewards)"
    )
    plan = make_plan(engine, options)
    probe = Probe(services, database)
    try:
        warm_up(plan, services.api_url, options, result.violations)
        time.sleep(1.0)  # the warm-up's trailing work settles before the idle reading
        idle = Background.measure(probe)
        for kind in options.kinds:
            for clients, count in options.requests.items():
                load, row = timed_run(plan, probe, kind, clients, count, idle)
                result.violations.extend(plan.check(kind, clients, load))
                result.table.append(row)
        counted: dict[tuple[str, int], tuple[float, float]] | str = "not counted"
        if options.count_requests:
            counted = statements_per_write(plan, probe, database, options, result.violations)
    finally:
        probe.close()
    for row in result.table:
        key = (str(row["kind"]), int(row["clients"]))
        found = (counted, counted) if isinstance(counted, str) else counted[key]
        row["statements_per_write"], row["transactions_per_write"] = found
    result.figures.update(
        background_tasks_per_s=round(idle.tasks_per_s, 2),
        background_cores=round(idle.cores, 3),
    )
    result.violations.extend(check_books(engine, plan))
    return result


def check_books(engine: Engine, plan: Plan) -> list[str]:
    """The balances add up to the funding plus what succeeded, every successful claim holds
    a code, and the ledger checks of the other scenarios."""
    tenant = plan.tenant
    with engine.connect() as connection:
        balances = connection.execute(
            text("SELECT coalesce(sum(balance), 0) FROM participants WHERE tenant_id = :t"),
            {"t": tenant.tenant_id},
        ).scalar_one()
        claims, coded = connection.execute(
            text("SELECT count(*), count(code_value) FROM claims WHERE tenant_id = :t"),
            {"t": tenant.tenant_id},
        ).one()
    done = plan.successes
    expected = (
        plan.participants * plan.funded_points
        + done["award"] * AWARD_POINTS
        - done["deduct"] * DEDUCT_POINTS
        - done["claim"] * CLAIM_COST
    )
    violations = []
    if balances != expected:
        violations.append(f"balances sum to {balances}, expected {expected}")
    if claims != done["claim"] or coded != claims:
        violations.append(f"{claims} claims ({coded} with a code), {done['claim']} answered 201")
    return violations + check_balances(engine, tenant)
