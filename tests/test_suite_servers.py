"""The README's test command on a machine without PostgreSQL or Redis running: the run
starts embedded ones (TEST_SERVERS=embedded stands in for servers that do not answer) and
says so on one line; a server it was told to use and cannot reach fails the run loudly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# A write through the API and a real worker, and a read back: both servers in use.
PROBE = "tests/test_actions.py::test_a_replayed_action_is_applied_once"


def run_pytest(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TEST_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", PROBE],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_without_servers_the_run_starts_embedded_ones_and_says_so() -> None:
    run = run_pytest(TEST_SERVERS="embedded")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "servers: embedded PostgreSQL and Redis, started for this run" in run.stdout
    assert "1 passed" in run.stdout


def test_a_named_server_that_does_not_answer_fails_the_run_at_once() -> None:
    run = run_pytest(TEST_REDIS_URL="redis://127.0.0.1:1/0")
    assert run.returncode == 3, run.stdout[-3000:]
    assert "Redis is not reachable at redis://127.0.0.1:1/0" in run.stdout + run.stderr
