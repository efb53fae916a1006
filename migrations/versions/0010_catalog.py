"""a richer catalog: reward category, image, slug, custom attributes, media; claim status

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 17:30:43.518088

Rewards gain category, image_url, slug (unique per tenant and environment), and
custom_attributes and media (json: returned as given). Claims gain status (fulfilled, used,
cancelled), used_at, cancelled_at and metadata; a cancelled claim's pre-loaded code goes
back to stock, so the unique (reward_id, code_value) holds for live claims only.
reward_daily_claims counts claims per reward and UTC day for the catalog's `popular`
sort, filled here from the claims so far.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reward_daily_claims",
        sa.Column("reward_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("claims", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reward_id"], ["rewards.id"], name=op.f("fk_reward_daily_claims_reward_id_rewards")
        ),
        sa.PrimaryKeyConstraint("reward_id", "day", name=op.f("pk_reward_daily_claims")),
    )
    op.add_column(
        "claims",
        sa.Column("status", sa.String(length=16), server_default="fulfilled", nullable=False),
    )
    op.add_column("claims", sa.Column("used_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("claims", sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("claims", sa.Column("metadata", sa.JSON(), nullable=True))
    op.create_check_constraint(
        op.f("ck_claims_status"), "claims", "status IN ('fulfilled', 'used', 'cancelled')"
    )
    op.create_index(
        "uq_claims_reward_code_live",
        "claims",
        ["reward_id", "code_value"],
        unique=True,
        postgresql_where=sa.text("status <> 'cancelled'"),
    )
    op.drop_constraint(op.f("uq_claims_reward_id_code_value"), "claims", type_="unique")
    op.add_column("rewards", sa.Column("category", sa.String(length=100), nullable=True))
    op.add_column("rewards", sa.Column("image_url", sa.String(length=2048), nullable=True))
    op.add_column("rewards", sa.Column("slug", sa.String(length=100), nullable=True))
    op.add_column("rewards", sa.Column("custom_attributes", sa.JSON(), nullable=True))
    op.add_column("rewards", sa.Column("media", sa.JSON(), nullable=True))
    op.create_unique_constraint(
        op.f("uq_rewards_tenant_id_env_slug"), "rewards", ["tenant_id", "env", "slug"]
    )
    op.execute(
        """
        INSERT INTO reward_daily_claims (reward_id, day, claims)
        SELECT reward_id, CAST(claimed_at AT TIME ZONE 'UTC' AS date), count(*)
        FROM claims
        WHERE claimed_at >= now() - interval '31 days'
        GROUP BY 1, 2
        """
    )


def downgrade() -> None:
    op.drop_constraint(op.f("uq_rewards_tenant_id_env_slug"), "rewards", type_="unique")
    op.drop_column("rewards", "media")
    op.drop_column("rewards", "custom_attributes")
    op.drop_column("rewards", "slug")
    op.drop_column("rewards", "image_url")
    op.drop_column("rewards", "category")
    # A code handed out again after a cancel is held by two claims: the cancelled one
    # gives it up, or the constraint cannot come back.
    op.execute("UPDATE claims SET code_value = NULL WHERE status = 'cancelled'")
    op.create_unique_constraint(
        op.f("uq_claims_reward_id_code_value"), "claims", ["reward_id", "code_value"]
    )
    op.drop_index(
        "uq_claims_reward_code_live",
        table_name="claims",
        postgresql_where=sa.text("status <> 'cancelled'"),
    )
    op.drop_constraint(op.f("ck_claims_status"), "claims", type_="check")
    op.drop_column("claims", "metadata")
    op.drop_column("claims", "cancelled_at")
    op.drop_column("claims", "used_at")
    op.drop_column("claims", "status")
    op.drop_table("reward_daily_claims")
