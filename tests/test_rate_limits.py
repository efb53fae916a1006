"""Per-participant write caps and per-key request caps (GCRA in Redis)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from app.infra.rate_limit import Limit, RateLimiter
from app.infra.redis_client import RedisOutage
from app.tenancy import set_tenant_limits
from tests.builders import GAMIFY, claim, create_reward
from tests.conftest import TenantKeys


def _limit_tenant(
    session_factory: sessionmaker[Session], tenant: TenantKeys, rate: float, burst: int
) -> None:
    with session_factory.begin() as session:
        set_tenant_limits(session, tenant.tenant_id, rate, burst)


@pytest.fixture
def limiter(redis_url: str) -> RateLimiter:
    return RateLimiter(redis.Redis.from_url(redis_url), f"rl-test-{uuid.uuid4()}:")


def test_a_full_burst_is_admitted_then_refused_with_a_retry_time(limiter: RateLimiter) -> None:
    limit = Limit(rate=1, burst=5)
    decisions = [limiter.take("p", limit) for _ in range(6)]
    assert [d.allowed for d in decisions if d] == [True] * 5 + [False]
    assert decisions[0] is not None and decisions[0].remaining == 4
    refused = decisions[5]
    assert refused is not None and 0 < refused.retry_after_ms <= 1000
    assert refused.retry_after_seconds == 1


def test_the_bucket_refills_at_the_rate(limiter: RateLimiter) -> None:
    limit = Limit(rate=20, burst=1)
    assert limiter.take("p", limit).allowed  # type: ignore[union-attr]
    assert not limiter.take("p", limit).allowed  # type: ignore[union-attr]
    time.sleep(0.06)
    assert limiter.take("p", limit).allowed  # type: ignore[union-attr]


def test_concurrent_takes_admit_no_more_than_burst_plus_rate_times_elapsed(
    limiter: RateLimiter,
) -> None:
    limit = Limit(rate=10, burst=20)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=50) as pool:
        decisions = list(pool.map(lambda _: limiter.take("hot", limit), range(1000)))
    elapsed = time.monotonic() - started
    admitted = sum(1 for decision in decisions if decision and decision.allowed)
    assert 20 <= admitted <= 20 + 10 * elapsed + 1


def test_an_unreachable_redis_admits_and_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    dead = RateLimiter(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5), "x:")
    with caplog.at_level(logging.WARNING):
        assert dead.take("p", Limit(rate=1, burst=1)) is None
    assert "rate limiter unavailable" in caplog.text


def test_after_a_stalled_redis_times_out_decisions_fail_open_at_once_for_a_pause() -> None:
    """A Redis that accepts connections and never answers (a frozen host): the first
    decision waits out the socket timeout, the next ones do not wait at all."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        stalled = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.3)
        limiter = RateLimiter(stalled, "x:", RedisOutage(pause_seconds=30))
        started = time.monotonic()
        assert limiter.take("p", Limit(rate=1, burst=1)) is None
        first = time.monotonic() - started
        started = time.monotonic()
        assert [limiter.take("p", Limit(rate=1, burst=1)) for _ in range(20)] == [None] * 20
        after = time.monotonic() - started
    assert first >= 0.3
    assert after < 0.05


@pytest.mark.usefixtures("worker")
def test_writes_over_the_participant_cap_answer_429_with_retry_after(
    client: FlaskClient,
    tenant: TenantKeys,
    session_factory: sessionmaker[Session],
    flask_app: Flask,
) -> None:
    _limit_tenant(session_factory, tenant, rate=0.5, burst=2)
    flask_app.extensions["rewards"].key_cache.clear()
    reward = create_reward(client, tenant.admin(), max_claims_per_user=100)
    first = claim(client, tenant.participant(), reward["id"], "eager")
    assert first.status_code == 201
    assert first.headers["RateLimit-Limit"] == "2"
    assert first.headers["RateLimit-Remaining"] == "1"
    assert claim(client, tenant.participant(), reward["id"], "eager").status_code == 201
    refused = claim(client, tenant.participant(), reward["id"], "eager")
    assert refused.status_code == 429
    assert refused.json["code"] == "RATE_LIMIT_PARTICIPANT_EXCEEDED"
    assert refused.json["type"] == "RATE_LIMIT_PARTICIPANT_EXCEEDED"
    assert refused.headers["Retry-After"] == "2"
    assert refused.headers["RateLimit-Remaining"] == "0"
    # Another participant has a cap of its own.
    assert claim(client, tenant.participant(), reward["id"], "patient").status_code == 201


@pytest.mark.usefixtures("worker")
def test_replays_of_a_finished_idempotency_key_do_not_count(
    client: FlaskClient,
    tenant: TenantKeys,
    session_factory: sessionmaker[Session],
    flask_app: Flask,
) -> None:
    _limit_tenant(session_factory, tenant, rate=0.1, burst=1)
    flask_app.extensions["rewards"].key_cache.clear()
    reward = create_reward(client, tenant.admin(), max_claims_per_user=100)
    original = claim(client, tenant.participant(), reward["id"], "u", idempotency_key="order-9")
    assert original.status_code == 201
    for _ in range(5):
        replay = claim(client, tenant.participant(), reward["id"], "u", idempotency_key="order-9")
        assert (replay.status_code, replay.json) == (201, original.json)
    assert claim(client, tenant.participant(), reward["id"], "u").status_code == 429


