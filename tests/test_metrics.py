"""Prometheus metrics: `GET /metrics` behind its bearer token, counting every web process
of `rewards serve` together, with the levels read at scrape time; a worker's own port with
its operations by kind and outcome, their age and the drains' batch sizes."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import urllib3
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from tests.builders import GAMIFY, wait_for
from tests.conftest import TenantKeys
from tests.faults_support import ApiServer
from tests.webhook_receiver import free_port

TOKEN = "metrics-token-for-tests"


def samples(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def test_metrics_are_not_served_without_a_token_and_need_it_when_set(
    client: FlaskClient, make_app: Any
) -> None:
    assert client.get("/metrics").status_code == 404
    guarded = make_app(metrics_token=TOKEN).test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        refused = guarded.get("/metrics", headers=headers)
        assert refused.status_code == 401 and refused.json["code"] == "unauthorized"
    answered = guarded.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answered.status_code == 200
    assert answered.content_type.startswith("text/plain; version=0.0.4")
    levels = samples(answered.text)
    assert levels[("rewards_queue_depth", (("queue", "operations"),))] >= 0
    assert levels[("rewards_outbox_backlog", ())] >= 0
    assert ("rewards_operations_oldest_unfinished_age_seconds", ()) in levels


def test_every_web_process_is_counted_in_one_exposition(
    service_env: dict[str, str], tmp_path: Path, tenant: TenantKeys
) -> None:
    api = ApiServer({**service_env, "METRICS_TOKEN": TOKEN}, tmp_path / "api.log", processes=2)
    http = urllib3.PoolManager(retries=False, timeout=10)
    try:
        reads = 40
        for n in range(reads):
            # A fresh connection each time, so both processes take some.
            answered = http.request(
                "GET",
                f"{api.url}{GAMIFY}/participants/p{n}/points",
                headers={**tenant.participant(), "Connection": "close"},
            )
            assert answered.status == 200
        scraped = http.request(
            "GET", f"{api.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert scraped.status == 200
        counted = samples(scraped.data.decode())
    finally:
        http.clear()
        api.stop()
    route = f"{GAMIFY}/participants/<participant_id>/points"
    key = ("rewards_http_requests_total", (("method", "GET"), ("route", route), ("status", "200")))
    assert counted[key] == reads
    assert counted[("rewards_http_request_duration_seconds_count", (("route", route),))] == reads


def test_a_worker_serves_its_operations_by_kind_and_outcome_on_its_own_port(
    make_app: Any, tenant: TenantKeys, start_worker: Any, service_env: dict[str, str]
) -> None:
    # A key prefix of their own: this API's writes go to this worker alone.
    prefix = f"{service_env['REDIS_KEY_PREFIX']}metrics-{uuid.uuid4().hex[:6]}:"
    api = make_app(redis_key_prefix=prefix).test_client()
    port = free_port()
    start_worker(REDIS_KEY_PREFIX=prefix, WORKER_METRICS_PORT=str(port))
    points = f"{GAMIFY}/points"
    for _ in range(3):
        awarded = api.post(
            f"{points}/award", json={"participant_id": "mo", "amount": 5}, headers=tenant.admin()
        )
        assert awarded.status_code == 200, awarded.json
    refused = api.post(
        f"{points}/deduct", json={"participant_id": "mo", "amount": 500}, headers=tenant.admin()
    )
    assert refused.status_code == 400, refused.json
    http = urllib3.PoolManager(retries=False, timeout=5)

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return samples(http.request("GET", f"http://127.0.0.1:{port}/metrics").data.decode())

    def outcome(kind: str, result: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return ("rewards_operations_total", (("kind", kind), ("outcome", result)))

    counted = wait_for(
        scrape,
        lambda counted: counted.get(outcome("points.deduct", "refused")) == 1,
        10,
        "the worker to count the refused deduction",
    )
    http.clear()
    assert counted[outcome("points.award", "succeeded")] == 3
    assert counted[("rewards_operation_age_seconds_count", (("kind", "points.award"),))] == 3
    batches = [v for (name, _), v in counted.items() if name == "rewards_drain_batch_size_sum"]
    assert sum(batches) == 4


def test_a_forked_process_leaves_its_parents_metrics_directory_at_exit(tmp_path: Path) -> None:
    """A gunicorn worker runs the exit handlers it inherited when it exits: the directory
    its siblings write to must outlive it, and go with the process that made it."""
    probe = (
        "import os, sys\n"
        "from app.cli import _count_in_files\n"
        "_count_in_files('web')\n"
        "print(os.environ['PROMETHEUS_MULTIPROC_DIR'], flush=True)\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    sys.exit(0)  # as a gunicorn worker leaves: exit handlers run\n"
        "os.waitpid(child, 0)\n"
        "print(os.path.isdir(os.environ['PROMETHEUS_MULTIPROC_DIR']), flush=True)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    ran = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    directory, alive_after_child = ran.stdout.split()
    assert alive_after_child == "True"
    assert not Path(directory).exists()  # gone with its maker
