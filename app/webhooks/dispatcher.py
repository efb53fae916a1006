"""One dispatcher run: fan out new events, send due deliveries, record the outcomes.

Only one run is active per database at a time: it holds a session-level PostgreSQL
advisory lock, which the server releases the moment the holder's connection dies, so a
killed worker never leaves the lock behind. A run that finds the lock taken returns at
once; the holder already picks up everything due. One active run keeps the other worker
processes free for claims, and its thread pool is what makes it fast.

The run is a pipeline, not rounds: sends happen on a thread pool while the run records
finished attempts and claims more, so a slow receiver only ever holds its own
`max_in_flight_per_endpoint` threads and the others keep flowing.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.metrics import webhook_attempt_duration, webhook_attempts
from app.webhooks.dispatch import (
    Attempt,
    ClaimedDelivery,
    RetryPolicy,
    claim_due_deliveries,
    fan_out_events,
    record_attempts,
)
from app.webhooks.payloads import BLOCKS, blocks_body, encode_body, standard_body
from app.webhooks.secret_box import SecretBox
from app.webhooks.signing import signature_header
from app.webhooks.transport import SendResult, WebhookTransport

log = logging.getLogger(__name__)

# "REWHDISP": any constant works; it only has to be the same in every process.
DISPATCHER_LOCK_KEY = 0x5245574844495350
DISPATCHER_APPLICATION_NAME = "rewards-webhook-dispatcher"
# How long to wait for a send to finish before looking for more work anyway.
POLL_SECONDS = 0.05
# New events are looked for at least this often while sends are in flight (at once when
# the last look found some, or when nothing is in flight).
FAN_OUT_INTERVAL_SECONDS = 0.05
# Extra lease beyond the request timeout: the time to record an outcome after the send.
LEASE_MARGIN_SECONDS = 5.0


@dataclass
class DispatchStats:
    ran: bool = False  # False: another run held the lock
    events: int = 0
    attempts: int = 0
    succeeded: int = 0
    failed_attempts: int = 0
    seconds: float = 0.0
    out_of_time: bool = False  # stopped by the budget, perhaps with work left


def event_body(delivery: ClaimedDelivery) -> bytes:
    """The payload in the endpoint's format (app.webhooks.payloads), read when the delivery
    is claimed: the same on every attempt unless the endpoint's format is switched."""
    if delivery.payload_format == BLOCKS:
        return encode_body(
            blocks_body(
                delivery.event_id,
                delivery.event_type,
                delivery.event_created_at,
                delivery.payload,
            )
        )
    return encode_body(
        standard_body(delivery.event_type, delivery.event_created_at, delivery.payload)
    )


def send_delivery(transport: WebhookTransport, delivery: ClaimedDelivery) -> SendResult:
    """One attempt. The webhook-id is the event id on every attempt and every endpoint,
    so receivers deduplicate on it; the timestamp is the attempt's, as the spec wants."""
    started = time.perf_counter()
    if not delivery.signing_secrets:
        # Sealed with a key SECRET_KEY no longer lists (logged when claimed): the attempt
        # fails and is retried on schedule, and the other endpoints' deliveries go on.
        result = SendResult(error="signing secret unavailable (SECRET_KEY)")
    else:
        try:
            body = event_body(delivery)
            message_id = str(delivery.event_id)
            timestamp = int(time.time())
            headers = {
                "webhook-id": message_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": signature_header(
                    delivery.signing_secrets, message_id, timestamp, body
                ),
            }
            result = transport.send(delivery.url, headers, body)
        # A bug here (or a corrupt stored secret) must fail this attempt, not the run: an
        # exception would end the dispatcher's run, and every endpoint would wait.
        except Exception:
            log.exception("webhook delivery %s: unexpected error while sending", delivery.id)
            result = SendResult(error="internal error while sending")
    webhook_attempt_duration.observe(time.perf_counter() - started)
    webhook_attempts.labels("delivered" if result.succeeded else "failed").inc()
    return result


