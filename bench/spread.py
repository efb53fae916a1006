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
import os
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.engine import Engine

from bench.load import LoadResult, Request, run_load
from bench.proc import (
    CLOCK_TICKS_PER_S,
    ProcStat,
    machine_busy_ticks,
    named,
    read_processes,
    ticks_between,
    tree_ticks,
)
from bench.scenarios import (
    GAMIFY,
    ScenarioResult,
    Tenant,
    check_balances,
    fund_participants,
    make_tenant,
    stocked_reward,
)
from bench.services import ADMIN_URL, Database, Services

KINDS = ("award", "deduct", "claim")
EXPECTED_STATUS = {"award": 200, "deduct": 200, "claim": 201}
AWARD_POINTS = 10
DEDUCT_POINTS = 1
CLAIM_COST = 5
# Groups that are the process trees under what Services spawned as a role.
TREE_GROUPS = {"web": "api", "worker": "worker"}
CPU_GROUPS = ("web", "worker", "postgres", "redis", "load")
BACKGROUND_SECONDS = 5.0
# The counting pass's workers run without the embedded beat, so the periodic sweeper and
# dispatcher add no statements of their own to what the writes cost.
NO_BEAT_WORKER = [sys.executable, "-m", "app.cli", "worker", "--no-beat"]
# A statement as log_statement = 'all' logs it: the simple protocol's "statement:" and the
# extended protocol's "execute <name>:" (one line per execution; bind parameters are on a
# DETAIL line of their own and a statement's further lines carry no prefix).
_STATEMENT_LINE = re.compile(r"LOG:  (?:statement|execute [^:]*): (\w*)")
# Trailing work of the last writes (a drain finishing after it answered) is logged by then.
COUNT_SETTLE_SECONDS = 1.0


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


# -- counters ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuReading:
    at: float  # time.monotonic()
    processes: dict[int, ProcStat]
    trees: dict[str, int]  # ticks of the web and worker process trees
    postgres: frozenset[int]  # this database's backends and the server's own processes
    machine: int  # every CPU's busy ticks


@dataclass(frozen=True)
class TaskReading:
    at: float
    started: int  # tasks the workers have started since they did


class Probe:
    """Reads what a run is measured by, from outside the system under test, and only what
    this benchmark's processes did: PostgreSQL and Redis may be serving others (a test
    suite) at the same time.

    Celery tasks: each worker's own count of the tasks it started, by name (`inspect
    stats`, "total"), summed over this benchmark's workers. Redis' `INFO commandstats` LPUSH
    count (one per message kombu puts on a queue) would count every Redis user's tasks.
    """

    def __init__(self, services: Services, database: Database) -> None:
        self.services = services
        self.database = database
        self.celery = services.celery()
        self.admin = psycopg.connect(ADMIN_URL, autocommit=True)

    def close(self) -> None:
        self.celery.close()
        self.admin.close()

    def cpu(self) -> CpuReading:
        at = time.monotonic()
        processes = read_processes()
        trees = {
            group: tree_ticks(processes, self.services.pids(role))
            for group, role in TREE_GROUPS.items()
        }
        return CpuReading(at, processes, trees, self._postgres_pids(), machine_busy_ticks())

    def _postgres_pids(self) -> frozenset[int]:
        """The bench database's backends (the pooled connections of the API and the workers)
        and the server's processes of no database (WAL writer, checkpointer, ...)."""
        rows = self.admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s "
            "OR (datname IS NULL AND backend_type <> 'client backend')",
            (self.database.name,),
        ).fetchall()
        return frozenset(pid for (pid,) in rows)

    def tasks(self) -> TaskReading:
        nodes = list(self.services.nodes)
        replies = (
            self.celery.control.inspect(destination=nodes, timeout=5.0, limit=len(nodes)).stats()
            or {}
        )
        if set(replies) != set(nodes):
            raise RuntimeError(f"workers {set(nodes) - set(replies)} did not answer inspect")
        started = sum(sum(reply["total"].values()) for reply in replies.values())
        return TaskReading(time.monotonic(), started)


def cpu_seconds(before: CpuReading, after: CpuReading) -> dict[str, float]:
    """CPU seconds by group between two readings; `machine`: every CPU's busy time."""
    ticks = {group: after.trees[group] - before.trees[group] for group in TREE_GROUPS}
    ticks["postgres"] = ticks_between(before.processes, after.processes, after.postgres)
    ticks["redis"] = ticks_between(
        before.processes, after.processes, named(after.processes, "redis-server")
    )
    ticks["machine"] = after.machine - before.machine
    return {group: value / CLOCK_TICKS_PER_S for group, value in ticks.items()}


