"""The 23blocks Rewards Block dialect under /v1/rewards: JSON:API documents over the
native domain services (no rule of its own)."""

from __future__ import annotations

from flask import Blueprint


def blueprints() -> tuple[Blueprint, ...]:
    from api.blocks import (
        catalog,
        coupon_batches,
        coupons,
        openapi,
        operations,
        points,
        referrals,
        webhooks,
    )

    return (
        openapi.bp,
        operations.bp,
        points.bp,
        coupons.bp,
        coupon_batches.bp,
        referrals.bp,
        catalog.bp,
        webhooks.bp,
    )
