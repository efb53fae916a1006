"""One typed settings object, read from the environment (12-factor)."""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

STANDALONE_STATE_FILE = "standalone.json"
# Where prometheus-client's multiprocess mode keeps samples (app/metrics.py, app/cli.py).
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# Delays before the 2nd, 3rd, ... attempt of a webhook delivery: 5 s, 5 min, 30 min, 2 h,
# 5 h, 10 h, 10 h (eight attempts over about 28 hours, as Standard Webhooks senders do).
DEFAULT_WEBHOOK_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class SettingsError(Exception):
    """A setting is missing or invalid; the message is one line naming the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db"
    )
    redis_url: str | None = Field(default=None, description="Redis for signals and rate limits")
    celery_broker_url: str | None = Field(default=None, description="defaults to REDIS_URL")
    # Every Redis key this service writes (ours and the broker's) starts with this, so two
    # deployments or two test runs can share one Redis without seeing each other.
    redis_key_prefix: str = "rewards:"
    rewards_data_dir: Path = Path(".rewards-data")

    auth_cache_ttl_seconds: float = Field(default=10.0, ge=0)
    sync_wait_timeout_seconds: float = Field(default=5.0, ge=0, le=60)
    operation_stall_seconds: float = Field(default=30.0, gt=0)
    # Runs of one operation that may raise an unexpected error (a bug, not a refusal)
    # before it is marked failed instead of being republished forever.
    operation_max_attempts: int = Field(default=5, ge=1, le=100)
    sweep_interval_seconds: float = Field(default=10.0, gt=0)
    # The lot sweeps (expiry, release) run as this many tasks side by side, each over its
    # share of the participants: one per worker process keeps them all busy.
    lot_sweep_shards: int = Field(default=2, ge=1, le=64)
    idempotency_retention_hours: float = Field(default=24.0, ge=24)
    # Purged past these (app/retention.py): finished webhook deliveries, dispatched events
    # (kept while a delivery of theirs is), the admin audit log.
    delivery_retention_days: float = Field(default=30.0, gt=0)
    outbox_retention_days: float = Field(default=7.0, gt=0)
    audit_retention_days: float = Field(default=365.0, gt=0)
    # Web processes under `rewards serve` when --workers is not given (the name Procfile
    # hosts and gunicorn itself use).
    web_concurrency: int = Field(default=2, ge=1, le=64)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_connect_timeout_seconds: int = Field(default=5, ge=1)
    db_statement_timeout_ms: int = Field(default=30_000, ge=100)
    # Under `rewards serve`, a request still unanswered after this is cut short with 503:
    # a PostgreSQL or Redis that stopped answering (a frozen host) cannot hold it forever.
    request_timeout_seconds: float = Field(default=30.0, ge=1, le=600)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # json: one JSON object per line (time, level, logger, message, request_id, and the
    # access log's method, path, status, duration_ms), for a log pipeline.
    log_format: Literal["plain", "json"] = "plain"
    # One line per HTTP request (logger rewards.access, at INFO).
    access_log: bool = True
    # Seal webhook signing secrets at rest (app/webhooks/secret_box.py): keys, newest
    # first, comma-separated; or a file of them, one per line.
    secret_key: SecretStr | None = Field(default=None, repr=False)
    secret_key_file: Path | None = None
    # The admin console (api/console): how long a sign-in lasts, and the key its cookies
    # are signed with (unset: derived from SECRET_KEY's newest key; neither set: the
    # console does not open sessions).
    console_session_seconds: int = Field(default=8 * 3600, ge=60, le=30 * 24 * 3600)
    console_secret_key: SecretStr | None = Field(default=None, repr=False)
    # The console's overview lists active rewards with fewer units left than this.
    console_low_stock_threshold: int = Field(default=10, ge=0, le=1_000_000)
    # GET /metrics answers only with `Authorization: Bearer <this>`; unset, it is not served.
    metrics_token: str | None = Field(default=None, min_length=16)
    # A worker serves its metrics on this port (unset: it does not), on this address.
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    # A task still running after this many seconds is interrupted (its transaction rolls
    # back and its operation runs again later, counted as a failed attempt); 30 s later a
    # process that did not let go is killed. Every task is bounded, even on a frozen server.
    task_soft_time_limit_seconds: float = Field(default=120.0, ge=5, le=3600)
    # Celery task events (task-received/started/succeeded...) for Flower or `celery events`.
    worker_send_task_events: bool = False
    # Per-participant write cap (claims, awards, deductions); a tenant may override it with
    # `rewards tenant limits`. And an overall request cap per API key.
    participant_write_rate: float = Field(default=10.0, gt=0, le=100_000)
    participant_write_burst: int = Field(default=20, ge=1, le=1_000_000)
    key_request_rate: float = Field(default=1000.0, gt=0, le=1_000_000)
    key_request_burst: int = Field(default=2000, ge=1, le=10_000_000)
    # The 23blocks dialect's own caps (its document's rate-limit table), per minute: points
    # operations, badge awards and coupon validations per user, leaderboard reads per key.
    blocks_points_per_minute: int = Field(default=100, ge=1, le=1_000_000)
    blocks_badge_awards_per_minute: int = Field(default=50, ge=1, le=1_000_000)
    blocks_coupon_validations_per_minute: int = Field(default=200, ge=1, le=1_000_000)
    blocks_leaderboard_reads_per_minute: int = Field(default=60, ge=1, le=1_000_000)

    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # NoDecode: the variable is a plain comma list ("5,300,1800"), not JSON.
    webhook_retry_schedule: Annotated[tuple[float, ...], NoDecode] = Field(
        default=DEFAULT_WEBHOOK_RETRY_SCHEDULE,
        description="seconds before each retry of a failed delivery, e.g. 5,300,1800",
    )
    webhook_allow_private: bool = Field(
        default=False, description="allow loopback/private targets (local development, tests)"
    )
    webhook_max_in_flight_per_endpoint: int = Field(default=16, ge=1, le=100)
    webhook_sender_threads: int = Field(default=32, ge=1, le=256)
    webhook_disable_after_failing_seconds: float = Field(default=5 * 24 * 3600.0, gt=0)
    webhook_dispatch_interval_seconds: float = Field(default=1.0, gt=0, le=60)

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level_any_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    def secret_keys(self) -> list[str]:
        """SECRET_KEY's keys, or SECRET_KEY_FILE's, newest first; [] when neither is set."""
        if self.secret_key is not None:
            listed = self.secret_key.get_secret_value().split(",")
        elif self.secret_key_file is not None:
            listed = self.secret_key_file.read_text().splitlines()
        else:
            return []
        return [key.strip() for key in listed if key.strip()]

    @field_validator(
        "metrics_token", "worker_metrics_port", "secret_key", "console_secret_key", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("secret_key_file", mode="before")
    @classmethod
    def _key_file_readable(cls, value: object) -> object:
        if value in (None, ""):
            return None
        try:
            keys = [line for line in Path(str(value)).read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise ValueError(f"cannot read it: {exc.strerror}") from None
        if not keys:
            raise ValueError("it holds no key (one per line, newest first)")
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format_any_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
            raise ValueError("must be a PostgreSQL URL (postgresql+psycopg://...)")
        if value.startswith("postgres://"):
            value = "postgresql://" + value.removeprefix("postgres://")
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _comma_list_of_seconds(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",")]
            if not value.strip() or any(not part for part in parts):
                raise ValueError("must be a comma list of seconds, e.g. 5,300,1800")
            try:
                value = [float(part) for part in parts]
            except ValueError:
                raise ValueError("must be a comma list of seconds, e.g. 5,300,1800") from None
        if isinstance(value, list | tuple) and any(
            not isinstance(delay, int | float) or not delay > 0 or delay == float("inf")
            for delay in value
        ):
            raise ValueError("every delay must be a positive number of seconds")
        return value

    @field_validator("redis_url", "celery_broker_url")
    @classmethod
    def _redis_only(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("redis://", "rediss://", "unix://", "redis+socket://")):
            raise ValueError("must be a Redis URL (redis://host:port/db or unix:///path)")
        return value

    @cached_property
    def standalone_state(self) -> dict[str, str]:
        """URLs published by a running `rewards standalone` in the data directory."""
        path = self.rewards_data_dir / STANDALONE_STATE_FILE
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError):
            return {}

    def require_database_url(self) -> str:
        url = self.database_url or self.standalone_state.get("database_url")
        if not url:
            raise SettingsError(
                "DATABASE_URL is not set and no `rewards standalone` is running in "
                f"REWARDS_DATA_DIR={self.rewards_data_dir}"
            )
        return url

    def require_redis_url(self) -> str:
        url = self.redis_url or self.standalone_state.get("redis_url")
        if not url:
            raise SettingsError(
                "REDIS_URL is not set and no `rewards standalone` is running in "
                f"REWARDS_DATA_DIR={self.rewards_data_dir}"
            )
        return url

    def require_broker_url(self) -> str:
        if self.celery_broker_url:
            return self.celery_broker_url
        url = self.require_redis_url()
        # kombu spells a Redis unix socket redis+socket://; redis-py spells it unix://.
        if url.startswith("unix://"):
            return "redis+socket://" + url.removeprefix("unix://")
        return url


def load_settings(**overrides: object) -> Settings:
    """Read and validate settings; raise SettingsError with one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        variable = str(first["loc"][0]).upper() if first["loc"] else "settings"
        raw = os.environ.get(variable, "")
        shown = f" (got {raw!r})" if raw and "URL" not in variable else ""
        raise SettingsError(f"invalid {variable}{shown}: {first['msg']}") from None
