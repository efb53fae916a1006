"""The 23blocks dialect's rate limits: its document's table, per user (or per key) per
minute, on the same GCRA limiter as the native caps."""

from __future__ import annotations

import enum

from api.auth import current_principal, rate_limit_headers
from api.runtime import runtime
from app.errors import DomainError
from app.infra.rate_limit import Limit


class Family(enum.Enum):
    POINTS = "points operations"
    BADGE_AWARDS = "badge awards"
    COUPON_VALIDATION = "coupon validations"
    LEADERBOARD_READS = "leaderboard reads"


def _per_minute(family: Family) -> int:
    settings = runtime().settings
    return {
        Family.POINTS: settings.blocks_points_per_minute,
        Family.BADGE_AWARDS: settings.blocks_badge_awards_per_minute,
        Family.COUPON_VALIDATION: settings.blocks_coupon_validations_per_minute,
        Family.LEADERBOARD_READS: settings.blocks_leaderboard_reads_per_minute,
    }[family]


def take_family_unit(family: Family, user_id: str | None = None) -> None:
    """Take one unit of `family`'s cap for `user_id` (None: for the API key); 429
    `rate_limit_exceeded` with Retry-After when it is spent. Fails open without Redis, as
    the native caps do."""
    principal = current_principal()
    per_minute = _per_minute(family)
    whose = f"u:{user_id}" if user_id is not None else f"k:{principal.key_id}"
    subject = f"bx:{family.name}:{principal.tenant_id}:{principal.env}:{whose}"
    decision = runtime().rate_limiter.take(subject, Limit(per_minute / 60, per_minute))
    if decision is not None and not decision.allowed:
        raise DomainError(
            "rate_limit_exceeded",
            f"Too many {family.value} (limit {per_minute}/min); "
            f"retry after {decision.retry_after_seconds} s",
            429,
            headers=rate_limit_headers(decision),
        )
