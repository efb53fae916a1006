"""Private servers, the service as real processes, a load generator and the "nothing lost"
checks, for the fault-injection tests (tests/test_faults_*.py).

Every fault test runs its own PostgreSQL and Redis (tests/servers.py), so it can kill and
restart them: the machine's shared servers, which other test runs use at the same time, are
never touched.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from api.points.writes import IDEMPOTENCY_ERRORS
from api.rewards.participant import CLAIM_ERRORS
from app.migrate import upgrade_database
from app.models import Environment
from app.points.kinds import AWARD_BATCH_KIND, AWARD_KIND
from app.rewards.claims import CLAIM_KIND
from app.tenancy import create_api_key, create_tenant
from tests.builders import GAMIFY, wait_until
from tests.conftest import TenantKeys, WorkerProcess
from tests.servers import PrivatePostgres, PrivateRedis
from tests.webhook_receiver import WebhookReceiver, free_port

KEY_PREFIX = "rewards-faults:"
# The client's own read timeout: an answer slower than this counts as a hang.
CLIENT_TIMEOUT_SECONDS = 20.0
# Every answer, 503s included, must come within this (sync writes wait up to 2 s).
ANSWER_BOUND_SECONDS = 8.0
# A client retries a 503 or a dropped connection with the same key for this long at most.
CLIENT_GIVE_UP_SECONDS = 45.0
OPERATION_STALL_SECONDS = 3
SWEEP_INTERVAL_SECONDS = 1
# Stalled -> swept -> republished -> executed: the stall, a sweep interval, and a margin
# for a loaded 2-core machine.
RECOVERY_BOUND_SECONDS = OPERATION_STALL_SECONDS + 2 * SWEEP_INTERVAL_SECONDS + 7

DOCUMENTED_FAILURES = {
    CLAIM_KIND: {code for codes in CLAIM_ERRORS.values() for code in codes},
    AWARD_KIND: {code for codes in IDEMPOTENCY_ERRORS.values() for code in codes},
}


# --- the service as processes ---------------------------------------------------------------


def service_env(database_url: str, redis_url: str, directory: Path) -> dict[str, str]:
    """As conftest.service_env, against the private servers, with a short sync wait."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": "",
        "REDIS_KEY_PREFIX": KEY_PREFIX,
        "REWARDS_DATA_DIR": str(directory / "no-standalone"),
        "SYNC_WAIT_TIMEOUT_SECONDS": "2",
        "SWEEP_INTERVAL_SECONDS": str(SWEEP_INTERVAL_SECONDS),
        "OPERATION_STALL_SECONDS": str(OPERATION_STALL_SECONDS),
        "AUTH_CACHE_TTL_SECONDS": "1",
        "DB_CONNECT_TIMEOUT_SECONDS": "2",
        "PARTICIPANT_WRITE_RATE": "100000",
        "PARTICIPANT_WRITE_BURST": "100000",
        "LOG_LEVEL": "WARNING",
        # Logs reach the files at once, also from a process that is then SIGKILLed.
        "PYTHONUNBUFFERED": "1",
        "WEBHOOK_ALLOW_PRIVATE": "true",
        "WEBHOOK_RETRY_SCHEDULE": "1,1,2",
        "WEBHOOK_TIMEOUT_SECONDS": "3",
    }


class ApiServer:
    """`rewards serve` (gunicorn, gevent processes: one unless told) as a child process."""

    def __init__(self, env: dict[str, str], log_path: Path, processes: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)),
                *("--workers", str(processes)),
            ],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        probe = urllib3.PoolManager(retries=False, timeout=2)

        def live() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"API exited:\n{log_path.read_text()[-3000:]}")
            try:
                return probe.request("GET", f"{self.url}/livez").status == 200
            except urllib3.exceptions.HTTPError:
                return False

        try:
            wait_until(live, 30, "API to answer /livez")
        except BaseException:
            self.stop()
            raise
        finally:
            probe.clear()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()

    def log_text(self) -> str:
        return self.log_path.read_text()


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no HTTP answer (connection dropped, timed out)
    body: Any
    retry_after: str | None
    seconds: float
    error: str | None = None

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status == 503


