"""Baselines measured in the same run, so results are ratios, not drifting absolutes."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis

from bench.load import Request, run_load
from bench.noop import NOOP_QUEUE, NOOP_TASK, build_noop_celery
from bench.services import Database, Services


def pgbench_tps(database: Database, clients: int = 8, seconds: int = 10, scale: int = 10) -> float:
    """TPC-B-like tps on the same PostgreSQL (scale 10, so 8 clients are not all queued
    on one branch row)."""
    subprocess.run(
        ["pgbench", "-i", "-q", "-s", str(scale), database.libpq_url],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [
            "pgbench",
            "-n",
            "-b",
            "tpcb-like",
            "-c",
            str(clients),
            "-j",
            "2",
            "-T",
            str(seconds),
            database.libpq_url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"tps = ([0-9.]+)", out)
    if match is None:
        raise RuntimeError(f"unexpected pgbench output:\n{out}")
    return float(match.group(1))


def celery_noop_rate(services: Services, worker_concurrency: int, tasks: int = 5000) -> float:
    """Tasks per second through the same broker with the same number of worker processes."""
    services.start_workers(
        worker_concurrency,
        [sys.executable, "-m", "bench.noop"],
        name="noop-worker",
    )
    celery = build_noop_celery()
    client = redis.Redis.from_url(services.env["REDIS_URL"])
    done_key = f"bench-noop-done:{uuid.uuid4()}"
    started = time.perf_counter()
    for _ in range(tasks):
        celery.send_task(NOOP_TASK, args=[done_key], queue=NOOP_QUEUE)
    deadline = time.monotonic() + 120
    while client.llen(done_key) < tasks and time.monotonic() < deadline:
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    client.delete(done_key)
    return tasks / elapsed


def flask_trivial_rate(api_url: str, concurrency: int = 64, requests: int = 20_000) -> float:
    """GET /livez (JSON, no I/O) under the same gunicorn settings as the scenarios."""
    result = run_load(api_url, [Request("GET", "/livez", {})] * requests, concurrency=concurrency)
    return result.rate()


def log_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return root
