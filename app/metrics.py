"""Prometheus metrics, in one place: what the web and the workers count, and how they are
exposed.

Under `rewards serve` (gunicorn) and `rewards worker` (Celery prefork) a role runs as
several processes; prometheus-client's multiprocess mode has each write its samples to
files in PROMETHEUS_MULTIPROC_DIR, and one exposition reads them all. The commands set
that directory (one per role, emptied at each start: app/cli.py) before anything imports
prometheus_client, which decides the storage at import. Elsewhere (tests, a shell) the
values live in the process.

Only counters and histograms are counted this way. What is a level rather than a count
(the outbox backlog, queue depths) is read from PostgreSQL and Redis at scrape time
(api/metrics.py), so no process has to keep a gauge true.
"""

from __future__ import annotations

import os
from collections import Counter as CounterOf
from collections.abc import Iterable

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    multiprocess,
)

from app.clock import utcnow
from app.config import MULTIPROC_DIR_VARIABLE
from app.models import Operation, OperationStatus

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
AGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

# --- the web --------------------------------------------------------------------------------

http_requests = Counter(
    "rewards_http_requests",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)
http_request_duration = Histogram(
    "rewards_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
sync_writes_deferred = Counter(
    "rewards_sync_writes_deferred",
    "Sync writes answered 202 because no answer came within SYNC_WAIT_TIMEOUT_SECONDS",
    ["kind"],
)
rate_limited = Counter(
    "rewards_rate_limited",
    "Requests answered 429, by the limit they met (the error code)",
    ["limit"],
)

# --- both -----------------------------------------------------------------------------------

backend_errors = Counter(
    "rewards_backend_errors",
    "Failed calls to PostgreSQL or Redis (a lost connection, a timeout, an outage)",
    ["backend", "role"],
)

# --- the workers ----------------------------------------------------------------------------

operations_finished = Counter(
    "rewards_operations",
    "Operations finished, by kind and outcome (succeeded; refused by a rule, 4xx; failed)",
    ["kind", "outcome"],
)
operation_age = Histogram(
    "rewards_operation_age_seconds",
    "From a write's acceptance to its answer, by kind",
    ["kind"],
    buckets=AGE_BUCKETS,
)
operation_errors = Counter(
    "rewards_operation_errors",
    "Runs of an operation that raised unexpectedly (a bug, not a refusal), counted against "
    "OPERATION_MAX_ATTEMPTS; transient database errors count as backend_errors",
    ["kind"],
)
drain_batch_size = Histogram(
    "rewards_drain_batch_size",
    "Operations run by one drain transaction, by lane (kind or lane name)",
    ["lane"],
    buckets=BATCH_BUCKETS,
)
operations_republished = Counter(
    "rewards_operations_republished",
    "Stalled operations the sweeper published again (a lost message, a dead worker)",
)
rows_purged = Counter(
    "rewards_rows_purged",
    "Rows purged past their retention, by table (app/retention.py)",
    ["table"],
)
webhook_attempts = Counter(
    "rewards_webhook_attempts",
    "Webhook delivery attempts, by outcome (delivered: a 2xx; failed: anything else)",
    ["outcome"],
)
webhook_attempt_duration = Histogram(
    "rewards_webhook_attempt_duration_seconds",
    "Time of one webhook delivery attempt, to an answer or a failure",
    buckets=LATENCY_BUCKETS,
)


def count_finished(operations: Iterable[Operation]) -> None:
    """Count answered operations by kind and outcome, and how long each waited for it."""
    outcomes: CounterOf[tuple[str, str]] = CounterOf()
    now = utcnow()
    for operation in operations:
        if operation.status == OperationStatus.SUCCEEDED.value:
            outcome = "succeeded"
        elif (operation.http_status or 500) < 500:
            outcome = "refused"
        else:
            outcome = "failed"
        outcomes[operation.kind, outcome] += 1
        operation_age.labels(operation.kind).observe((now - operation.created_at).total_seconds())
    for (kind, outcome), count in outcomes.items():
        operations_finished.labels(kind, outcome).inc(count)


def counting_registry() -> CollectorRegistry:
    """What this role's processes counted: all of them in multiprocess mode, else this
    process's own."""
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY
