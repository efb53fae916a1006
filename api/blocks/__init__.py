"""The 23blocks Rewards Block dialect under /v1/rewards: JSON:API documents over the
native domain services (no rule of its own)."""

from __future__ import annotations

from flask import Blueprint


def blueprints() -> tuple[Blueprint, ...]:
    from api.blocks import (
        badges,
        catalog,
        challenges,
        coupon_batches,
        coupons,
        leaderboards,
        openapi,
        operations,
        points,
        referrals,
        rules,
        streaks,
        tiers,
        webhooks,
    )

    return (
        openapi.bp,
        operations.bp,
        points.bp,
        rules.bp,
        tiers.bp,
        badges.bp,
        leaderboards.bp,
        streaks.bp,
        challenges.bp,
        coupons.bp,
        coupon_batches.bp,
        referrals.bp,
        catalog.bp,
        webhooks.bp,
    )
