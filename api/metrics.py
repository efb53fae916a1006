"""`GET /metrics`: Prometheus exposition of what the web processes counted (app/metrics.py)
and of levels read at scrape time: the outbox backlog, unfinished operations, the broker's
queue depths. Behind a bearer token (METRICS_TOKEN); without one set it does not exist.

Not in the OpenAPI document: it is the operator's, not the API clients'.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator

import redis
from flask import Blueprint, Response, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.runtime import ApiRuntime, runtime
from app.errors import DomainError
from app.metrics import backend_errors, counting_registry
from workers.celery_app import ALL_QUEUES

bp = Blueprint("metrics", __name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LEVELS = text(
    """
    SELECT
      (SELECT count(*) FROM outbox_events WHERE dispatched_at IS NULL),
      (SELECT EXTRACT(EPOCH FROM now() - min(created_at)) FROM outbox_events
        WHERE dispatched_at IS NULL),
      (SELECT count(*) FROM operations WHERE status IN ('queued', 'processing')),
      (SELECT EXTRACT(EPOCH FROM now() - min(enqueued_at)) FROM operations
        WHERE status IN ('queued', 'processing'))
    """
)


class LevelsCollector(Collector):
    """Levels read when scraped, so no process has to keep a gauge true."""

    def __init__(self, rt: ApiRuntime) -> None:
        self._rt = rt

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._database_levels()
        yield from self._queue_depths()

    def _database_levels(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self._rt.engine.connect() as connection:
                backlog, oldest_event, unfinished, oldest_operation = connection.execute(
                    _LEVELS
                ).one()
        except SQLAlchemyError:
            backend_errors.labels("postgres", "web").inc()
            return
        yield GaugeMetricFamily(
            "rewards_outbox_backlog", "Events not yet dispatched to webhooks", value=backlog
        )
        yield GaugeMetricFamily(
            "rewards_outbox_oldest_undispatched_age_seconds",
            "Age of the oldest event not yet dispatched (0 when none)",
            value=float(oldest_event or 0),
        )
        yield GaugeMetricFamily(
            "rewards_operations_unfinished", "Accepted writes not answered yet", value=unfinished
        )
        yield GaugeMetricFamily(
            "rewards_operations_oldest_unfinished_age_seconds",
            "Age of the oldest accepted write not answered yet (0 when none)",
            value=float(oldest_operation or 0),
        )

    def _queue_depths(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "rewards_queue_depth", "Tasks waiting in the broker, by queue", labels=["queue"]
        )
        prefix = f"{self._rt.settings.redis_key_prefix}celery:"
        try:
            with self._rt.redis.pipeline(transaction=False) as pipe:
                for queue in ALL_QUEUES:
                    pipe.llen(prefix + queue)
                lengths = pipe.execute()
        except redis.RedisError:
            backend_errors.labels("redis", "web").inc()
            return
        for queue, length in zip(ALL_QUEUES, lengths, strict=True):
            depth.add_metric([queue], length)
        yield depth


@bp.get("/metrics")
def metrics() -> Response:
    rt = runtime()
    token = rt.settings.metrics_token
    if token is None:
        raise DomainError("not_found", "Not found", 404)
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise DomainError("unauthorized", "Metrics need Authorization: Bearer <METRICS_TOKEN>", 401)
    started = time.perf_counter()
    levels = CollectorRegistry()
    levels.register(LevelsCollector(rt))
    body = generate_latest(counting_registry()) + generate_latest(levels)
    body += (
        b"# HELP rewards_metrics_scrape_seconds Time this scrape took to read the levels\n"
        b"# TYPE rewards_metrics_scrape_seconds gauge\n"
        + f"rewards_metrics_scrape_seconds {time.perf_counter() - started:.6f}\n".encode()
    )
    return Response(body, content_type=CONTENT_TYPE)
