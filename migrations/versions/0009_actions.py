"""actions, earning rules, badges

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 15:44:43.377766

actions records every action applied; earning_rules and badges are the admin's
definitions; earning_rule_usage (points per rule, participant and local day, what caps
are checked against), badge_progress and participant_badges are per-participant state
written under the participant's row lock. Ledger lines name the rule that credited them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "actions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("env", sa.String(length=8), nullable=False),
        sa.Column("participant_pk", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("properties", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("operation_id", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_actions")),
    )
    op.create_index(
        "ix_actions_participant_occurred",
        "actions",
        ["participant_pk", "occurred_at"],
        unique=False,
    )
    op.create_table(
        "badges",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("env", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("image_url", sa.String(length=2048), nullable=True),
        sa.Column("category", sa.String(length=100), nullable=True),
        sa.Column("criteria", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("points_reward", sa.BigInteger(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "points_reward IS NULL OR points_reward >= 0", name=op.f("ck_badges_points_reward")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_badges_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_badges")),
    )
    op.create_index("ix_badges_tenant_env", "badges", ["tenant_id", "env"], unique=False)
    op.create_table(
        "earning_rules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("env", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("formula", sa.Text(), nullable=False),
        sa.Column("conditions", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("max_points", sa.BigInteger(), nullable=True),
        sa.Column("multipliers", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("caps", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "max_points IS NULL OR max_points >= 0", name=op.f("ck_earning_rules_max_points")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_earning_rules_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_earning_rules")),
    )
    op.create_index(
        "ix_earning_rules_action",
        "earning_rules",
        ["tenant_id", "env", "action"],
        unique=False,
        postgresql_where=sa.text("active"),
    )
    op.create_table(
        "badge_progress",
        sa.Column("badge_id", sa.Uuid(), nullable=False),
        sa.Column("participant_pk", sa.Uuid(), nullable=False),
        sa.Column("current", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["badge_id"],
            ["badges.id"],
            name=op.f("fk_badge_progress_badge_id_badges"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("badge_id", "participant_pk", name=op.f("pk_badge_progress")),
    )
    op.create_table(
        "earning_rule_usage",
        sa.Column("rule_id", sa.Uuid(), nullable=False),
        sa.Column("participant_pk", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["earning_rules.id"],
            name=op.f("fk_earning_rule_usage_rule_id_earning_rules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "rule_id", "participant_pk", "day", name=op.f("pk_earning_rule_usage")
        ),
    )
    op.create_table(
        "participant_badges",
        sa.Column("badge_id", sa.Uuid(), nullable=False),
        sa.Column("participant_pk", sa.Uuid(), nullable=False),
        sa.Column("awarded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("operation_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["badge_id"],
            ["badges.id"],
            name=op.f("fk_participant_badges_badge_id_badges"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("badge_id", "participant_pk", name=op.f("pk_participant_badges")),
    )
    op.create_index(
        "ix_participant_badges_participant",
        "participant_badges",
        ["participant_pk", "awarded_at"],
        unique=False,
    )
    op.add_column("ledger_entries", sa.Column("rule_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    op.drop_column("ledger_entries", "rule_id")
    op.drop_index("ix_participant_badges_participant", table_name="participant_badges")
    op.drop_table("participant_badges")
    op.drop_table("earning_rule_usage")
    op.drop_table("badge_progress")
    op.drop_index(
        "ix_earning_rules_action", table_name="earning_rules", postgresql_where=sa.text("active")
    )
    op.drop_table("earning_rules")
    op.drop_index("ix_badges_tenant_env", table_name="badges")
    op.drop_table("badges")
    op.drop_index("ix_actions_participant_occurred", table_name="actions")
    op.drop_table("actions")