@pytest.mark.usefixtures("worker")
def test_1000_concurrent_claims_for_one_participant_admit_at_most_the_cap(
    flask_app: Flask, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    _limit_tenant(session_factory, tenant, rate=10, burst=20)
    flask_app.extensions["rewards"].key_cache.clear()
    reward = create_reward(flask_app.test_client(), tenant.admin(), max_claims_per_user=10_000)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = Counter(
            pool.map(
                lambda _: (
                    claim(
                        flask_app.test_client(),
                        tenant.participant(),
                        reward["id"],
                        "bot",
                        prefer_async=True,
                    ).status_code
                ),
                range(1000),
            )
        )
    elapsed = time.monotonic() - started
    assert set(statuses) <= {202, 429}
    assert 20 <= statuses[202] <= 20 + 10 * elapsed + 1
    assert statuses[429] == 1000 - statuses[202]


def test_per_key_request_cap_answers_429(make_app: Any, tenant: TenantKeys) -> None:
    strict = make_app(key_request_rate=0.5, key_request_burst=3).test_client()
    statuses = [
        strict.get("/api/v1/gamify/rewards", headers=tenant.participant()).status_code
        for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    refused = strict.get("/api/v1/gamify/rewards", headers=tenant.participant())
    assert refused.json["code"] == "RATE_LIMIT_KEY_EXCEEDED"
    assert int(refused.headers["Retry-After"]) >= 1


def test_a_key_over_its_cap_is_answered_429_even_for_a_write_that_would_fail_validation(
    make_app: Any, tenant: TenantKeys
) -> None:
    strict = make_app(key_request_rate=0.01, key_request_burst=1).test_client()
    reward = create_reward(strict, tenant.admin(), max_claims_per_user=100)  # the admin key's

    invalid = strict.post(
        f"{GAMIFY}/rewards/{reward['id']}/claim",
        json={"participant_id": 7},
        headers=tenant.participant(),
    )
    assert invalid.status_code == 422  # within the cap: the body's own error
    again = strict.post(
        f"{GAMIFY}/rewards/{reward['id']}/claim",
        json={"participant_id": 7},
        headers=tenant.participant(),
    )
    assert again.status_code == 429  # the refused write counted; over the cap, 429 first
    assert again.json["code"] == "RATE_LIMIT_KEY_EXCEEDED"
    bad_key = claim(strict, tenant.participant(), reward["id"], "p", idempotency_key="a b")
    assert bad_key.status_code == 429


def test_a_write_refused_by_its_key_cap_takes_nothing_from_the_participant_cap(
    make_app: Any, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    _limit_tenant(session_factory, tenant, rate=0.01, burst=2)
    strict = make_app(key_request_rate=0.01, key_request_burst=2).test_client()
    # Another key of the same environment, on an app without the tight key cap: the same
    # participant caps, a key bucket of its own.
    lenient = make_app().test_client()
    reward = create_reward(lenient, tenant.admin(), max_claims_per_user=100)

    assert (
        claim(strict, tenant.participant(), reward["id"], "p", prefer_async=True).status_code == 202
    )
    assert (
        claim(strict, tenant.participant(), reward["id"], "q", prefer_async=True).status_code == 202
    )
    refused = claim(strict, tenant.participant(), reward["id"], "p", prefer_async=True)
    assert refused.json["code"] == "RATE_LIMIT_KEY_EXCEEDED"

    second = claim(lenient, tenant.admin(), reward["id"], "p", prefer_async=True)
    assert second.status_code == 202
    assert second.headers["RateLimit-Remaining"] == "0"
    third = claim(lenient, tenant.admin(), reward["id"], "p", prefer_async=True)
    assert third.json["code"] == "RATE_LIMIT_PARTICIPANT_EXCEEDED"


def test_units_taken_in_order_stop_at_the_first_refusal(limiter: RateLimiter) -> None:
    tight, loose = Limit(rate=0.01, burst=1), Limit(rate=0.01, burst=5)
    first = limiter.take_in_order([("key", tight), ("participant", loose)])
    assert first is not None and [d.allowed for d in first] == [True, True]
    assert first[1].remaining == 4

    refused = limiter.take_in_order([("key", tight), ("participant", loose)])

    assert refused is not None and [d.allowed for d in refused] == [False]
    after = limiter.take("participant", loose)
    assert after is not None and after.remaining == 3  # the refused call took nothing


def test_tenant_limits_command_sets_and_resets_the_override(
    service_env: dict[str, str], tenant: TenantKeys
) -> None:
    env = {**os.environ, **service_env}
    command = [sys.executable, "-m", "app.cli", "tenant", "limits", str(tenant.tenant_id)]
    set_out = subprocess.run(
        [*command, "--rate", "5", "--burst", "7"], env=env, capture_output=True, text=True
    )
    assert set_out.returncode == 0, set_out.stderr
    assert '"participant_write_rate": 5.0' in set_out.stdout
    assert '"participant_write_burst": 7' in set_out.stdout
    reset = subprocess.run([*command, "--reset"], env=env, capture_output=True, text=True)
    assert '"participant_write_rate": null' in reset.stdout
    half = subprocess.run([*command, "--rate", "5"], env=env, capture_output=True, text=True)
    assert half.returncode == 1
    assert "--burst" in half.stderr