@dataclass(frozen=True)
class Background:
    """What the idle system does per second (the beat's periodic tasks), so that it can be
    taken out of the per-write task count."""

    tasks_per_s: float
    cores: float  # this benchmark's processes

    @classmethod
    def measure(cls, probe: Probe, seconds: float = BACKGROUND_SECONDS) -> Background:
        tasks_before, cpu_before = probe.tasks(), probe.cpu()
        time.sleep(seconds)
        cpu_after, tasks_after = probe.cpu(), probe.tasks()
        busy = cpu_seconds(cpu_before, cpu_after)
        return cls(
            tasks_per_s=(tasks_after.started - tasks_before.started)
            / (tasks_after.at - tasks_before.at),
            cores=sum(busy[group] for group in CPU_GROUPS if group in busy)
            / (cpu_after.at - cpu_before.at),
        )


def cpu_ms_per_write(before: CpuReading, after: CpuReading, load: LoadResult) -> dict[str, float]:
    """Milliseconds of CPU per write by group; the load generator's comes from its own
    processes (they have exited by now). `total` is the groups' sum, `machine` every CPU's
    busy time: the difference is kernel work on no process's account and anything else
    running on the machine."""
    seconds = cpu_seconds(before, after)
    seconds["load"] = load.cpu_seconds
    seconds["total"] = sum(seconds[group] for group in CPU_GROUPS)
    writes = max(load.requests, 1)
    return {
        f"cpu_ms_{group}": round(1000 * seconds[group] / writes, 3)
        for group in (*CPU_GROUPS, "total", "machine")
    }


def tasks_per_write(
    before: TaskReading, after: TaskReading, idle: Background, writes: int
) -> float:
    # The beat's share comes out; noise could make a small figure negative.
    periodic = idle.tasks_per_s * (after.at - before.at)
    return round(max(0.0, after.started - before.started - periodic) / max(writes, 1), 3)


# -- statements --------------------------------------------------------------------------


def count_statements(log_text: str, database: str | None) -> tuple[int, int]:
    """(statements, transactions) logged in `log_text`, for `database` when the line prefix
    names it. A transaction is a BEGIN: psycopg opens each one with it, and a statement run
    on its own in autocommit (no BEGIN) is not counted as one."""
    statements = transactions = 0
    for line in log_text.splitlines():
        match = _STATEMENT_LINE.search(line)
        if match and (database is None or database in line[: match.start()]):
            statements += 1
            transactions += match.group(1).upper() == "BEGIN"
    return statements, transactions


def server_log(admin: psycopg.Connection) -> Path | None:
    """The file the server writes its log to, if this process can read it: the collector's
    current file, or else where the postmaster's stderr goes (/proc, same host only)."""
    current, data_directory = admin.execute(
        "SELECT pg_current_logfile('stderr'), current_setting('data_directory')"
    ).fetchone() or (None, None)
    try:
        if current:
            path = Path(data_directory or "", current)
        else:
            postmaster = Path(data_directory or "", "postmaster.pid").read_text().split()[0]
            path = Path(os.readlink(f"/proc/{postmaster}/fd/2"))
    except (OSError, IndexError):
        return None
    return path if path.is_file() and os.access(path, os.R_OK) else None


@contextmanager
def statement_logging(
    admin: psycopg.Connection, services: Services, database: Database
) -> Iterator[str]:
    """log_statement = 'all' for the bench database while inside: it applies to new
    sessions only, so the API and the workers are restarted (the workers without beat),
    and restarted again as they were when done."""
    name = sql.Identifier(database.name)
    admin.execute(sql.SQL("ALTER DATABASE {} SET log_statement = 'all'").format(name))
    try:
        yield services.restart(worker_argv=NO_BEAT_WORKER)
    finally:
        admin.execute(sql.SQL("ALTER DATABASE {} RESET log_statement").format(name))
        services.restart()


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
                counted = count_statements(_read_from(log, offset), name)
                found[(kind, clients)] = (
                    round(counted[0] / max(load.requests, 1), 2),
                    round(counted[1] / max(load.requests, 1), 2),
                )
    return found


def _read_from(path: Path, offset: int) -> str:
    with path.open("rb") as log:
        log.seek(offset)
        return log.read().decode("utf-8", errors="replace")


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
