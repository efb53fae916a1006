"""a richer catalog: reward category, image, slug, custom attributes, media; claim status

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 17:30:43.518088

Rewards gain category, image_url, slug (unique per tenant and environment), and
custom_attributes and media (json: returned as given). Claims gain status (fulfilled, used,
cancelled), used_at, cancelled_at and metadata; a cancelled claim's pre-loaded code goes
back to stock, so the unique (reward_id, code_value) holds for live claims only, and the
per-user cap counts live claims through a partial index. Rewards keep their claims of the
last 30 UTC days (recent_claims, a ring of day slots, moved on by the function
reward_recent_claims) for the catalog's `popular` sort, filled here from the claims so far.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
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
    op.drop_index("ix_claims_reward_participant", table_name="claims")
    op.create_index(
        "ix_claims_reward_participant",
        "claims",
        ["reward_id", "participant_id"],
        postgresql_where=sa.text("status <> 'cancelled'"),
    )
    op.add_column("rewards", sa.Column("category", sa.String(length=100), nullable=True))
    op.add_column("rewards", sa.Column("image_url", sa.String(length=2048), nullable=True))
    op.add_column("rewards", sa.Column("slug", sa.String(length=100), nullable=True))
    op.add_column("rewards", sa.Column("custom_attributes", sa.JSON(), nullable=True))
    op.add_column("rewards", sa.Column("media", sa.JSON(), nullable=True))
    op.add_column(
        "rewards", sa.Column("recent_claims", postgresql.ARRAY(sa.Integer()), nullable=True)
    )
    op.add_column("rewards", sa.Column("recent_claims_through", sa.Date(), nullable=True))
    op.create_unique_constraint(
        op.f("uq_rewards_tenant_id_env_slug"), "rewards", ["tenant_id", "env", "slug"]
    )
    # A ring of recent claims moved on to `today` and changed by `deltas`: a slot keeps
    # its count while its day (the latest day through `through` whose ordinal, as
    # Python's date.toordinal counts, is the slot modulo 30) is one of the 30 days
    # through `today`, and starts again from 0 otherwise; never below 0.
    op.execute(
        """
        CREATE FUNCTION reward_recent_claims(
            ring integer[], through date, today date, deltas integer[]
        ) RETURNS integer[] LANGUAGE plpgsql IMMUTABLE AS $$
        DECLARE
            moved integer[] := array_fill(0, ARRAY[30]);
            through_ordinal integer := through - DATE '0001-01-01' + 1;
            today_ordinal integer := today - DATE '0001-01-01' + 1;
        BEGIN
            FOR slot IN 0..29 LOOP
                IF through IS NOT NULL
                   AND through_ordinal - ((through_ordinal - slot) % 30) > today_ordinal - 30
                THEN
                    moved[slot + 1] := coalesce(ring[slot + 1], 0);
                END IF;
                moved[slot + 1] := greatest(moved[slot + 1] + coalesce(deltas[slot + 1], 0), 0);
            END LOOP;
            RETURN moved;
        END
        $$
        """
    )
    # Slot i of the ring holds the claims of the day whose ordinal (Python's
    # date.toordinal) is i modulo 30, for the 30 days through today.
    op.execute(
        """
        WITH today AS (SELECT CAST(now() AT TIME ZONE 'UTC' AS date) AS day),
        daily AS (
            SELECT reward_id,
                   (CAST(claimed_at AT TIME ZONE 'UTC' AS date) - DATE '0001-01-01' + 1) % 30
                       AS slot,
                   count(*) AS claims
            FROM claims, today
            WHERE claimed_at >= CAST(today.day - 29 AS timestamp) AT TIME ZONE 'UTC'
            GROUP BY 1, 2
        ),
        rings AS (
            SELECT rewarded.reward_id,
                   array_agg(CAST(coalesce(daily.claims, 0) AS integer) ORDER BY slot) AS slots
            FROM (SELECT DISTINCT reward_id FROM daily) AS rewarded
            CROSS JOIN generate_series(0, 29) AS slot
            LEFT JOIN daily USING (reward_id, slot)
            GROUP BY rewarded.reward_id
        )
        UPDATE rewards
        SET recent_claims = rings.slots, recent_claims_through = today.day
        FROM rings, today
        WHERE rewards.id = rings.reward_id
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION reward_recent_claims(integer[], date, date, integer[])")
    op.drop_constraint(op.f("uq_rewards_tenant_id_env_slug"), "rewards", type_="unique")
    op.drop_column("rewards", "recent_claims_through")
    op.drop_column("rewards", "recent_claims")
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
    op.drop_index("ix_claims_reward_participant", table_name="claims")
    op.create_index("ix_claims_reward_participant", "claims", ["reward_id", "participant_id"])
    op.drop_constraint(op.f("ck_claims_status"), "claims", type_="check")
    op.drop_column("claims", "metadata")
    op.drop_column("claims", "cancelled_at")
    op.drop_column("claims", "used_at")
    op.drop_column("claims", "status")