class Client:
    """A thread-safe HTTP client that turns every outcome into an Answer (no retries)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._pool = urllib3.PoolManager(
            maxsize=64,
            retries=False,
            timeout=urllib3.Timeout(connect=2, read=CLIENT_TIMEOUT_SECONDS),
        )

    def request(
        self,
        method: str,
        path: str,
        key: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        all_headers = {"X-API-Key": key, **(headers or {})}
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        started = time.monotonic()
        try:
            response = self._pool.request(
                method,
                f"{self.base_url}{GAMIFY}{path}",
                body=json.dumps(body).encode() if body is not None else None,
                headers=all_headers,
            )
        except urllib3.exceptions.HTTPError as exc:
            return Answer(None, None, None, time.monotonic() - started, type(exc).__name__)
        try:
            parsed = json.loads(response.data) if response.data else None
        except ValueError:
            parsed = response.data.decode(errors="replace")
        return Answer(
            response.status, parsed, response.headers.get("Retry-After"), time.monotonic() - started
        )

    def close(self) -> None:
        self._pool.clear()

    def ok(self, method: str, path: str, key: str, body: dict[str, Any] | None = None) -> Any:
        answer = self.request(method, path, key, body)
        assert answer.status in (200, 201), answer
        return answer.body


class Worker(WorkerProcess):
    """conftest's WorkerProcess, optionally without the embedded beat (the sweeper's clock),
    so that every child of it is a pool process; and supervised as in production.

    compose runs the worker with `restart: unless-stopped` (as any process manager would):
    Celery's worker can exit on its own when the broker vanishes mid-restore (kombu's
    "Unrecoverable error ... 'NoneType' object has no attribute 'hostname'"), and nothing
    is lost by that, but nothing runs until it is restarted. So this restarts it too,
    unless the test stopped or killed it.
    """

    def __init__(
        self, env: dict[str, str], log_path: Path, concurrency: int = 2, beat: bool = True
    ) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        self._command = [
            *(sys.executable, "-m", "app.cli", "worker", f"--concurrency={concurrency}"),
            *(() if beat else ("--no-beat",)),
        ]
        self._env = {**os.environ, **env, "LOG_LEVEL": "INFO"}
        self._lifecycle = threading.Lock()
        self._ended_by_test = False
        self.restarts = 0
        self.process = self._spawn()
        self.wait_ready()
        threading.Thread(target=self._restart_when_it_exits, daemon=True).start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self._command,
            env=self._env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _restart_when_it_exits(self) -> None:
        while True:
            with self._lifecycle:
                process = self.process
            process.wait()  # woken by its exit, however it came
            with self._lifecycle:
                if self._ended_by_test:
                    return
                self.restarts += 1
                self.process = self._spawn()

    def stop(self) -> None:
        with self._lifecycle:
            self._ended_by_test = True
        super().stop()

    def kill(self) -> None:
        with self._lifecycle:
            self._ended_by_test = True
        super().kill()

    def log_text(self) -> str:
        return self.log_path.read_text()


@dataclass
class FaultStack:
    """Private PostgreSQL and Redis, the API, workers, a tenant and a webhook receiver."""

    directory: Path
    postgres: PrivatePostgres
    redis: PrivateRedis
    env: dict[str, str]
    engine: Engine
    api: ApiServer
    client: Client
    tenant: TenantKeys
    receiver: WebhookReceiver
    workers: list[Worker] = field(default_factory=list)

    def start_worker(self, concurrency: int = 2, beat: bool = True) -> Worker:
        worker = Worker(
            self.env, self.directory / f"worker-{len(self.workers)}.log", concurrency, beat
        )
        self.workers.append(worker)
        return worker


@contextmanager
def fault_stack(directory: Path, api_env: dict[str, str] | None = None) -> Iterator[FaultStack]:
    """Everything a fault test needs, stopped (servers included) however the test ends.

    `api_env` overrides the API's environment only (e.g. a dead broker for the API).
    """
    with ExitStack() as cleanup:
        redis_server = PrivateRedis(directory)
        cleanup.callback(redis_server.kill)
        redis_server.start()
        postgres = PrivatePostgres()
        cleanup.callback(postgres.close)
        upgrade_database(postgres.url)
        env = service_env(postgres.url, redis_server.url, directory)
        engine = create_engine(postgres.url, pool_size=2, pool_pre_ping=True)
        cleanup.callback(engine.dispose)
        tenant = _create_tenant(engine)
        receiver = WebhookReceiver().start()
        cleanup.callback(receiver.stop)
        api = ApiServer({**env, **(api_env or {})}, directory / "api.log")
        cleanup.callback(api.stop)
        client = Client(api.url)
        cleanup.callback(client.close)
        stack = FaultStack(
            directory=directory,
            postgres=postgres,
            redis=redis_server,
            env=env,
            engine=engine,
            api=api,
            client=client,
            tenant=tenant,
            receiver=receiver,
        )

        def stop_workers() -> None:
            for worker in stack.workers:
                if worker.process.poll() is None:
                    worker.stop()

        cleanup.callback(stop_workers)
        yield stack


def _create_tenant(engine: Engine) -> TenantKeys:
    from sqlalchemy.orm import Session

    with Session(engine) as session, session.begin():
        tenant_id = create_tenant(session, "Faults").id
        keys = [
            create_api_key(session, tenant_id, env, scopes).key
            for env, scopes in (
                (Environment.LIVE, ["admin"]),
                (Environment.LIVE, []),
                (Environment.TEST, ["gamify:admin"]),
                (Environment.TEST, []),
            )
        ]
    return TenantKeys(tenant_id, *keys)


# --- the workload ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Catalog:
    """The rewards the load claims, and who it claims them for."""

    limited_codes: str  # 40 pre-loaded codes, no more: claims past them must be refused
    paid: str  # costs points (generated codes): refused while the balance is short
    capped: str  # total_inventory 30 (generated codes)
    participants: tuple[str, ...]
    limited_codes_count: int = 40
    capped_inventory: int = 30


def set_up_catalog(stack: FaultStack, participants: int = 12) -> Catalog:
    admin, client = stack.tenant.admin_key, stack.client
    limited = client.ok(
        "POST", "/admin/rewards", admin, {"name": "Coupon", "type": "coupon"} | _many_claims()
    )
    codes = [f"FAULT-{number:03d}" for number in range(40)]
    client.ok("POST", f"/admin/rewards/{limited['id']}/codes", admin, {"codes": codes})
    paid = client.ok(
        "POST",
        "/admin/rewards",
        admin,
        {"name": "Voucher", "type": "voucher", "points_cost": 25} | _many_claims(),
    )
    capped = client.ok(
        "POST",
        "/admin/rewards",
        admin,
        {"name": "Gift", "type": "digital", "total_inventory": 30} | _many_claims(),
    )
    client.ok(
        "POST",
        "/admin/webhooks",
        admin,
        {"url": stack.receiver.url, "events": ["reward.reward_claimed"]},
    )
    return Catalog(
        limited["id"], paid["id"], capped["id"], tuple(f"fan-{n}" for n in range(participants))
    )


def _many_claims() -> dict[str, Any]:
    return {"max_claims_per_user": 1000}


@dataclass
class Intent:
    """One logical client request, retried with the same Idempotency-Key until answered."""

    number: int
    kind: str
    path: str
    body: dict[str, Any]
    idempotency_key: str
    prefer_async: bool
    answers: list[Answer] = field(default_factory=list)
    first_sent: float = 0.0

    @property
    def final(self) -> Answer | None:
        if self.answers and not self.answers[-1].retryable:
            return self.answers[-1]
        return None

    def headers(self) -> dict[str, str]:
        headers = {"Idempotency-Key": self.idempotency_key}
        if self.prefer_async:
            headers["Prefer"] = "respond-async"
        return headers


def mixed_intents(catalog: Catalog, seed: int = 7) -> Callable[[int], Intent]:
    """Claims of the three rewards (some paying points) and awards; 80% respond-async."""
    run = uuid.uuid4().hex[:8]

    def make(number: int) -> Intent:
        chooser = random.Random(seed * 1_000_003 + number)
        participant = chooser.choice(catalog.participants)
        prefer_async = chooser.random() < 0.8
        key = f"faults-{run}-{number}"
        if chooser.random() < 0.3:
            body: dict[str, Any] = {
                "participant_id": participant,
                "amount": chooser.choice((10, 20, 30)),
                "reason": "load",
            }
            return Intent(number, AWARD_KIND, "/points/award", body, key, prefer_async)
        reward = chooser.choice((catalog.limited_codes, catalog.paid, catalog.capped))
        body = {
            "participant_id": participant,
            "points_deduction": reward == catalog.paid,
        }
        return Intent(number, CLAIM_KIND, f"/rewards/{reward}/claim", body, key, prefer_async)

    return make


class LoadGenerator:
    """Keeps submitting writes from a thread pool at a steady rate until stopped.

    Like a real client, a 503 or a dropped connection is retried (after a short pause) with
    the SAME Idempotency-Key, for up to CLIENT_GIVE_UP_SECONDS.
    """

    def __init__(
        self,
        client: Client,
        key: str,
        make_intent: Callable[[int], Intent],
        threads: int = 8,
        per_second: float = 50.0,
    ) -> None:
        self._client = client
        self._key = key
        self._make_intent = make_intent
        self._per_second = per_second
        self._numbers = itertools.count()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.intents: list[Intent] = []
        self._threads = [
            threading.Thread(target=self._run, name=f"load-{n}", daemon=True)
            for n in range(threads)
        ]
        self._started = 0.0

    def __enter__(self) -> LoadGenerator:
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> list[Intent]:
        self._stopping.set()
        for thread in self._threads:
            thread.join(CLIENT_GIVE_UP_SECONDS + CLIENT_TIMEOUT_SECONDS + 5)
        assert not any(thread.is_alive() for thread in self._threads), "load threads hung"
        return self.intents

    def answered(self) -> int:
        with self._lock:
            return sum(1 for intent in self.intents if intent.final is not None)

    def wait_answered(self, count: int, timeout: float = 30) -> None:
        try:
            wait_until(lambda: self.answered() >= count, timeout, f"{count} answered writes")
        except AssertionError as exc:
            with self._lock:
                answers = [answer for intent in self.intents for answer in intent.answers]
            seen = Counter((answer.status, answer.code, answer.error) for answer in answers)
            slowest = max((answer.seconds for answer in answers), default=0.0)
            raise AssertionError(
                f"{exc}; answers so far {dict(seen)}, slowest {slowest:.1f}s"
            ) from None

    def _run(self) -> None:
        while not self._stopping.is_set():
            number = next(self._numbers)
            due = self._started + number / self._per_second
            if self._stopping.wait(max(0.0, due - time.monotonic())):
                return
            intent = self._make_intent(number)
            with self._lock:
                self.intents.append(intent)
            self._send(intent)

    def _send(self, intent: Intent) -> None:
        intent.first_sent = time.monotonic()
        give_up = intent.first_sent + CLIENT_GIVE_UP_SECONDS
        while True:
            answer = self._client.request(
                "POST", intent.path, self._key, intent.body, intent.headers()
            )
            intent.answers.append(answer)
            if not answer.retryable or time.monotonic() > give_up:
                return
            time.sleep(0.15 + random.random() * 0.15)


# --- outage probes --------------------------------------------------------------------------


def probe_during_outage(
    stack: FaultStack, catalog: Catalog, operation_id: str | None
) -> dict[str, Answer]:
    """One request of each sort while a server is down (reads, admin, sync and async writes)."""
    participant, admin = stack.tenant.participant_key, stack.tenant.admin_key
    probe = uuid.uuid4().hex[:8]
    requests: dict[str, tuple[str, str, str, dict[str, Any] | None, dict[str, str]]] = {
        "catalog": ("GET", "/rewards", participant, None, {}),
        "balance": ("GET", "/participants/fan-0/points", participant, None, {}),
        "admin list": ("GET", "/admin/rewards", admin, None, {}),
        "sync claim": (
            "POST",
            f"/rewards/{catalog.capped}/claim",
            participant,
            {"participant_id": "probe", "points_deduction": False},
            {"Idempotency-Key": f"probe-sync-{probe}"},
        ),
        "async award": (
            "POST",
            "/points/award",
            participant,
            {"participant_id": "probe", "amount": 5},
            {"Idempotency-Key": f"probe-async-{probe}", "Prefer": "respond-async"},
        ),
        # Not partitioned: published straight to the broker, no Redis key first.
        "async award batch": (
            "POST",
            "/points/award-batch",
            participant,
            {"awards": [{"participant_id": "probe", "amount": 5}]},
            {"Idempotency-Key": f"probe-batch-{probe}", "Prefer": "respond-async"},
        ),
    }
    if operation_id is not None:
        requests["operation"] = ("GET", f"/operations/{operation_id}", participant, None, {})
    # At once, so a probe that hangs cannot hide behind the others.
    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        futures = {
            name: pool.submit(stack.client.request, method, path, key, body, headers)
            for name, (method, path, key, body, headers) in requests.items()
        }
        return {name: future.result() for name, future in futures.items()}


def assert_outage_answers(answers: dict[str, Answer], allowed: dict[str, set[int]]) -> None:
    """Each probe got 503 service_unavailable with Retry-After (or a status the service may
    still give without the missing server), quickly; never a 500, never a hang."""
    for name, answer in answers.items():
        assert answer.status is not None, f"{name}: no answer ({answer.error})"
        assert answer.seconds < ANSWER_BOUND_SECONDS, f"{name}: took {answer.seconds:.1f}s"
        if answer.status == 503:
            assert answer.code == "service_unavailable", (name, answer)
            assert answer.retry_after, (name, answer)
        else:
            assert answer.status in allowed.get(name, set()), (name, answer)


# --- the checks -----------------------------------------------------------------------------


@dataclass
class Outcome:
    intents: list[Intent]
    answers: Counter[Any]
    slowest_answer: float
    operations: int
    succeeded: int
    failed: Counter[str]
    slowest_completion: float
    claims: int
    events_delivered: int


def assert_nothing_lost(stack: FaultStack, catalog: Catalog, intents: list[Intent]) -> Outcome:
    """Every accepted write finished exactly once, with a documented answer; stock, codes,
    balances and webhooks agree."""
    answers = Counter(
        (answer.status, answer.code if answer.status != 201 else None)
        for intent in intents
        for answer in intent.answers
    )
    every = [answer for intent in intents for answer in intent.answers]
    # The client saw only documented answers, each in bounded time.
    assert not [a for a in every if a.status is not None and a.status >= 500 and a.status != 503]
    assert not [a for a in every if a.status == 503 and a.code != "service_unavailable"]
    assert not [a for a in every if a.status == 503 and not a.retry_after]
    hung = [
        (intent.kind, intent.prefer_async, answer)
        for intent in intents
        for answer in intent.answers
        if answer.error == "ReadTimeoutError"
    ]
    assert not hung, f"the API hung {len(hung)} time(s), e.g. {hung[:3]}"
    slowest_answer = max(a.seconds for a in every)
    assert slowest_answer < ANSWER_BOUND_SECONDS, slowest_answer
    unanswered = [intent for intent in intents if intent.final is None]
    assert not unanswered, f"{len(unanswered)} write(s) never answered: {unanswered[0].answers}"
    assert {a.status for a in every} <= {None, 200, 201, 202, 400, 503}, answers

    tenant_id = stack.tenant.tenant_id
    with stack.engine.connect() as connection:

        def stuck() -> int:
            return int(
                connection.execute(
                    text(
                        "SELECT count(*) FROM operations WHERE tenant_id = :t"
                        " AND status IN ('queued', 'processing')"
                    ),
                    {"t": tenant_id},
                ).scalar_one()
            )

        try:
            wait_until(lambda: stuck() == 0, 45, "every accepted operation to finish")
        finally:
            connection.rollback()
        rows = connection.execute(
            text(
                "SELECT id, kind, idempotency_key, status, result, error,"
                " EXTRACT(EPOCH FROM finished_at - created_at) AS took"
                " FROM operations WHERE tenant_id = :t"
            ),
            {"t": tenant_id},
        ).all()
        operations = {row.idempotency_key: row for row in rows}

        # Each answered intent maps to one operation, finished with a documented answer;
        # a final synchronous answer is the stored one.
        for intent in intents:
            final = intent.final
            assert final is not None
            operation = operations.get(intent.idempotency_key)
            assert operation is not None, f"accepted write lost: {intent}"
            assert operation.kind == intent.kind
            if operation.status == "failed":
                assert operation.error["code"] in DOCUMENTED_FAILURES[intent.kind], operation
            else:
                assert operation.status == "succeeded", operation
            if final.status == 202:
                assert final.body["operation_id"] == str(operation.id)
            elif final.status in (200, 201):
                assert final.body == operation.result, (final, operation)
            else:
                assert final.status == 400 and operation.status == "failed", (final, operation)
                assert final.body == operation.error
        failed = Counter(row.error["code"] for row in rows if row.status == "failed")
        for row in rows:
            if row.status == "failed":
                assert row.error["code"] in DOCUMENTED_FAILURES.get(row.kind, set()), row
        slowest_completion = max(float(row.took) for row in rows)

        # Exactly once: one claim per succeeded claim operation, none for a refused one.
        claims = connection.execute(
            text(
                "SELECT id, operation_id, reward_id, code_value, points_deducted FROM claims"
                " WHERE tenant_id = :t"
            ),
            {"t": tenant_id},
        ).all()
        succeeded_claims = {
            row.id: row for row in rows if row.kind == CLAIM_KIND and row.status == "succeeded"
        }
        claimed, expected_claims = (
            Counter(c.operation_id for c in claims),
            Counter([*succeeded_claims]),
        )
        assert claimed == expected_claims, (
            f"claims without a succeeded operation: {claimed - expected_claims}; "
            f"succeeded operations without one claim: {expected_claims - claimed}"
        )
        for claim in claims:
            assert succeeded_claims[claim.operation_id].result["claim_id"] == str(claim.id)
        # No code twice, no oversell.
        codes = [(claim.reward_id, claim.code_value) for claim in claims if claim.code_value]
        assert len(codes) == len(set(codes)) == len(claims)
        per_reward = Counter(str(claim.reward_id) for claim in claims)
        assert per_reward[catalog.limited_codes] <= catalog.limited_codes_count
        assert per_reward[catalog.capped] <= catalog.capped_inventory
        allocated = connection.execute(
            text(
                "SELECT count(claim_id), count(DISTINCT claim_id) FROM reward_codes"
                " WHERE reward_id = :r"
            ),
            {"r": catalog.limited_codes},
        ).one()
        assert tuple(allocated) == (per_reward[catalog.limited_codes],) * 2
        # One ledger entry per succeeded award and per paid claim, none for refusals.
        # (The probes' batches hold one award each.)
        awards = {
            row.id
            for row in rows
            if row.kind in (AWARD_KIND, AWARD_BATCH_KIND) and row.status == "succeeded"
        }
        award_entries = Counter(
            connection.execute(
                text(
                    "SELECT operation_id FROM ledger_entries"
                    " WHERE tenant_id = :t AND claim_id IS NULL AND amount > 0"
                ),
                {"t": tenant_id},
            ).scalars()
        )
        assert award_entries == Counter([*awards])
        debits = Counter(
            connection.execute(
                text("SELECT claim_id FROM ledger_entries WHERE tenant_id = :t AND amount < 0"),
                {"t": tenant_id},
            ).scalars()
        )
        assert debits == Counter(claim.id for claim in claims if claim.points_deducted)

    verify = subprocess.run(
        [sys.executable, "-m", "app.cli", "ledger", "verify"],
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # At least once: every claim's reward.reward_claimed event reached the receiver.
    expected = {str(claim.id) for claim in claims}

    def delivered_claims() -> set[str]:
        return {
            json.loads(request.body)["data"]["claim_id"]
            for request in list(stack.receiver.requests)
            if json.loads(request.body)["type"] == "reward.reward_claimed"
        }

    wait_until(lambda: expected <= delivered_claims(), 45, "every claim's webhook delivered")
    return Outcome(
        intents=intents,
        answers=answers,
        slowest_answer=slowest_answer,
        operations=len(rows),
        succeeded=sum(1 for row in rows if row.status == "succeeded"),
        failed=failed,
        slowest_completion=slowest_completion,
        claims=len(claims),
        events_delivered=len(delivered_claims()),
    )


def report(name: str, outcome: Outcome, **facts: Any) -> None:
    """One line per test on stdout (pytest -s shows it) for timings and counts."""
    sys.stdout.write(
        f"\n[{name}] operations={outcome.operations} succeeded={outcome.succeeded}"
        f" failed={dict(outcome.failed)} claims={outcome.claims}"
        f" events={outcome.events_delivered} answers={dict(outcome.answers)}"
        f" slowest_answer={outcome.slowest_answer:.2f}s"
        f" slowest_completion={outcome.slowest_completion:.2f}s"
        + "".join(f" {key}={value}" for key, value in facts.items())
        + "\n"
    )
