"""bench's CPU accounting from /proc and its statement count from a PostgreSQL log: pure
helpers, on made-up readings (no servers)."""

from __future__ import annotations

from bench.costs import count_statements
from bench.proc import ProcStat, descendants, parse_stat, ticks_between, tree_ticks


def _stat(pid: int, ppid: int, own: int, reaped: int = 0, comm: str = "python3") -> ProcStat:
    return ProcStat(pid=pid, comm=comm, ppid=ppid, own_ticks=own, reaped_ticks=reaped)


def test_a_stat_line_whose_name_has_spaces_and_parentheses() -> None:
    line = "4242 (gunicorn: ma (x)) S 17 4242 4242 0 -1 4194560 900 0 0 0 120 30 7 3 20 0 1 0"
    assert parse_stat(line) == ProcStat(
        pid=4242, comm="gunicorn: ma (x)", ppid=17, own_ticks=150, reaped_ticks=10
    )


def test_a_tree_counts_its_descendants_and_what_they_reaped() -> None:
    processes = {
        1: _stat(1, 0, 1000),
        10: _stat(10, 1, 5, reaped=40),  # a master that has reaped a replaced worker
        11: _stat(11, 10, 100),
        12: _stat(12, 11, 7),
        20: _stat(20, 1, 999),  # another tree
    }
    assert descendants([10, 99], processes) == {10, 11, 12}
    assert tree_ticks(processes, [10]) == 5 + 40 + 100 + 7


def test_shared_server_processes_count_from_their_own_counters() -> None:
    before = {
        1: _stat(1, 0, 50, comm="postgres"),
        2: _stat(2, 1, 10, comm="postgres"),
        3: _stat(3, 1, 99, comm="postgres"),  # exits in between: left out
        4: _stat(4, 1, 70, comm="python3"),  # the pid is reused by a backend
    }
    after = {
        1: _stat(1, 0, 51, reaped=500, comm="postgres"),  # the reaped go unnoticed
        2: _stat(2, 1, 25, comm="postgres"),
        4: _stat(4, 1, 3, comm="postgres"),
        5: _stat(5, 1, 8, comm="postgres"),  # started in between
    }
    assert ticks_between(before, after, [1, 2, 3, 4, 5]) == 1 + 15 + 3 + 8


def test_statements_and_transactions_of_one_database_in_a_server_log() -> None:
    log = "\n".join(
        [
            "2026-12-01 11:16:59.439 UTC [10] postgres@bench LOG:  statement: BEGIN",
            "2026-12-01 11:16:59.440 UTC [10] postgres@bench LOG:  execute _pg3_0: SELECT 1",
            "2026-12-01 11:16:59.440 UTC [10] postgres@bench DETAIL:  parameters: $1 = 'x'",
            "2026-12-01 11:16:59.441 UTC [10] postgres@bench LOG:  execute <unnamed>: ",
            "\t    INSERT INTO t VALUES (1)",
            "2026-12-01 11:16:59.442 UTC [10] postgres@bench LOG:  statement: COMMIT",
            "2026-12-01 11:16:59.443 UTC [11] postgres@other LOG:  statement: BEGIN",
            "2026-12-01 11:16:59.444 UTC [12] LOG:  checkpoint starting: time",
        ]
    )
    assert count_statements(log, "bench") == (4, 1)
    assert count_statements(log, None) == (5, 2)
