"""What a bench write costs each part of the system: CPU per process group (from /proc,
see bench/proc.py), Celery tasks counted by the workers, and SQL statements counted from
PostgreSQL's statement log in a separate pass (logging would slow the timed runs)."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from bench.load import LoadResult
from bench.proc import (
    CLOCK_TICKS_PER_S,
    ProcStat,
    machine_busy_ticks,
    named,
    read_processes,
    ticks_between,
    tree_ticks,
)
from bench.services import ADMIN_URL, Database, Services

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


# -- CPU and tasks ----------------------------------------------------------------------------


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


def read_from(path: Path, offset: int) -> str:
    with path.open("rb") as log:
        log.seek(offset)
        return log.read().decode("utf-8", errors="replace")
