"""`rewards ledger verify`: do balances agree with the append-only ledger?

Checks, for every participant (or one tenant's):
- the ledger's sum is balance + pending (release lines only show points awarded earlier
  and are not counted again);
- total_earned = credits - pending, total_spent = spending debits less refunds (a
  cancelled claim's points given back), total_expired = expiry debits;
- along its entries in application order (seq) each balance_after is the running
  available balance (a pending award adds to it only at its release) and never negative;
- its lots: the pending ones hold exactly `pending`, the available ones at most
  `balance` (the rest are its open points, app.points.lots).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

VIOLATIONS_SHOWN = 100

_TOTALS_MISMATCHES = text(
    """
    SELECT p.tenant_id, p.env, p.external_id, p.balance, p.pending, p.total_earned,
           p.total_spent, p.total_expired,
           coalesce(l.sum_amount, 0) AS ledger_balance,
           coalesce(l.sum_credits, 0) - p.pending AS ledger_earned,
           coalesce(l.sum_spent, 0) AS ledger_spent,
           coalesce(l.sum_expired, 0) AS ledger_expired,
           coalesce(lots.pending, 0) AS lots_pending,
           coalesce(lots.available, 0) AS lots_available
    FROM participants p
    LEFT JOIN (
        SELECT participant_pk,
               CAST(sum(amount) FILTER (WHERE type <> 'release') AS bigint) AS sum_amount,
               CAST(sum(amount) FILTER (WHERE amount > 0 AND type NOT IN ('release', 'refund'))
                    AS bigint) AS sum_credits,
               CAST(-sum(amount) FILTER (WHERE (amount < 0 AND type <> 'expire')
                                           OR type = 'refund') AS bigint) AS sum_spent,
               CAST(-sum(amount) FILTER (WHERE type = 'expire') AS bigint) AS sum_expired
        FROM ledger_entries
        GROUP BY participant_pk
    ) l ON l.participant_pk = p.id
    LEFT JOIN (
        SELECT participant_pk,
               CAST(sum(remaining) FILTER (WHERE pending) AS bigint) AS pending,
               CAST(sum(remaining) FILTER (WHERE NOT pending) AS bigint) AS available
        FROM point_lots
        GROUP BY participant_pk
    ) lots ON lots.participant_pk = p.id
    WHERE (CAST(:tenant_id AS uuid) IS NULL OR p.tenant_id = :tenant_id)
      AND (p.balance + p.pending <> coalesce(l.sum_amount, 0)
           OR p.total_earned <> coalesce(l.sum_credits, 0) - p.pending
           OR p.total_spent <> coalesce(l.sum_spent, 0)
           OR p.total_expired <> coalesce(l.sum_expired, 0)
           OR p.pending <> coalesce(lots.pending, 0)
           OR p.balance < coalesce(lots.available, 0))
    ORDER BY p.tenant_id, p.env, p.external_id
    LIMIT :shown
    """
)

_RUNNING_MISMATCHES = text(
    """
    SELECT p.tenant_id, p.env, p.external_id, r.id AS transaction_id, r.seq,
           r.balance_after, r.running_balance
    FROM (
        SELECT e.id, e.participant_pk, e.seq, e.balance_after,
               CAST(sum(CASE WHEN e.available_at IS NOT NULL AND e.type <> 'release'
                             THEN 0 ELSE e.amount END)
                    OVER (PARTITION BY e.participant_pk ORDER BY e.seq) AS bigint)
                   AS running_balance
        FROM ledger_entries e
        WHERE CAST(:tenant_id AS uuid) IS NULL OR e.tenant_id = :tenant_id
    ) r
    JOIN participants p ON p.id = r.participant_pk
    WHERE r.balance_after <> r.running_balance OR r.balance_after < 0
    ORDER BY p.tenant_id, p.env, p.external_id, r.seq
    LIMIT :shown
    """
)

_PARTICIPANTS = text(
    "SELECT count(*) FROM participants "
    "WHERE CAST(:tenant_id AS uuid) IS NULL OR tenant_id = :tenant_id"
)


@dataclass
class LedgerReport:
    participants_checked: int
    violations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "participants_checked": self.participants_checked,
            "violations": self.violations,
        }


def verify_ledger(session: Session, tenant_id: uuid.UUID | None = None) -> LedgerReport:
    """Run every check (read-only); at most VIOLATIONS_SHOWN violations of each kind."""
    params = {"tenant_id": tenant_id, "shown": VIOLATIONS_SHOWN}
    report = LedgerReport(session.execute(_PARTICIPANTS, params).scalar_one())
    for row in session.execute(_TOTALS_MISMATCHES, params).mappings():
        report.violations.append(
            {
                "check": "totals_match_ledger",
                "tenant_id": str(row["tenant_id"]),
                "env": row["env"],
                "participant_id": row["external_id"],
                "balance": row["balance"],
                "pending": row["pending"],
                "ledger_balance": row["ledger_balance"],
                "total_earned": row["total_earned"],
                "ledger_earned": row["ledger_earned"],
                "total_spent": row["total_spent"],
                "ledger_spent": row["ledger_spent"],
                "total_expired": row["total_expired"],
                "ledger_expired": row["ledger_expired"],
                "lots_pending": row["lots_pending"],
                "lots_available": row["lots_available"],
            }
        )
    for row in session.execute(_RUNNING_MISMATCHES, params).mappings():
        report.violations.append(
            {
                "check": "balance_after_is_running_sum",
                "tenant_id": str(row["tenant_id"]),
                "env": row["env"],
                "participant_id": row["external_id"],
                "transaction_id": str(row["transaction_id"]),
                "balance_after": row["balance_after"],
                "running_balance": row["running_balance"],
            }
        )
    return report