class WebhookDispatcher:
    def __init__(
        self,
        *,
        engine: Engine,
        session_factory: sessionmaker[Session],
        transport: WebhookTransport,
        executor: ThreadPoolExecutor,
        threads: int,
        policy: RetryPolicy,
        max_in_flight_per_endpoint: int,
        timeout_seconds: float,
        secret_box: SecretBox,
    ) -> None:
        self._engine = engine
        self._session_factory = session_factory
        self._transport = transport
        self._executor = executor
        self._threads = threads
        self._policy = policy
        self._max_in_flight = max_in_flight_per_endpoint
        self._lease = timedelta(seconds=timeout_seconds + LEASE_MARGIN_SECONDS)
        self._secret_box = secret_box

    def run(self, budget_seconds: float) -> DispatchStats:
        """Work until nothing is due or `budget_seconds` have passed (then finish the sends
        in flight). Returns what was done."""
        stats = DispatchStats()
        started = time.monotonic()
        with self._engine.connect() as lock_connection:
            acquired = lock_connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": DISPATCHER_LOCK_KEY}
            ).scalar_one()
            if not acquired:
                lock_connection.rollback()
                return stats
            try:
                # Names the holder in pg_stat_activity: which process is dispatching.
                lock_connection.execute(
                    text("SELECT set_config('application_name', :name, false)"),
                    {"name": f"{DISPATCHER_APPLICATION_NAME} pid={os.getpid()}"},
                )
                lock_connection.commit()
                stats.ran = True
                self._pipeline(started + budget_seconds, stats)
            finally:
                self._release(lock_connection)
        stats.seconds = time.monotonic() - started
        return stats

    @staticmethod
    def _release(lock_connection: Connection) -> None:
        try:
            lock_connection.rollback()
            lock_connection.execute(
                text("SELECT pg_advisory_unlock(:key)"), {"key": DISPATCHER_LOCK_KEY}
            )
            lock_connection.execute(text("RESET application_name"))
            lock_connection.commit()
        except Exception:
            # A connection that cannot unlock must not go back to the pool holding the lock.
            log.warning("webhook dispatcher: could not release its lock; dropping connection")
            lock_connection.invalidate()

    def _pipeline(self, deadline: float, stats: DispatchStats) -> None:
        in_flight: dict[Future[SendResult], tuple[ClaimedDelivery, datetime]] = {}
        next_fan_out = 0.0
        while True:
            accepting = time.monotonic() < deadline
            finished = [future for future in in_flight if future.done()]
            attempts = [
                Attempt(delivery, future.result(), attempted_at)
                for future in finished
                for delivery, attempted_at in [in_flight.pop(future)]
            ]
            claimed: list[ClaimedDelivery] = []
            new_events = 0
            now = utcnow()
            with self._session_factory.begin() as session:
                record_attempts(session, attempts, self._policy, now)
                if accepting and (not in_flight or time.monotonic() >= next_fan_out):
                    new_events = fan_out_events(session, now).events
                    if not new_events:
                        next_fan_out = time.monotonic() + FAN_OUT_INTERVAL_SECONDS
                if accepting:
                    claimed = claim_due_deliveries(
                        session,
                        now,
                        limit=self._threads - len(in_flight),
                        max_in_flight_per_endpoint=self._max_in_flight,
                        lease=self._lease,
                        secret_box=self._secret_box,
                    )
            self._count(stats, attempts, new_events)
            for delivery in claimed:
                future = self._executor.submit(send_delivery, self._transport, delivery)
                in_flight[future] = (delivery, now)
            if not in_flight:
                if not accepting:
                    stats.out_of_time = True
                    return
                if not claimed and not new_events:
                    return
                continue
            wait(list(in_flight), timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)

    @staticmethod
    def _count(stats: DispatchStats, attempts: list[Attempt], new_events: int) -> None:
        stats.events += new_events
        stats.attempts += len(attempts)
        for attempt in attempts:
            if attempt.result.succeeded:
                stats.succeeded += 1
            else:
                stats.failed_attempts += 1
