"""`rewards ledger verify`: do balances agree with the append-only ledger?

Checks, for every participant (or one tenant's): balance = sum of its entries' amounts,
total_earned = sum of credits, total_spent = sum of debits, and along its entries in
application order (seq) each balance_after is the running sum and never negative.
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
    SELECT p.tenant_id, p.env, p.external_id, p.balance, p.total_earned, p.total_spent,
           coalesce(l.sum_amount, 0) AS ledger_balance,
           coalesce(l.sum_credits, 0) AS ledger_earned,
           coalesce(l.sum_debits, 0) AS ledger_spent
    FROM participants p
    LEFT JOIN (
        SELECT participant_pk,
               CAST(sum(amount) AS bigint) AS sum_amount,
               CAST(sum(amount) FILTER (WHERE amount > 0) AS bigint) AS sum_credits,
               CAST(-sum(amount) FILTER (WHERE amount < 0) AS bigint) AS sum_debits
        FROM ledger_entries
        GROUP BY participant_pk
    ) l ON l.participant_pk = p.id
    WHERE (CAST(:tenant_id AS uuid) IS NULL OR p.tenant_id = :tenant_id)
      AND (p.balance <> coalesce(l.sum_amount, 0)
           OR p.total_earned <> coalesce(l.sum_credits, 0)
           OR p.total_spent <> coalesce(l.sum_debits, 0))
    ORDER BY p.tenant_id, p.env, p.external_id
    LIMIT :shown
    """
)

_RUNNING_MISMATCHES = text(
    """
    SELECT p.tenant_id, p.env, p.external_id, r.id AS transaction_id, r.seq,
           r.balance_after, r.running_balance
    FROM (
        SELECT id, participant_pk, seq, balance_after,
               CAST(sum(amount) OVER (PARTITION BY participant_pk ORDER BY seq) AS bigint)
                   AS running_balance
        FROM ledger_entries
        WHERE CAST(:tenant_id AS uuid) IS NULL OR tenant_id = :tenant_id
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
                "ledger_balance": row["ledger_balance"],
                "total_earned": row["total_earned"],
                "ledger_earned": row["ledger_earned"],
                "total_spent": row["total_spent"],
                "ledger_spent": row["ledger_spent"],
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
