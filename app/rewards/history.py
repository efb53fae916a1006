"""A reward's stock and claims over the last days, for the admin console.

Claims per day come from the reward's ring of recent claims (Reward.recent_claims, kept
by the claim transaction for the `popular` sort: claims net of cancellations per UTC day
over 30 days), so the chart costs no count over the claims table (which has, on purpose,
no index by reward and time: see the ring's note in app/models/rewards.py). Codes added
per day come from the audit log's `reward.codes_uploaded` entries (kept a year), and
the units left at the end of each day are worked back from today's figure.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Date, cast, func, select
from sqlalchemy.orm import Session

from app.models import AuditEntry, Reward
from app.rewards.catalog import POPULAR_DAYS, available_codes, generates_codes_when_exhausted

HISTORY_DAYS = POPULAR_DAYS


@dataclass(frozen=True)
class StockDay:
    day: date
    claims: int  # net of cancellations
    codes_added: int
    units_left: int | None  # at the end of the day; None: unlimited


def claims_by_day(reward: Reward, today: date) -> dict[date, int]:
    """The ring's claims per day, for the HISTORY_DAYS days through `today`."""
    ring, through = reward.recent_claims or [], reward.recent_claims_through
    counted: dict[date, int] = {}
    for back in range(HISTORY_DAYS):
        day = today - timedelta(days=back)
        slot = day.toordinal() % POPULAR_DAYS
        held = through is not None and through - timedelta(days=POPULAR_DAYS) < day <= through
        counted[day] = ring[slot] if held and slot < len(ring) and ring[slot] else 0
    return counted


def stock_history(reward: Reward, today: date, codes_added: Mapping[date, int]) -> list[StockDay]:
    """Oldest day first. Units left at the end of a day = units left now, plus what was
    claimed after that day, minus codes added after it (when codes cap the stock)."""
    claims = claims_by_day(reward, today)
    now_left = available_codes(reward)
    codes_cap = reward.codes_loaded > 0 and not generates_codes_when_exhausted(reward)
    days = sorted(claims)
    history: list[StockDay] = []
    left = now_left
    for day in reversed(days):
        history.append(StockDay(day, claims[day], codes_added.get(day, 0), left))
        if left is not None:
            # Step back over this day: its claims had not been taken, its codes not added.
            left = max(left + claims[day] - (codes_added.get(day, 0) if codes_cap else 0), 0)
    return list(reversed(history))


def codes_added_by_day(
    session: Session, tenant_id: uuid.UUID, env: str, reward_id: uuid.UUID, today: date
) -> dict[date, int]:
    """Codes added to the reward per UTC day over the HISTORY_DAYS days through `today`,
    from the audit log (every upload is audited in its own transaction)."""
    since = datetime.combine(today - timedelta(days=HISTORY_DAYS - 1), time.min, tzinfo=UTC)
    day = cast(func.timezone("UTC", AuditEntry.created_at), Date)
    rows = session.execute(
        select(day, func.sum(AuditEntry.details["added"].as_integer()))
        .where(
            AuditEntry.tenant_id == tenant_id,
            AuditEntry.env == env,
            AuditEntry.created_at >= since,
            AuditEntry.action == "reward.codes_uploaded",
            AuditEntry.target_id == str(reward_id),
        )
        .group_by(day)
    ).all()
    return {row[0]: int(row[1] or 0) for row in rows}
