"""CPU time by process group, read from /proc: where a benchmark's CPU went.

Two ways to follow a group between two readings (in clock ticks, USER_HZ):

- a process tree (the API's gunicorn master, a Celery worker's main process and their
  children): the members' own CPU time plus what they reaped from children that exited, so
  a process that exits in between (gunicorn replacing a worker) is not lost: its time moves
  from its own counter to its parent's;
- a set of processes in a shared server (this benchmark's PostgreSQL backends, Redis):
  each one's own counter, from zero for a process that started in between; one that exited
  in between is left out, since its parent (the postmaster) reaps everyone's backends.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    ppid: int
    own_ticks: int  # utime + stime: every thread of the process
    reaped_ticks: int  # cutime + cstime: children it has waited for


def parse_stat(text: str) -> ProcStat:
    """One /proc/<pid>/stat line (see proc(5))."""
    # comm is in parentheses and may itself hold spaces and ")": split at the last one.
    head, _, rest = text.rpartition(")")
    pid, _, comm = head.partition(" (")
    fields = rest.split()  # fields[0] is field 3 (state) of proc(5)
    return ProcStat(
        pid=int(pid),
        comm=comm,
        ppid=int(fields[1]),
        own_ticks=int(fields[11]) + int(fields[12]),
        reaped_ticks=int(fields[13]) + int(fields[14]),
    )


def read_processes(root: Path = PROC) -> dict[int, ProcStat]:
    processes = {}
    for entry in os.scandir(root):
        if not entry.name.isdigit():
            continue
        try:
            processes[int(entry.name)] = parse_stat(Path(entry.path, "stat").read_text())
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited since the listing: its time is in its parent's reaped ticks
    return processes


def descendants(roots: Iterable[int], processes: Mapping[int, ProcStat]) -> set[int]:
    """The roots that are alive and every process below them."""
    children: dict[int, list[int]] = {}
    for stat in processes.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found: set[int] = set()
    pending = [pid for pid in roots if pid in processes]
    while pending:
        pid = pending.pop()
        if pid not in found:
            found.add(pid)
            pending.extend(children.get(pid, ()))
    return found


def tree_ticks(processes: Mapping[int, ProcStat], roots: Iterable[int]) -> int:
    """The CPU time of the trees under `roots`, exited members included."""
    members = descendants(roots, processes)
    return sum(processes[pid].own_ticks + processes[pid].reaped_ticks for pid in members)


def ticks_between(
    before: Mapping[int, ProcStat], after: Mapping[int, ProcStat], pids: Iterable[int]
) -> int:
    """What the processes `pids` (alive at the second reading) spent between the two."""
    spent = 0
    for pid in pids:
        now = after.get(pid)
        if now is None:
            continue
        then = before.get(pid)
        # The same pid for another process (reused in between) counts from zero too.
        same = then is not None and then.comm == now.comm and then.own_ticks <= now.own_ticks
        spent += now.own_ticks - (then.own_ticks if same and then else 0)
    return spent


def named(processes: Mapping[int, ProcStat], comm: str) -> set[int]:
    return {pid for pid, stat in processes.items() if stat.comm == comm}


def machine_busy_ticks(root: Path = PROC) -> int:
    """Every CPU's non-idle time (user, nice, system, irq, softirq, steal) from /proc/stat:
    what the groups do not account for (the kernel's network work, anything else running)
    shows as the difference."""
    fields = (root / "stat").read_text().split("\n", 1)[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return user + nice + system + irq + softirq + steal
