"""blocks native: leaderboards of referrals completed; the program's holidays

Revision ID: 0014
Revises: 0013
Create Date: 2027-01-10 10:00:00.000000

A referral_count leaderboard counts a referral when it completes, on its referrer's
participant row; tracking now makes that row (app.referrals.tracking). The referrers of
referrals tracked before, still pending, get theirs here, so their completions count too.

program_settings.holidays: the days earning rules' holiday multipliers apply (ISO dates,
sorted, distinct). A constant default: adding it rewrites nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_METRICS_BEFORE = "metric IN ('points_earned', 'action_count')"
_METRICS = "metric IN ('points_earned', 'action_count', 'referral_count')"


def upgrade() -> None:
    op.add_column(
        "program_settings",
        sa.Column(
            "holidays", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False
        ),
    )
    op.drop_constraint(op.f("ck_leaderboards_metric"), "leaderboards", type_="check")
    op.create_check_constraint(op.f("ck_leaderboards_metric"), "leaderboards", _METRICS)
    op.execute(
        """
        INSERT INTO participants
            (id, tenant_id, env, external_id, balance, total_earned, total_spent)
        SELECT gen_random_uuid(), r.tenant_id, r.env, r.referrer_id, 0, 0, 0
        FROM (SELECT DISTINCT tenant_id, env, referrer_id FROM referrals
              WHERE status = 'pending') AS r
        ON CONFLICT (tenant_id, env, external_id) DO NOTHING
        """
    )


def downgrade() -> None:
    # The old check cannot hold them: the boards of the new metric go, with their scores.
    op.execute(
        """
        DELETE FROM leaderboard_scores WHERE leaderboard_id IN (
            SELECT id FROM leaderboards WHERE metric = 'referral_count')
        """
    )
    op.execute("DELETE FROM leaderboards WHERE metric = 'referral_count'")
    op.drop_constraint(op.f("ck_leaderboards_metric"), "leaderboards", type_="check")
    op.create_check_constraint(op.f("ck_leaderboards_metric"), "leaderboards", _METRICS_BEFORE)
    op.drop_column("program_settings", "holidays")
