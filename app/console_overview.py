"""What the console's overview shows, read from what the database already records.

One statement per figure, each scoped to one tenant and environment and answered from an
index the service keeps for its own work (no index was added for the console: every
index on operations or outbox_events costs the write path an insertion per row):
- writes: operations by accepted time, over `ix_operations_finished_at` (finished ones)
  and `ix_operations_unfinished` (the rest); retention keeps them IDEMPOTENCY_RETENTION_HOURS
  (at least 24), so a day is always there;
- the outbox backlog: `ix_outbox_events_undispatched`;
- failing webhook endpoints: the tenant's endpoints, and their deliveries by
  `ix_webhook_deliveries_endpoint_pending` and `ix_webhook_deliveries_endpoint_created`;
- low stock: the reward rows' own counters (no code is counted).

Time comes from the caller (`now`, the one clock) rather than the database's now(), so a
test can place rows at known ages.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, literal, or_, select, text
from sqlalchemy.orm import Session

from app.models import Reward
from app.rewards.catalog import AVAILABLE_UNITS

# An operation's outcome, as the rewards_operations metric counts it (app.metrics
# .count_finished: refused is a rule's 4xx, failed a 5xx or none), and "pending" while
# no worker has answered it.
OUTCOMES = ("succeeded", "refused", "failed", "pending")

# Rows of operations accepted in [since, until): finished ones through the finished_at
# index (an operation finishes after it is accepted), the others through the partial
# index of unfinished ones; bucketed by accepted time from `since`.
#
# The 202 figures. async_requested (set by the INSERT that records the write, see
# app.operations.Write) is true when the request asked `Prefer: respond-async` (answered
# 202 at once), false when it waited for the answer, null for writes no request waits on
# (bulk jobs, generations, writes a worker records). A waiting request re-reads its
# operation once SYNC_WAIT_TIMEOUT_SECONDS have passed since it was recorded and answers
# 202 if it has not finished: so a waited write was answered 202 exactly when it finished
# later than `wait` after created_at (or has not yet, its wait being over). finished_at is
# the worker's clock when it decided the answer, a few milliseconds before its commit:
# that is the precision of the figure, and nothing has to be written on the way to know it.
_WRITE_COUNTS = text(
    """
    WITH recent AS (
        SELECT kind, status, http_status, created_at, finished_at, async_requested
        FROM operations
        WHERE status IN ('succeeded', 'failed') AND finished_at >= :since
          AND tenant_id = :tenant_id AND env = :env
          AND created_at >= :since AND created_at < :until
        UNION ALL
        SELECT kind, status, http_status, created_at, finished_at, async_requested
        FROM operations
        WHERE status IN ('queued', 'processing')
          AND tenant_id = :tenant_id AND env = :env
          AND created_at >= :since AND created_at < :until
    )
    SELECT date_bin(:bucket, created_at, :since) AS bucket_start,
           kind,
           CASE WHEN status = 'succeeded' THEN 'succeeded'
                WHEN status = 'failed' AND http_status < 500 THEN 'refused'
                WHEN status = 'failed' THEN 'failed'
                ELSE 'pending' END AS outcome,
           count(*) AS writes,
           count(*) FILTER (WHERE async_requested) AS answered_async,
           count(*) FILTER (
               WHERE NOT async_requested AND created_at + :wait <= :now
                 AND (finished_at IS NULL OR finished_at > created_at + :wait)
           ) AS answered_late,
           -- Writes whose request has had its answer (a waiting one has not yet).
           count(*) FILTER (
               WHERE async_requested
                  OR (NOT async_requested
                      AND (finished_at IS NOT NULL OR created_at + :wait <= :now))
           ) AS answered_by_request
    FROM recent
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    """
)


@dataclass(frozen=True)
class WriteCount:
    """Writes of one kind and outcome accepted in one bucket."""

    bucket_start: datetime
    kind: str
    outcome: str
    writes: int
    # Of those, the ones whose request was answered 202: because it asked to be
    # (Prefer: respond-async), or because its wait for the answer ran out.
    answered_async: int
    answered_late: int
    # The ones a request was answered for, 202 or not (the 202 share's denominator).
    answered_by_request: int


@dataclass(frozen=True)
class WriteTraffic:
    """Writes accepted in [since, until) in buckets of `bucket` from `since`."""

    since: datetime
    until: datetime
    bucket: timedelta
    counts: list[WriteCount]

    @property
    def bucket_starts(self) -> list[datetime]:
        starts = []
        start = self.since
        while start < self.until:
            starts.append(start)
            start += self.bucket
        return starts

    def per_bucket(self, counts: Iterable[WriteCount]) -> list[int]:
        """Writes of `counts` in each bucket, in bucket order (0 where there are none)."""
        index = {start: position for position, start in enumerate(self.bucket_starts)}
        totals = [0] * len(index)
        for count in counts:
            totals[index[count.bucket_start]] += count.writes
        return totals

    def by_outcome(self) -> dict[str, list[int]]:
        """Writes per bucket for each outcome, in OUTCOMES order."""
        return {
            outcome: self.per_bucket(c for c in self.counts if c.outcome == outcome)
            for outcome in OUTCOMES
        }

    def kinds(self) -> list[str]:
        """The kinds written, most written first."""
        totals: dict[str, int] = {}
        for count in self.counts:
            totals[count.kind] = totals.get(count.kind, 0) + count.writes
        return sorted(totals, key=lambda kind: (-totals[kind], kind))

    def by_kind(self) -> dict[str, list[int]]:
        """Writes per bucket for each kind, most written first."""
        return {
            kind: self.per_bucket(c for c in self.counts if c.kind == kind) for kind in self.kinds()
        }

    def totals_by_kind(self) -> dict[str, dict[str, int]]:
        """For each kind (most written first), its writes in the window by outcome."""
        totals = {kind: dict.fromkeys(OUTCOMES, 0) for kind in self.kinds()}
        for count in self.counts:
            totals[count.kind][count.outcome] += count.writes
        return totals

    @property
    def total(self) -> int:
        return sum(count.writes for count in self.counts)

    def fallback(self) -> FallbackShare:
        return FallbackShare.of(self.counts)

    def fallback_per_bucket(self) -> list[FallbackShare]:
        starts = self.bucket_starts
        return [
            FallbackShare.of(c for c in self.counts if c.bucket_start == start) for start in starts
        ]


@dataclass(frozen=True)
class FallbackShare:
    """How many requests that recorded a write were answered 202 rather than with its
    answer, and why."""

    answered_async: int  # asked for it: Prefer: respond-async
    answered_late: int  # the sync wait ran out
    answered_by_request: int

    @classmethod
    def of(cls, counts: Iterable[WriteCount]) -> FallbackShare:
        answered_async = answered_late = answered_by_request = 0
        for count in counts:
            answered_async += count.answered_async
            answered_late += count.answered_late
            answered_by_request += count.answered_by_request
        return cls(answered_async, answered_late, answered_by_request)

    @property
    def answered_202(self) -> int:
        return self.answered_async + self.answered_late

    @property
    def share(self) -> float | None:
        """The fraction answered 202; None when no request was answered."""
        if not self.answered_by_request:
            return None
        return self.answered_202 / self.answered_by_request


def write_traffic(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    *,
    now: datetime,
    window: timedelta,
    bucket: timedelta,
    sync_wait: timedelta,
) -> WriteTraffic:
    """Writes accepted over the `window` through the bucket holding `now`, per bucket,
    kind and outcome, with the requests answered 202 (`sync_wait`: the setting
    SYNC_WAIT_TIMEOUT_SECONDS). Buckets are aligned on whole multiples of `bucket` (UTC)."""
    epoch = datetime(2000, 1, 1, tzinfo=now.tzinfo)
    until = epoch + ((now - epoch) // bucket + 1) * bucket
    since = until - window
    rows = session.execute(
        _WRITE_COUNTS,
        {
            "tenant_id": tenant_id,
            "env": env,
            "since": since,
            "until": until,
            "bucket": bucket,
            "wait": sync_wait,
            "now": now,
        },
    )
    counts = [
        WriteCount(
            bucket_start=row.bucket_start,
            kind=row.kind,
            outcome=row.outcome,
            writes=row.writes,
            answered_async=row.answered_async,
            answered_late=row.answered_late,
            answered_by_request=row.answered_by_request,
        )
        for row in rows
    ]
    return WriteTraffic(since, until, bucket, counts)


@dataclass(frozen=True)
class OutboxBacklog:
    events: int  # recorded and not yet dispatched to webhooks
    oldest_created_at: datetime | None

    def oldest_age(self, now: datetime) -> timedelta | None:
        if self.oldest_created_at is None:
            return None
        return max(now - self.oldest_created_at, timedelta(0))


_OUTBOX_BACKLOG = text(
    """
    SELECT count(*) AS events, min(created_at) AS oldest_created_at
    FROM outbox_events
    WHERE dispatched_at IS NULL AND tenant_id = :tenant_id AND env = :env
    """
)


def outbox_backlog(session: Session, tenant_id: uuid.UUID, env: str) -> OutboxBacklog:
    row = session.execute(_OUTBOX_BACKLOG, {"tenant_id": tenant_id, "env": env}).one()
    return OutboxBacklog(row.events, row.oldest_created_at)


@dataclass(frozen=True)
class FailingEndpoint:
    id: uuid.UUID
    url: str
    enabled: bool
    disabled_reason: str | None  # "failing" or "gone" when the dispatcher gave up on it
    failing_since: datetime | None  # start of its current run of failed attempts
    retrying: int  # deliveries waiting for their next attempt after a failed one
    next_attempt_at: datetime | None
    failed_recently: int  # deliveries created since `since` that failed for good
    last_error: str | None
    last_response_status: int | None
    last_attempt_at: datetime | None


# An endpoint is failing when its last attempts failed (failing_since), when the
# dispatcher disabled it (410 Gone, or failing for WEBHOOK_DISABLE_AFTER_FAILING_SECONDS),
# or when deliveries of the window failed for good. Deliveries never attempted (fanned
# out to an endpoint disabled by hand) are not failures of the endpoint. The last failed
# attempt is looked for among the deliveries created in the window, newest first.
_FAILING_ENDPOINTS = text(
    """
    SELECT e.id, e.url, e.enabled, e.disabled_reason, e.failing_since,
           retrying.deliveries AS retrying, retrying.next_attempt_at,
           failed.deliveries AS failed_recently,
           last_failure.last_error, last_failure.last_response_status,
           last_failure.last_attempt_at
    FROM webhook_endpoints e
    CROSS JOIN LATERAL (
        SELECT count(*) AS deliveries, min(d.next_attempt_at) AS next_attempt_at
        FROM webhook_deliveries d
        WHERE d.endpoint_id = e.id AND d.status = 'pending' AND d.attempts > 0
    ) AS retrying
    CROSS JOIN LATERAL (
        SELECT count(*) AS deliveries
        FROM webhook_deliveries d
        WHERE d.endpoint_id = e.id AND d.created_at >= :since
          AND d.status = 'failed' AND d.attempts > 0
    ) AS failed
    LEFT JOIN LATERAL (
        SELECT d.last_error, d.last_response_status, d.last_attempt_at
        FROM webhook_deliveries d
        WHERE d.endpoint_id = e.id AND d.created_at >= :since
          AND d.status <> 'succeeded' AND d.attempts > 0
        ORDER BY d.created_at DESC
        LIMIT 1
    ) AS last_failure ON true
    WHERE e.tenant_id = :tenant_id AND e.env = :env
      AND (e.failing_since IS NOT NULL
           OR e.disabled_reason IN ('failing', 'gone')
           OR retrying.deliveries > 0
           OR failed.deliveries > 0)
    ORDER BY e.enabled, e.failing_since NULLS LAST, e.url, e.id
    LIMIT :limit
    """
)


def failing_endpoints(
    session: Session, tenant_id: uuid.UUID, env: str, *, since: datetime, limit: int = 50
) -> list[FailingEndpoint]:
    """Endpoints failing now or since `since`: disabled ones first, then the longest
    failing."""
    rows = session.execute(
        _FAILING_ENDPOINTS, {"tenant_id": tenant_id, "env": env, "since": since, "limit": limit}
    )
    return [FailingEndpoint(**row._mapping) for row in rows]


@dataclass(frozen=True)
class LowStockReward:
    id: uuid.UUID
    name: str
    lookup_code: str
    type: str
    available: int  # units a claim can still take (app.rewards.catalog.available_codes)


def low_stock_rewards(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    *,
    threshold: int,
    now: datetime,
    limit: int = 50,
) -> list[LowStockReward]:
    """Active, unexpired rewards with fewer than `threshold` units left, fewest first
    (rewards without a limit never are)."""
    available = AVAILABLE_UNITS.label("available")
    stocked = (
        select(Reward.id, Reward.name, Reward.lookup_code, Reward.type, available)
        .where(
            Reward.tenant_id == tenant_id,
            Reward.env == env,
            Reward.is_active.is_(True),
            or_(Reward.expires_at.is_(None), Reward.expires_at > now),
        )
        .subquery()
    )
    rows = session.execute(
        select(stocked)
        .where(stocked.c.available < literal(threshold))
        .order_by(stocked.c.available, func.lower(stocked.c.name), stocked.c.id)
        .limit(limit)
    )
    return [LowStockReward(**row._mapping) for row in rows]


@dataclass(frozen=True)
class Overview:
    """What the console's overview shows of now, read at `now`: the last hour's writes
    and the levels (backlog, failing endpoints, stock)."""

    now: datetime
    last_hour: WriteTraffic  # per minute
    outbox: OutboxBacklog
    failing_endpoints: list[FailingEndpoint]
    low_stock: list[LowStockReward]
    low_stock_threshold: int


def read_overview(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    *,
    now: datetime,
    sync_wait: timedelta,
    low_stock_threshold: int,
) -> Overview:
    """Four statements, one per figure or list (failing endpoints: over the last day)."""
    return Overview(
        now=now,
        last_hour=write_traffic(
            session,
            tenant_id,
            env,
            now=now,
            window=timedelta(hours=1),
            bucket=timedelta(minutes=1),
            sync_wait=sync_wait,
        ),
        outbox=outbox_backlog(session, tenant_id, env),
        failing_endpoints=failing_endpoints(session, tenant_id, env, since=now - timedelta(days=1)),
        low_stock=low_stock_rewards(
            session, tenant_id, env, threshold=low_stock_threshold, now=now
        ),
        low_stock_threshold=low_stock_threshold,
    )


def read_last_day(
    session: Session, tenant_id: uuid.UUID, env: str, *, now: datetime, sync_wait: timedelta
) -> WriteTraffic:
    """The last 24 hours' writes per quarter hour.

    Its own read, for the page to ask for less often than the rest: it reads every write
    of the tenant's day (measured here: 0.45-0.8 s for a tenant with 100,000 writes a day
    among 1,000,000), where the last hour reads a 24th of that.
    """
    return write_traffic(
        session,
        tenant_id,
        env,
        now=now,
        window=timedelta(days=1),
        bucket=timedelta(minutes=15),
        sync_wait=sync_wait,
    )
