"""The 23blocks Rewards Block dialect under /v1/rewards: JSON:API documents over the
native domain services (no rule of its own)."""

from __future__ import annotations

from flask import Blueprint


def blueprints() -> tuple[Blueprint, ...]:
    from api.blocks import (
        badges,
        challenges,
        leaderboards,
        openapi,
        operations,
        points,
        rules,
        streaks,
        tiers,
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
    )
