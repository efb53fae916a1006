"""`python -m bench.webhooks`: webhook deliveries per second to a local receiver.

A fresh database, one `rewards worker` (prefork, 2 processes, beat on) and a receiver in
its own process (threaded http.server, keep-alive, answers 200 at once). N outbox events
are committed in one transaction; the clock runs from that commit until every delivery
is recorded as succeeded, so it covers fan-out, signing, sending and recording.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import redis
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import Engine

from app.models import OutboxEvent, Tenant, WebhookEndpoint
from app.webhooks.signing import generate_secret
from bench.services import REDIS_URL, Database, free_port


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(port: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), _Ok)
    server.daemon_threads = True
    server.serve_forever()


def wait_for_port(port: int, timeout: float = 10) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"receiver on port {port} did not start")


def receiving_tenant(
    engine: Engine,
    receiver_url: str,
    endpoints: int,
    events: tuple[str, ...] = ("reward.reward_claimed",),
) -> uuid.UUID:
    """A tenant with `endpoints` enabled endpoints at the receiver, subscribed to `events`."""
    tenant_id = uuid.uuid4()
    with engine.begin() as connection:
        connection.execute(insert(Tenant).values(id=tenant_id, name="bench"))
        for _ in range(endpoints):
            connection.execute(
                insert(WebhookEndpoint).values(
                    id=uuid.uuid4(),
                    tenant_id=tenant_id,
                    env="live",
                    url=receiver_url,
                    events=list(events),
                    enabled=True,
                    secret=generate_secret(),
                )
            )
    return tenant_id


def _emit(engine: Engine, tenant_id: uuid.UUID, count: int) -> None:
    rows = [
        {
            "id": uuid.uuid4(),
            "tenant_id": tenant_id,
            "env": "live",
            "type": "reward.reward_claimed",
            "payload": {"claim_id": str(uuid.uuid4()), "participant_id": f"user_{number}"},
        }
        for number in range(count)
    ]
    with engine.begin() as connection:
        connection.execute(insert(OutboxEvent), rows)


def _succeeded(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'")
            ).scalar_one()
        )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=1, help="each gets every event")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    args = parser.parse_args()

    database = Database.create("rewards_bench_webhooks")
    receiver_port = free_port()
    prefix = f"rewards-bench-{secrets.token_hex(4)}:"
    receiver = subprocess.Popen(
        [sys.executable, "-m", "bench.webhooks", "--serve", str(receiver_port)]
    )
    worker: subprocess.Popen[bytes] | None = None
    log_dir = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    try:
        database.migrate()
        wait_for_port(receiver_port)
        engine = create_engine(database.url)
        receiver_url = f"http://127.0.0.1:{receiver_port}/hooks"
        tenant_id = receiving_tenant(engine, receiver_url, args.endpoints)
        env = {
            **os.environ,
            "DATABASE_URL": database.url,
            "REDIS_URL": REDIS_URL,
            "REDIS_KEY_PREFIX": prefix,
            "WEBHOOK_ALLOW_PRIVATE": "true",
            "LOG_LEVEL": "WARNING",
        }
        log = (log_dir / "worker.log").open("w")
        worker = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", f"--concurrency={args.concurrency}"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        time.sleep(3)  # worker start-up is not what is measured
        expected = args.events * args.endpoints
        started = time.monotonic()
        _emit(engine, tenant_id, args.events)
        while (done := _succeeded(engine)) < expected:
            if time.monotonic() - started > 600:
                raise RuntimeError(f"only {done}/{expected} delivered after 600 s; see {log_dir}")
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        with engine.connect() as connection:
            attempts = connection.execute(
                select(text("sum(attempts)")).select_from(text("webhook_deliveries"))
            ).scalar_one()
        print(
            f"{expected} deliveries ({args.events} events x {args.endpoints} endpoint(s)) in "
            f"{elapsed:.2f} s: {expected / elapsed:.0f} deliveries/s "
            f"({attempts} attempts; worker concurrency {args.concurrency})"
        )
        engine.dispose()
    finally:
        if worker is not None:
            os.killpg(worker.pid, 15)
            worker.wait(30)
        receiver.terminate()
        receiver.wait(10)
        redis.Redis.from_url(REDIS_URL).close()
        database.drop()
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
    else:
        sys.exit(main())
