"""Settings validation, and the Celery options read back from the built app and its tasks.

Celery accepts any keyword on a task decorator and any key in `conf` and ignores the ones
it does not know, so a misspelled reliability option would pass silently without these.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery, Task
from celery.app.defaults import NAMESPACES, flatten
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import workers.tasks  # noqa: F401  (registers the shared tasks on every app)
from app.config import STANDALONE_STATE_FILE, Settings, SettingsError, load_settings
from app.models import Participant
from tests.builders import wait_for_operation, wait_until
from tests.conftest import TenantKeys
from workers.celery_app import (
    ALL_QUEUES,
    QUEUE_MAINTENANCE,
    QUEUE_OPERATIONS,
    TASK_EXECUTE_OPERATION,
    TASK_SWEEP_OPERATIONS,
    create_celery,
)
from workers.main import run_worker
from workers.publish import publish_operation
from workers.tasks import RETRY_COUNTDOWN_CAP_SECONDS

OUR_TASKS = (TASK_EXECUTE_OPERATION, TASK_SWEEP_OPERATIONS)
SETTINGS_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "REDIS_KEY_PREFIX",
    "REWARDS_DATA_DIR",
    "AUTH_CACHE_TTL_SECONDS",
    "LOG_LEVEL",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No settings inherited from the shell; an empty data directory."""
    for variable in SETTINGS_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("REWARDS_DATA_DIR", str(tmp_path))
    return monkeypatch


def settings_error(clean_env: pytest.MonkeyPatch, **variables: str) -> str:
    for name, value in variables.items():
        clean_env.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    return str(raised.value)


