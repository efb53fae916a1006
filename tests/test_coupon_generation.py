"""The generation job as a plain function with a session: its steps and progress, and a
code space too full to draw from."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.coupons import generation
from app.errors import DomainError
from app.models import CouponCode, Operation
from app.operation_kinds import StepTaken
from tests.builders import create_coupon
from tests.conftest import TenantKeys


def _job(tenant: TenantKeys, coupon_id: str, count: int, **payload: Any) -> Operation:
    return Operation(
        id=uuid.uuid4(),
        tenant_id=tenant.tenant_id,
        env="live",
        kind=generation.GENERATE_KIND,
        payload={"coupon_id": coupon_id, "count": count, "prefix": "", "length": 8, **payload},
        progress=generation.GenerateProgress(total=count).as_json(),
    )


def _codes_of(session: Session, coupon_id: str) -> int:
    return session.execute(
        select(func.count())
        .select_from(CouponCode)
        .where(CouponCode.coupon_id == uuid.UUID(coupon_id), CouponCode.single_use)
    ).scalar_one()


def test_a_large_job_goes_in_steps_each_committing_its_codes_and_progress(
    client: FlaskClient,
    tenant: TenantKeys,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(generation, "GENERATE_STEP_CODES", 1000)
    coupon = create_coupon(client, tenant.admin())
    job = _job(tenant, coupon["id"], 2500)
    answers = []
    progress = []
    for _ in range(3):
        with session_factory.begin() as session:
            answers.append(generation.generate_step(session, job))
        progress.append(dict(job.progress or {}))
        with session_factory() as session:
            assert _codes_of(session, coupon["id"]) == progress[-1]["generated"]
    assert answers[:2] == [StepTaken(), StepTaken()]
    assert answers[2] == {"coupon_id": coupon["id"], "generated": 2500}
    assert [step["generated"] for step in progress] == [1000, 2000, 2500]


def test_a_code_space_too_full_to_draw_from_fails_the_job(
    client: FlaskClient,
    tenant: TenantKeys,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every draw gives codes already taken: after MAX_DRAWS the step gives up, with a
    reason the admin can act on, and writes nothing."""
    coupon = create_coupon(client, tenant.admin())
    monkeypatch.setattr(generation, "random_codes", lambda count, length, prefix: ["TAKEN"] * count)
    with session_factory.begin() as session:
        assert generation.generate_step(session, _job(tenant, coupon["id"], 1)) == {
            "coupon_id": coupon["id"],
            "generated": 1,
        }
    with pytest.raises(DomainError) as refused, session_factory.begin() as session:
        generation.generate_step(session, _job(tenant, coupon["id"], 5))
    assert (refused.value.code, refused.value.status) == ("code_space_exhausted", 422)
    with session_factory() as session:
        assert _codes_of(session, coupon["id"]) == 1
