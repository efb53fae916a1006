"""The `coupons` scenario: a million generated codes, and a redemption stampede on one code
with the hot drop's shape, reported as a ratio to the hot drop measured in the same run."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.engine import Engine

from app.text import CODE_ALPHABET
from bench.load import LoadResult, Request, run_load
from bench.scenarios import (
    GAMIFY,
    ScenarioResult,
    Tenant,
    _load_figures,
    hot_reward_drop,
    make_tenant,
)


def _call(
    connection: http.client.HTTPConnection, method: str, path: str, key: str, body: Any = None
) -> tuple[int, dict[str, Any]]:
    headers = {"X-API-Key": key}
    if body is not None:
        headers["Content-Type"] = "application/json"
    connection.request(
        method, path, body=None if body is None else json.dumps(body).encode(), headers=headers
    )
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def _generate(api_url: str, tenant: Tenant, count: int, result: ScenarioResult) -> str | None:
    """Create a coupon, generate `count` codes and poll the job to its end (timed from the
    POST); the coupon's id."""
    parts = urlsplit(api_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    status, coupon = _call(
        connection,
        "POST",
        f"{GAMIFY}/admin/coupons",
        tenant.admin_key,
        {"code": "MILLION", "discount_type": "percentage", "discount_value": 10},
    )
    if status != 201:
        result.violations.append(f"coupon creation answered {status}: {coupon}")
        return None
    started = time.perf_counter()
    status, accepted = _call(
        connection,
        "POST",
        f"{GAMIFY}/admin/coupons/{coupon['id']}/generate",
        tenant.admin_key,
        {"count": count, "prefix": "M-"},
    )
    if status != 202:
        result.violations.append(f"generate answered {status}: {accepted}")
        return None
    operation: dict[str, Any] = {"status": "queued"}
    while operation["status"] not in ("succeeded", "failed"):
        time.sleep(0.1)
        _, operation = _call(
            connection, "GET", f"{GAMIFY}/operations/{accepted['operation_id']}", tenant.admin_key
        )
    elapsed = time.perf_counter() - started
    connection.close()
    result.figures.update(generate_codes=count, generate_s=round(elapsed, 2))
    if operation["status"] != "succeeded" or operation["result"]["generated"] != count:
        result.violations.append(f"generation ended {operation}")
    return str(coupon["id"])


def _check_codes(engine: Engine, coupon_id: str, count: int) -> list[str]:
    with engine.connect() as connection:
        stored, distinct = connection.execute(
            text(
                "SELECT count(*), count(DISTINCT code) FROM coupon_codes"
                " WHERE coupon_id = :c AND single_use"
            ),
            {"c": coupon_id},
        ).one()
        sample = connection.execute(
            text("SELECT code FROM coupon_codes WHERE coupon_id = :c AND single_use LIMIT 10000"),
            {"c": coupon_id},
        ).scalars()
        letters = set("".join(code[2:] for code in sample))
    violations = []
    if stored != count or distinct != count:
        violations.append(f"{stored} codes stored ({distinct} distinct), expected {count}")
    if not letters <= set(CODE_ALPHABET):
        violations.append(
            f"codes hold letters outside the alphabet: {letters - set(CODE_ALPHABET)}"
        )
    return violations


def _stampede_requests(tenant: Tenant, code: str, participants: int) -> list[Request]:
    headers = {"X-API-Key": tenant.participant_key, "Content-Type": "application/json"}
    return [
        Request(
            "POST",
            f"{GAMIFY}/coupons/redeem",
            {**headers, "Idempotency-Key": f"{code}-{n}"},
            json.dumps(
                {
                    "code": code,
                    "participant_id": f"p{n}",
                    "order_id": f"order-{n}",
                    "order_amount": 40,
                }
            ).encode(),
        )
        for n in range(participants)
    ]


def _stampede(
    engine: Engine,
    api_url: str,
    tenant: Tenant,
    code: str,
    *,
    participants: int,
    codes: int,
    concurrency: int,
) -> tuple[LoadResult | None, list[str]]:
    """`participants` redemptions of `code`, a new coupon limited to `codes` uses."""
    parts = urlsplit(api_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    status, coupon = _call(
        connection,
        "POST",
        f"{GAMIFY}/admin/coupons",
        tenant.admin_key,
        {"code": code, "discount_type": "fixed", "discount_value": 5, "usage_limit": codes},
    )
    connection.close()
    if status != 201:
        return None, [f"stampede coupon answered {status}: {coupon}"]
    load = run_load(api_url, _stampede_requests(tenant, code, participants), concurrency)
    redeemed = load.statuses.get(201, 0)
    violations = []
    with engine.connect() as db:
        usage_count = db.execute(
            text("SELECT usage_count FROM coupons WHERE id = :c"), {"c": coupon["id"]}
        ).scalar_one()
        rows = db.execute(
            text("SELECT count(*) FROM coupon_redemptions WHERE coupon_id = :c"),
            {"c": coupon["id"]},
        ).scalar_one()
    if not redeemed == usage_count == rows == codes:
        violations.append(
            f"{code}: {redeemed} redemptions answered 201, usage_count {usage_count}, {rows}"
            f" rows; expected {codes}"
        )
    unexpected = {status: n for status, n in load.statuses.items() if status not in (201, 400)}
    if unexpected:
        violations.append(f"{code}: unexpected statuses {unexpected} {dict(load.error_codes)}")
    return load, violations


def coupon_flow(
    engine: Engine,
    api_url: str,
    *,
    generate: int,
    participants: int,
    codes: int,
    concurrency: int,
    rounds: int = 2,
) -> ScenarioResult:
    """Generate `generate` codes; then, `rounds` times in turn, the hot drop
    (`participants` claims of `codes` codes) and a stampede of `participants` redemptions
    of one code of a coupon limited to `codes` uses: the ratio of their summed requests/s
    (alternating, as the machine's load drifts within a run)."""
    result = ScenarioResult(
        f"coupons ({generate} codes generated; {rounds} rounds of the hot drop and a stampede"
        f" of {participants} on one code limited to {codes} uses)"
    )
    tenant = make_tenant(engine)
    coupon_id = _generate(api_url, tenant, generate, result)
    if coupon_id is not None:
        result.violations += _check_codes(engine, coupon_id, generate)
    hot_rates: list[float] = []
    stampede_rates: list[float] = []
    for round_number in range(rounds):
        hot = hot_reward_drop(
            engine, api_url, participants=participants, codes=codes, concurrency=concurrency
        )
        result.violations += [f"hot drop: {violation}" for violation in hot.violations]
        hot_rates.append(float(hot.figures["requests_per_s"]))
        load, violations = _stampede(
            engine,
            api_url,
            tenant,
            f"STAMPEDE-{round_number}",
            participants=participants,
            codes=codes,
            concurrency=concurrency,
        )
        result.violations += violations
        if load is None:
            return result
        stampede_rates.append(round(load.rate(), 1))
        _load_figures(result, load)  # the last round's
    result.figures.update(
        hot_drop_requests_per_s=", ".join(str(rate) for rate in hot_rates),
        stampede_requests_per_s=", ".join(str(rate) for rate in stampede_rates),
        stampede_over_hot_drop=round(sum(stampede_rates) / sum(hot_rates), 2),
    )
    return result