# Settings


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://x"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("CELERY_BROKER_URL", "amqp-ish://x"),
        ("AUTH_CACHE_TTL_SECONDS", "-1"),
        ("SYNC_WAIT_TIMEOUT_SECONDS", "ten"),
        ("IDEMPOTENCY_RETENTION_HOURS", "1"),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_invalid_setting_raises_one_line_naming_the_variable(
    clean_env: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    message = settings_error(clean_env, **{variable: value})
    assert "\n" not in message
    assert message.startswith(f"invalid {variable}")


def test_invalid_url_setting_never_echoes_the_url_and_its_password(
    clean_env: pytest.MonkeyPatch,
) -> None:
    message = settings_error(clean_env, DATABASE_URL="mysql://app:hunter2@db/rewards")
    assert "DATABASE_URL" in message
    assert "hunter2" not in message


def test_invalid_plain_setting_shows_the_value_it_got(clean_env: pytest.MonkeyPatch) -> None:
    assert "(got '-1')" in settings_error(clean_env, AUTH_CACHE_TTL_SECONDS="-1")


def test_missing_database_url_names_it_when_it_is_required(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    with pytest.raises(SettingsError, match=r"^DATABASE_URL is not set") as raised:
        settings.require_database_url()
    assert "\n" not in str(raised.value)
    with pytest.raises(SettingsError, match=r"^REDIS_URL is not set"):
        settings.require_redis_url()


def test_running_standalone_supplies_the_urls_when_none_are_set(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    urls = {"database_url": "postgresql+psycopg://p@/postgres", "redis_url": "unix:///r.sock"}
    (tmp_path / STANDALONE_STATE_FILE).write_text(json.dumps(urls))
    settings = load_settings()
    assert settings.require_database_url() == urls["database_url"]
    assert settings.require_broker_url() == "redis+socket:///r.sock"


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:p@h:5432/db",
        "postgresql://u:p@h:5432/db",
        "postgresql+psycopg://u:p@h:5432/db",
    ],
)
def test_postgres_urls_are_normalised_to_the_psycopg3_driver(
    clean_env: pytest.MonkeyPatch, url: str
) -> None:
    clean_env.setenv("DATABASE_URL", url)
    assert load_settings().database_url == "postgresql+psycopg://u:p@h:5432/db"


def test_broker_defaults_to_redis_url(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("REDIS_URL", "redis://127.0.0.1:6379/3")
    assert load_settings().require_broker_url() == "redis://127.0.0.1:6379/3"
    clean_env.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:6379/4")
    assert load_settings().require_broker_url() == "redis://127.0.0.1:6379/4"


# Celery options, read back


@pytest.fixture(scope="module")
def celery_app(settings: Settings) -> Iterator[Celery]:
    app = create_celery(settings)
    app.finalize()
    yield app
    app.close()


def test_operation_tasks_ack_late_and_requeue_when_their_worker_is_lost(
    celery_app: Celery,
) -> None:
    for name in OUR_TASKS:
        task = celery_app.tasks[name]
        assert task.acks_late is True, name
        assert task.reject_on_worker_lost is True, name
        assert task.ignore_result is True, name


def test_execute_operation_retries_transient_errors_a_bounded_number_of_times(
    celery_app: Celery,
) -> None:
    max_retries = celery_app.tasks[TASK_EXECUTE_OPERATION].max_retries
    assert max_retries is not None and max_retries > 0  # None: Celery retries forever


def test_task_decorators_carry_no_option_celery_does_not_know(celery_app: Celery) -> None:
    def probe_task() -> None:
        pass

    # What Celery itself puts on a task class defined with no options.
    celery_app.task(name="test.probe", shared=False)(probe_task)
    allowed = set(vars(type(celery_app.tasks["test.probe"]))) | set(dir(Task))
    for name in OUR_TASKS:
        unknown = set(vars(type(celery_app.tasks[name]))) - allowed
        assert unknown == set(), f"{name} has options Celery ignores: {unknown}"


def test_celery_settings_are_all_names_celery_knows(celery_app: Celery) -> None:
    known = {key for key, _ in flatten(NAMESPACES)}
    # deprecated_settings is Celery's own bookkeeping; rewards_settings is ours, on purpose.
    ours = set(celery_app.conf.changes) - {"deprecated_settings", "rewards_settings"}
    assert ours - known == set()


def test_workers_prefetch_one_message_and_ack_late_by_default(celery_app: Celery) -> None:
    conf = celery_app.conf
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert (conf.task_serializer, conf.accept_content) == ("json", ["json"])


def test_redis_visibility_timeout_outlasts_every_retry_countdown(
    celery_app: Celery, settings: Settings
) -> None:
    options = celery_app.conf.broker_transport_options
    assert options["visibility_timeout"] > RETRY_COUNTDOWN_CAP_SECONDS
    assert options["visibility_timeout"] > settings.operation_stall_seconds


def test_broker_keys_carry_the_deployment_key_prefix(
    celery_app: Celery, settings: Settings
) -> None:
    options = celery_app.conf.broker_transport_options
    assert options["global_keyprefix"] == f"{settings.redis_key_prefix}celery:"


def test_operations_go_to_the_operations_queue_and_the_sweeper_to_maintenance(
    celery_app: Celery, settings: Settings
) -> None:
    assert celery_app.conf.task_default_queue == QUEUE_OPERATIONS
    sweep = celery_app.conf.beat_schedule["sweep-operations"]
    assert sweep["task"] in celery_app.tasks
    assert sweep["task"] == TASK_SWEEP_OPERATIONS
    assert sweep["schedule"] == settings.sweep_interval_seconds
    # A sweep not started before the next one is due is dropped, not piled up.
    assert sweep["options"] == {
        "queue": QUEUE_MAINTENANCE,
        "expires": settings.sweep_interval_seconds,
    }
    # Whatever is sent anywhere lands in a queue `rewards worker` consumes (ALL_QUEUES).
    routed = {entry["options"]["queue"] for entry in celery_app.conf.beat_schedule.values()}
    assert routed | {celery_app.conf.task_default_queue} <= set(ALL_QUEUES)


def test_published_operation_lands_in_the_prefixed_operations_queue_in_redis(
    settings: Settings,
) -> None:
    prefix = f"rewards-test-publish-{uuid.uuid4().hex[:8]}:"  # no worker consumes it
    app = create_celery(settings.model_copy(update={"redis_key_prefix": prefix}))
    client = redis.Redis.from_url(settings.require_redis_url(), decode_responses=True)
    operation_id = uuid.uuid4()
    try:
        publish_operation(app, _OperationStub(operation_id))
        messages = client.lrange(f"{prefix}celery:{QUEUE_OPERATIONS}", 0, -1)
    finally:
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
        app.close()
    assert len(messages) == 1
    headers = json.loads(messages[0])["headers"]
    assert headers["task"] == TASK_EXECUTE_OPERATION
    assert headers["argsrepr"] == repr([str(operation_id)])


class _OperationStub:
    def __init__(self, operation_id: uuid.UUID) -> None:
        self.id = operation_id


def test_rewards_worker_consumes_every_queue_and_runs_the_sweeper(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[list[str]] = []

    def record(self: Celery, argv: list[str] | None = None) -> Any:
        started.append(list(argv or []))

    monkeypatch.setattr(Celery, "worker_main", record)
    run_worker(settings, concurrency=3, beat=True)
    run_worker(settings, concurrency=None, beat=False)

    with_beat, without_beat = started
    queues = next(arg for arg in with_beat if arg.startswith("--queues="))
    assert set(queues.removeprefix("--queues=").split(",")) == set(ALL_QUEUES)
    assert "--concurrency=3" in with_beat
    assert "--beat" in with_beat
    assert "--beat" not in without_beat


def test_log_level_is_accepted_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "warning")
    assert load_settings().log_level == "WARNING"


@pytest.mark.slow
def test_the_celery_command_finds_the_app_and_pings_a_running_worker(
    worker: Any, service_env: dict[str, str]
) -> None:
    """What Flower and `celery inspect` rely on: `-A workers.celery_app` finds the app,
    built from the environment with the deployment's key prefix."""
    completed = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers.celery_app", "inspect", "ping"],
        env={**os.environ, **service_env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr + completed.stdout
    assert "pong" in completed.stdout


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    documented = {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}
    assert {name.upper() for name in Settings.model_fields} - documented == set()


def test_a_task_stuck_past_its_soft_time_limit_is_interrupted_and_its_write_lands_later(
    client: FlaskClient,
    make_app: Any,
    tenant: TenantKeys,
    start_worker: Any,
    service_env: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    """A worker never waits forever (on a lock here; on a frozen server alike): past
    TASK_SOFT_TIME_LIMIT_SECONDS the task is interrupted and rolls back, and the operation,
    republished, is applied once when the wait is over. The API and this worker use a key
    prefix of their own, so the suite's shared worker does not take the task."""
    prefix = f"{service_env['REDIS_KEY_PREFIX']}time-limit-{uuid.uuid4().hex[:6]}:"
    api = make_app(redis_key_prefix=prefix).test_client()
    stuck = start_worker(REDIS_KEY_PREFIX=prefix, TASK_SOFT_TIME_LIMIT_SECONDS="5")
    award_path = "/api/v1/gamify/points/award"
    body = {"participant_id": "lou", "amount": 1}
    first = api.post(award_path, json=body, headers=tenant.participant())
    assert first.status_code == 200, first.json
    with session_factory.begin() as holder:
        holder.execute(
            select(Participant)
            .where(Participant.tenant_id == tenant.tenant_id, Participant.external_id == "lou")
            .with_for_update()
        ).scalar_one()
        accepted = api.post(
            award_path, json=body, headers={**tenant.participant(), "Prefer": "respond-async"}
        )
        assert accepted.status_code == 202, accepted.json
        wait_until(
            lambda: "SoftTimeLimitExceeded" in stuck.log_path.read_text(),
            30,
            "the stuck task to be interrupted at its soft time limit",
            interval=0.2,
        )
    finished = wait_for_operation(client, tenant.participant(), accepted.json["operation_id"])
    assert finished["status"] == "succeeded", finished
    balance = client.get("/api/v1/gamify/participants/lou/points", headers=tenant.participant())
    assert balance.json["balance"] == 2
