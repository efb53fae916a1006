"""Test infrastructure: a fresh database per run (migrated once), a Redis key prefix per
run, the API app, worker processes, and builders for tenants and keys.

The servers are real: PostgreSQL and Redis on 127.0.0.1 when they answer there (or those
TEST_DATABASE_ADMIN_URL / TEST_REDIS_URL name); when they do not, or TEST_SERVERS=embedded,
the run starts its own from the `[test]` extra's wheels (tests/servers.py) and its header
says so. A server that then cannot be reached fails the run at once; nothing is skipped.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

import app.kinds  # noqa: F401  (every operation kind registered, as in the service)
from app.config import Settings, load_settings
from app.migrate import upgrade_database
from app.models import Environment
from app.tenancy import create_api_key, create_tenant
from tests.builders import wait_until
from tests.servers import PrivatePostgres, PrivateRedis, answers
from tests.webhook_receiver import free_port

LOCAL_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
RUN_ID = secrets.token_hex(4)
SUITE_SECRET_KEY = f"suite-key-{RUN_ID}"


def _servers_to_use() -> tuple[str | None, str | None]:
    """The PostgreSQL admin URL and the Redis URL to run against; None: start our own."""
    if os.environ.get("TEST_SERVERS") == "embedded":
        return None, None
    admin_url = os.environ.get("TEST_DATABASE_ADMIN_URL") or (
        LOCAL_ADMIN_URL if answers("127.0.0.1", 5432) else None
    )
    redis_url = os.environ.get("TEST_REDIS_URL") or (
        LOCAL_REDIS_URL if answers("127.0.0.1", 6379) else None
    )
    return admin_url, redis_url


GIVEN_ADMIN_URL, GIVEN_REDIS_URL = _servers_to_use()


def pytest_report_header(config: pytest.Config) -> str:
    embedded = [
        name
        for name, given in (("PostgreSQL", GIVEN_ADMIN_URL), ("Redis", GIVEN_REDIS_URL))
        if given is None
    ]
    if not embedded:
        return f"servers: PostgreSQL {GIVEN_ADMIN_URL}, Redis {GIVEN_REDIS_URL}"
    why = (
        "TEST_SERVERS=embedded"
        if os.environ.get("TEST_SERVERS") == "embedded"
        else "nothing answered on 127.0.0.1"
    )
    return f"servers: embedded {' and '.join(embedded)}, started for this run ({why})"


def pytest_sessionstart(session: pytest.Session) -> None:
    """A server named for the run that does not answer stops it here, saying which, before
    any test process starts (pytest.exit in a test process of xdist's would only crash it)."""
    if GIVEN_ADMIN_URL is not None:
        _admin_connection(GIVEN_ADMIN_URL).close()
    if GIVEN_REDIS_URL is not None:
        _ping_redis(GIVEN_REDIS_URL)


def _ping_redis(url: str) -> None:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        pytest.exit(f"Redis is not reachable at {url}: {exc}", returncode=3)


@pytest.fixture(scope="session")
def admin_url() -> Iterator[str]:
    """The PostgreSQL database to create the run's database from."""
    if GIVEN_ADMIN_URL is not None:
        yield GIVEN_ADMIN_URL
        return
    try:
        server = PrivatePostgres()
    except Exception as exc:
        pytest.exit(f"no PostgreSQL on 127.0.0.1:5432, and an embedded one failed: {exc}", 3)
    yield server.url.replace("postgresql+psycopg://", "postgresql://", 1)
    server.close()


def _admin_connection(admin_url: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.exit(f"PostgreSQL is not reachable at {admin_url}: {exc}", returncode=3)


@pytest.fixture(scope="session")
def database_url(admin_url: str) -> Iterator[str]:
    name = f"rewards_test_{RUN_ID}"
    with _admin_connection(admin_url) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = (
        make_url(admin_url)
        .set(drivername="postgresql+psycopg", database=name)
        .render_as_string(hide_password=False)
    )
    upgrade_database(url)
    yield url
    with _admin_connection(admin_url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if GIVEN_REDIS_URL is None:
        server = PrivateRedis(tmp_path_factory.mktemp("redis"))
        try:
            server.start()
        except Exception as exc:
            pytest.exit(f"no Redis on 127.0.0.1:6379, and an embedded one failed: {exc}", 3)
        yield server.url
        server.kill()
        return
    _ping_redis(GIVEN_REDIS_URL)
    yield GIVEN_REDIS_URL


@pytest.fixture(scope="session")
def service_env(database_url: str, redis_url: str) -> dict[str, str]:
    """Environment for the service's processes in this run (API, workers, CLI)."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": f"rewards-test-{RUN_ID}:",
        "SYNC_WAIT_TIMEOUT_SECONDS": "15",
        "SWEEP_INTERVAL_SECONDS": "1",
        "OPERATION_STALL_SECONDS": "3",
        # A write that keeps failing unexpectedly is set aside after two runs.
        "OPERATION_MAX_ATTEMPTS": "2",
        "AUTH_CACHE_TTL_SECONDS": "1",
        # Generous caps for the suite; the rate-limit tests set tenant overrides.
        "PARTICIPANT_WRITE_RATE": "100000",
        "PARTICIPANT_WRITE_BURST": "100000",
        "LOG_LEVEL": "WARNING",
        # Webhook receivers in the tests listen on 127.0.0.1 and retry within seconds.
        "WEBHOOK_ALLOW_PRIVATE": "true",
        "WEBHOOK_RETRY_SCHEDULE": "1,1,2",
        "WEBHOOK_TIMEOUT_SECONDS": "3",
        # Webhook secrets are sealed at rest in every test (tests/test_webhook_secrets.py).
        "SECRET_KEY": SUITE_SECRET_KEY,
    }


@pytest.fixture(scope="session")
def settings(service_env: dict[str, str]) -> Settings:
    return load_settings(**{key.lower(): value for key, value in service_env.items()})


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    engine = create_engine(settings.require_database_url(), pool_size=5)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@pytest.fixture
def db_session(engine: Engine) -> Iterator[Session]:
    """A session whose work is rolled back at the end of the test."""
    connection = engine.connect()
    transaction = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint")
    yield session
    session.close()
    transaction.rollback()
    connection.close()


@pytest.fixture(scope="session")
def flask_app(settings: Settings) -> Iterator[Flask]:
    from api.factory import create_app
    from api.runtime import EXTENSION_KEY

    app = create_app(settings)
    yield app
    app.extensions[EXTENSION_KEY].close()


@pytest.fixture
def client(flask_app: Flask) -> FlaskClient:
    return flask_app.test_client()


@pytest.fixture
def make_app(settings: Settings) -> Iterator[Any]:
    """Builds extra apps with changed settings; their connections are closed after the test."""
    from api.factory import create_app
    from api.runtime import EXTENSION_KEY

    built: list[Flask] = []

    def build(**changes: Any) -> Flask:
        app = create_app(settings.model_copy(update=changes))
        built.append(app)
        return app

    yield build
    for built_app in built:
        built_app.extensions[EXTENSION_KEY].close()


@dataclass
class TenantKeys:
    tenant_id: uuid.UUID
    admin_key: str
    participant_key: str
    test_admin_key: str
    test_participant_key: str

    def admin(self) -> dict[str, str]:
        return {"X-API-Key": self.admin_key}

    def participant(self) -> dict[str, str]:
        return {"X-API-Key": self.participant_key}


def _tenant_builder(session_factory: sessionmaker[Session]) -> Any:

    def build(name: str = "Acme") -> TenantKeys:
        with session_factory.begin() as session:
            tenant = create_tenant(session, name)
            keys = [
                create_api_key(session, tenant.id, env, scopes).key
                for env, scopes in (
                    (Environment.LIVE, ["admin"]),
                    (Environment.LIVE, []),
                    (Environment.TEST, ["gamify:admin"]),
                    (Environment.TEST, []),
                )
            ]
        return TenantKeys(tenant.id, *keys)

    return build


@pytest.fixture
def make_tenant(session_factory: sessionmaker[Session]) -> Any:
    """Builds a committed tenant with live and test keys (admin and participant)."""
    return _tenant_builder(session_factory)


@pytest.fixture(scope="session")
def make_session_tenant(session_factory: sessionmaker[Session]) -> Any:
    """The same, for session-scoped fixtures."""
    return _tenant_builder(session_factory)


@pytest.fixture
def tenant(make_tenant: Any) -> TenantKeys:
    return make_tenant()


class _Exited(Exception):
    """A child process the suite waits for exited instead of becoming ready."""


class WorkerProcess:
    """`rewards worker` as a real child process, logging to a file."""

    def __init__(self, env: dict[str, str], log_path: Path, concurrency: int = 2) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", f"--concurrency={concurrency}"],
            env={**os.environ, **env, "LOG_LEVEL": "INFO"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 30) -> None:
        def ready() -> bool:
            if " ready." in self.log_path.read_text():
                return True
            if self.process.poll() is not None:
                raise _Exited
            return False

        try:
            wait_until(ready, timeout, "the worker to log ready", interval=0.1)
        except (AssertionError, _Exited):
            self.stop()
            raise RuntimeError(
                f"worker did not start:\n{self.log_path.read_text()[-3000:]}"
            ) from None

    def child_pids(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False
        ).stdout
        return [int(pid) for pid in out.split()]

    def stop(self) -> None:
        if self.process.poll() is None:
            # poll() cannot tell while another thread waits for the process (the fault
            # tests' supervisor): it may have exited, its group with it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()

    def kill(self) -> None:
        """SIGKILL the whole worker (parent and children), as a crashed host would."""
        with contextlib.suppress(ProcessLookupError):  # exited already, its group with it
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._log.close()


@pytest.fixture(scope="session")
def worker(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """A worker shared by the tests that only need writes to be executed."""
    process = WorkerProcess(service_env, tmp_path_factory.mktemp("worker") / "worker.log")
    yield process
    process.stop()


@pytest.fixture
def start_worker(service_env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    """Starts extra workers for one test (concurrency and crash tests); stops them after."""
    started: list[WorkerProcess] = []

    def start(concurrency: int = 2, **env: str) -> WorkerProcess:
        process = WorkerProcess(
            {**service_env, **env}, tmp_path / f"worker-{len(started)}.log", concurrency
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.process.poll() is None:
            process.stop()


@pytest.fixture(scope="session")
def live_api(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`rewards serve` with one process, as deployed, on the test database; its URL."""
    port = free_port()
    log = (tmp_path_factory.mktemp("live-api") / "api.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env={**os.environ, **service_env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2):
                return True
        except OSError:
            if process.poll() is not None:
                raise _Exited from None
            return False

    try:
        wait_until(ready, 30, "rewards serve to answer /readyz", interval=0.2)
    except (AssertionError, _Exited):
        process.kill()
        raise RuntimeError(f"rewards serve did not start; see {log.name}") from None
    yield base
    process.terminate()
    process.wait(20)
    log.close()
