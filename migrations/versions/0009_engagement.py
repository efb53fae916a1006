"""actions, earning rules, badges, streaks, challenges, leaderboards

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 15:44:43.377766

actions records every action applied; earning_rules, badges, streaks, challenges and
leaderboards are the admin's definitions; earning_rule_usage (points per rule,
participant and local day, what caps are checked against), badge_progress,
participant_badges, participant_streaks, challenge_progress and leaderboard_scores are
per-participant state written under the participant's row lock. Ledger lines name the
rule that credited them.
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
        "challenges",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("env", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=True),
        sa.Column("target", sa.BigInteger(), nullable=False),
        sa.Column("reward", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("requires_enrollment", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "type IN ('action_count', 'points_earned')", name=op.f("ck_challenges_type")
        ),
        sa.CheckConstraint("target >= 1", name=op.f("ck_challenges_target")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_challenges_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_challenges")),
    )
    op.create_index("ix_challenges_tenant_env", "challenges", ["tenant_id", "env"], unique=False)
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
        "leaderboards",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("env", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("metric", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=True),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("notify_top", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "metric IN ('points_earned', 'action_count')", name=op.f("ck_leaderboards_metric")
        ),
        sa.CheckConstraint(
            "period IN ('all_time', 'daily', 'weekly', 'monthly')",
            name=op.f("ck_leaderboards_period"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_leaderboards_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leaderboards")),
    )
    op.create_index(
        "ix_leaderboards_tenant_env", "leaderboards", ["tenant_id", "env"], unique=False
    )
    op.create_table(
        "streaks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("env", sa.String(length=8), nullable=False),
        sa.Column("streak_type", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("grace_period_hours", sa.Integer(), nullable=False),
        sa.Column("milestones", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("period IN ('daily', 'weekly')", name=op.f("ck_streaks_period")),
        sa.CheckConstraint("grace_period_hours >= 0", name=op.f("ck_streaks_grace_period_hours")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_streaks_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_streaks")),
        sa.UniqueConstraint(
            "tenant_id", "env", "streak_type", name=op.f("uq_streaks_tenant_id_env_streak_type")
        ),
    )
    op.create_table(
        "badge_progress",
        sa.Column("badge_id", sa.Uuid(), nullable=False),
        sa.Column("participant_pk", sa.Uuid(), nullable=False),
        sa.Column("current", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("badge_id", "participant_pk", name=op.f("pk_badge_progress")),
    )
    op.create_table(
        "challenge_progress",
        sa.Column("challenge_id", sa.Uuid(), nullable=False),
        sa.Column("participant_pk", sa.Uuid(), nullable=False),
        sa.Column("current", sa.BigInteger(), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint(
            "challenge_id", "participant_pk", name=op.f("pk_challenge_progress")
        ),
    )
    op.create_table(
        "earning_rule_usage",
        sa.Column("rule_id", sa.Uuid(), nullable=False),
        sa.Column("participant_pk", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "rule_id", "participant_pk", "day", name=op.f("pk_earning_rule_usage")
        ),
    )
    op.create_table(
        "leaderboard_scores",
        sa.Column("leaderboard_id", sa.Uuid(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("participant_pk", sa.Uuid(), nullable=False),
        sa.Column("score", sa.BigInteger(), nullable=False),
        sa.Column("reached_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "leaderboard_id", "period_start", "participant_pk", name=op.f("pk_leaderboard_scores")
        ),
    )
    op.create_index(
        "ix_leaderboard_scores_rank",
        "leaderboard_scores",
        ["leaderboard_id", "period_start", sa.literal_column("score DESC"), "reached_at"],
        unique=False,
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
    op.create_table(
        "participant_streaks",
        sa.Column("streak_id", sa.Uuid(), nullable=False),
        sa.Column("participant_pk", sa.Uuid(), nullable=False),
        sa.Column("current_count", sa.Integer(), nullable=False),
        sa.Column("longest_count", sa.Integer(), nullable=False),
        sa.Column("last_period", sa.Date(), nullable=True),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("run", sa.Integer(), nullable=False),
        sa.Column("milestones_paid", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("streak_id", "participant_pk", name=op.f("pk_participant_streaks")),
    )
    op.create_index(
        "ix_participant_streaks_due",
        "participant_streaks",
        ["deadline"],
        unique=False,
        postgresql_where=sa.text("current_count > 0"),
    )
    op.add_column("ledger_entries", sa.Column("rule_id", sa.Uuid(), nullable=True))
    op.create_table(
        "bulk_action_rows",
        sa.Column("operation_id", sa.Uuid(), nullable=False),
        sa.Column("row_number", sa.BigInteger(), nullable=False),
        sa.Column("participant_id", sa.String(length=255), nullable=True),
        sa.Column("action", sa.String(length=100), nullable=True),
        sa.Column("properties", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("operation_id", "row_number", name=op.f("pk_bulk_action_rows")),
    )
    op.create_index(
        "ix_bulk_action_rows_failed",
        "bulk_action_rows",
        ["operation_id", "row_number"],
        unique=False,
        postgresql_where=sa.text("error IS NOT NULL"),
    )
    # Staged rows go with their operation (idempotency retention), as bulk_award_rows do.
    op.execute(
        """
        CREATE FUNCTION delete_bulk_action_rows_of_deleted_operations() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM bulk_action_rows b USING deleted_operations d
            WHERE b.operation_id = d.id;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER operations_delete_bulk_action_rows
        AFTER DELETE ON operations
        REFERENCING OLD TABLE AS deleted_operations
        FOR EACH STATEMENT EXECUTE FUNCTION delete_bulk_action_rows_of_deleted_operations()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER operations_delete_bulk_action_rows ON operations")
    op.execute("DROP FUNCTION delete_bulk_action_rows_of_deleted_operations()")
    op.drop_index("ix_bulk_action_rows_failed", table_name="bulk_action_rows")
    op.drop_table("bulk_action_rows")
    op.drop_column("ledger_entries", "rule_id")
    op.drop_index(
        "ix_participant_streaks_due",
        table_name="participant_streaks",
        postgresql_where=sa.text("current_count > 0"),
    )
    op.drop_table("participant_streaks")
    op.drop_index("ix_participant_badges_participant", table_name="participant_badges")
    op.drop_table("participant_badges")
    op.drop_index("ix_leaderboard_scores_rank", table_name="leaderboard_scores")
    op.drop_table("leaderboard_scores")
    op.drop_table("earning_rule_usage")
    op.drop_table("challenge_progress")
    op.drop_table("badge_progress")
    op.drop_table("streaks")
    op.drop_index("ix_leaderboards_tenant_env", table_name="leaderboards")
    op.drop_table("leaderboards")
    op.drop_index(
        "ix_earning_rules_action", table_name="earning_rules", postgresql_where=sa.text("active")
    )
    op.drop_table("earning_rules")
    op.drop_index("ix_challenges_tenant_env", table_name="challenges")
    op.drop_table("challenges")
    op.drop_index("ix_badges_tenant_env", table_name="badges")
    op.drop_table("badges")
    op.drop_table("actions")
