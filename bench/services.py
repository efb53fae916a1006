"""The system under test: a fresh database, the API under gunicorn, Celery workers."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from celery import Celery

from app.config import load_settings
from app.migrate import upgrade_database
from workers.celery_app import create_celery

ADMIN_URL = os.environ.get(
    "BENCH_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Database:
    name: str
    url: str  # SQLAlchemy URL
    libpq_url: str  # for pgbench / psycopg

    @classmethod
    def create(cls, prefix: str = "rewards_bench") -> Database:
        name = f"{prefix}_{secrets.token_hex(4)}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        base = ADMIN_URL.rsplit("/", 1)[0]
        database = cls(
            name=name,
            url=f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1),
            libpq_url=f"{base}/{name}",
        )
        return database

    def migrate(self) -> None:
        upgrade_database(self.url)

    def drop(self) -> None:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@dataclass
class Services:
    """API (gunicorn) and workers as child processes sharing one environment."""

    env: dict[str, str]
    log_dir: Path
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)
    api_url: str = ""
    roles: dict[int, str] = field(default_factory=dict)  # pid -> "api", "worker", ...
    nodes: dict[str, str] = field(default_factory=dict)  # Celery node name -> role
    # How the API and the workers were started, so that restart() starts the same again.
    _api_options: tuple[int, int] | None = None
    _worker_options: list[tuple[int, list[str] | None, str]] = field(default_factory=list)

    @classmethod
    def environment(cls, database: Database, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": database.url,
            "REDIS_URL": REDIS_URL,
            "REDIS_KEY_PREFIX": f"rewards-bench-{secrets.token_hex(3)}:",
            "LOG_LEVEL": "WARNING",
            "SYNC_WAIT_TIMEOUT_SECONDS": "30",
            # The load is one key and few participants by design: caps would only measure
            # themselves.
            "KEY_REQUEST_RATE": "1000000",
            "KEY_REQUEST_BURST": "1000000",
            "PARTICIPANT_WRITE_RATE": "100000",
            "PARTICIPANT_WRITE_BURST": "100000",
            **extra,
        }

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[Any]:
        # Appended to: a restarted process keeps what the one before it logged.
        log = (self.log_dir / f"{name}.log").open("a")
        process = subprocess.Popen(
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes.append(process)
        self.roles[process.pid] = name
        return process

    def pids(self, role: str) -> list[int]:
        """The pids this object spawned as `role` (their children are not listed)."""
        return [pid for pid, name in self.roles.items() if name == role]

    def celery(self) -> Celery:
        """A client of the workers' broker, with their settings."""
        keys = ("DATABASE_URL", "REDIS_URL", "REDIS_KEY_PREFIX")
        return create_celery(load_settings(**{key.lower(): self.env[key] for key in keys}))

    def start_api(self, workers: int, connections: int) -> str:
        self._api_options = (workers, connections)
        port = free_port()
        self._spawn(
            "api",
            [
                sys.executable,
                "-m",
                "app.cli",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--connections",
                str(connections),
            ],
        )
        self.api_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.api_url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return self.api_url
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"API did not start; see {self.log_dir / 'api.log'}")

    def start_workers(
        self, concurrency: int, argv: list[str] | None = None, name: str = "worker"
    ) -> None:
        """Start a worker and wait until it answers a broker ping (logs stay at WARNING,
        so per-task log lines do not cost the benchmark anything)."""
        self._worker_options.append((concurrency, argv, name))
        node = f"bench-{name}-{secrets.token_hex(3)}@{socket.gethostname()}"
        self._spawn(
            name,
            [
                *(argv or [sys.executable, "-m", "app.cli", "worker"]),
                f"--concurrency={concurrency}",
                f"--name={node}",
            ],
        )
        self.nodes[node] = name
        celery = self.celery()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if celery.control.ping(destination=[node], timeout=0.5):
                return
        raise RuntimeError(f"worker did not start; see {self.log_dir / f'{name}.log'}")

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()
        self.roles.clear()
        self.nodes.clear()

    def restart(self, worker_argv: list[str] | None = None) -> str:
        """Stop everything and start the API and the workers again as they were started
        (the workers with `worker_argv` instead, if given); returns the new API URL.
        Processes connect to the database afresh, so they see its changed settings."""
        api_options, worker_options = self._api_options, list(self._worker_options)
        self.stop()
        self._worker_options.clear()
        if api_options is not None:
            self.start_api(*api_options)
        for concurrency, argv, name in worker_options:
            self.start_workers(concurrency, worker_argv or argv, name)
        self._worker_options = worker_options  # a later restart() starts the originals
        return self.api_url
