"""`rewards standalone` on a machine with no servers configured: embedded PostgreSQL and
Redis from the wheels, the API under gunicorn and a real worker, stopped by Ctrl-C."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.builders import http_json
from tests.webhook_receiver import free_port

pytestmark = pytest.mark.slow


class Standalone:
    def __init__(self, data_dir: Path, port: int) -> None:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")
        }
        env.update(REWARDS_DATA_DIR=str(data_dir), LOG_LEVEL="WARNING")
        self.log = (data_dir.parent / "standalone.log").open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "standalone", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )

    def banner(self, timeout: float = 90) -> dict[str, Any]:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        assert ready, "standalone printed nothing in time"
        return dict(json.loads(self.process.stdout.readline()))

    def interrupt(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout)
        assert self.process.stdout is not None
        self.process.stdout.close()
        self.log.close()
        return code


def test_standalone_serves_a_write_through_the_worker_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    first = Standalone(data_dir, port)
    try:
        demo = first.banner()
        base = demo["api_url"]
        assert base == f"http://127.0.0.1:{port}"
        assert demo["admin_key"].startswith("bq_live_")
        assert demo["participant_key"].startswith("bq_live_")
        assert "curl" in demo["try"] and demo["admin_key"] in demo["try"]
        status, ready = http_json("GET", f"{base}/readyz", demo["admin_key"])
        assert (status, ready["status"]) == (200, "ok")

        status, reward = http_json(
            "POST",
            f"{base}/api/v1/gamify/admin/rewards",
            demo["admin_key"],
            {"name": "Welcome gift", "type": "coupon", "config": {"code_prefix": "HELLO-"}},
        )
        assert status == 201
        status, claimed = http_json(
            "POST",
            f"{base}/api/v1/gamify/rewards/{reward['id']}/claim",
            demo["participant_key"],
            {"participant_id": "user_1"},
        )
        assert status == 201, claimed
        assert claimed["code_value"].startswith("HELLO-")
        assert (data_dir / "standalone.json").exists()
    finally:
        exit_code = first.interrupt()
    assert exit_code == 0
    assert not (data_dir / "standalone.json").exists()
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    assert not (data_dir / "redis.sock").exists()

    second = Standalone(data_dir, port)
    try:
        again = second.banner()
        assert again["tenant_id"] == demo["tenant_id"]  # no duplicate demo tenant
        status, _ = http_json(
            "GET", f"{again['api_url']}/api/v1/gamify/rewards", demo["participant_key"]
        )
        assert status == 401  # the first run's keys were revoked; the new ones work
        status, catalog = http_json(
            "GET", f"{again['api_url']}/api/v1/gamify/rewards", again["participant_key"]
        )
        assert status == 200
        assert [entry["name"] for entry in catalog["rewards"]] == ["Welcome gift"]
    finally:
        assert second.interrupt() == 0
