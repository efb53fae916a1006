"""points write path: ledger indexes no query uses, room for HOT balance updates

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 20:40:00.000000

Every award writes one ledger row and updates its participant's balance, so each index on
ledger_entries costs an insertion per award (a million for a million-row bulk job). Two
of them answered no query:
- ix_ledger_entries_participant_created: history pages and `ledger verify` order a
  participant's entries by seq (ix_ledger_entries_participant_seq), never by created_at;
- ix_ledger_entries_operation_id: nothing looks ledger lines up by operation.

The foreign key from ledger_entries to participants stays, although its check costs a
lookup and a KEY SHARE lock per ledger row: the ledger is what balances are proven
against, and the database, not only the code, keeps every entry tied to its participant.

bulk_award_rows loses its foreign key to operations for the same reason (half of an
upload's database time, one check per staged row; the rows are staged in the transaction
that inserts their operation). Its ON DELETE CASCADE becomes a statement trigger on
operations: purging finished operations still deletes their staged rows, with one
statement per purge.

participants gets fillfactor 70: a balance update can then stay on its page as a HOT
update, which writes no index entry. With packed pages every update moved the row to
another page and inserted into both of the table's indexes.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_ledger_entries_participant_created", table_name="ledger_entries")
    op.drop_index(op.f("ix_ledger_entries_operation_id"), table_name="ledger_entries")
    op.drop_constraint(
        "fk_bulk_award_rows_operation_id_operations", "bulk_award_rows", type_="foreignkey"
    )
    op.execute(
        """
        CREATE FUNCTION delete_bulk_award_rows_of_deleted_operations() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM bulk_award_rows b USING deleted_operations d
            WHERE b.operation_id = d.id;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER operations_delete_bulk_award_rows
        AFTER DELETE ON operations
        REFERENCING OLD TABLE AS deleted_operations
        FOR EACH STATEMENT EXECUTE FUNCTION delete_bulk_award_rows_of_deleted_operations()
        """
    )
    # Applies to pages written from now on; existing ones fill up as rows move.
    op.execute("ALTER TABLE participants SET (fillfactor = 70)")


def downgrade() -> None:
    op.execute("DROP TRIGGER operations_delete_bulk_award_rows ON operations")
    op.execute("DROP FUNCTION delete_bulk_award_rows_of_deleted_operations()")
    op.create_foreign_key(
        "fk_bulk_award_rows_operation_id_operations",
        "bulk_award_rows",
        "operations",
        ["operation_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.execute("ALTER TABLE participants RESET (fillfactor)")
    op.create_index(
        op.f("ix_ledger_entries_operation_id"), "ledger_entries", ["operation_id"], unique=False
    )
    op.create_index(
        "ix_ledger_entries_participant_created",
        "ledger_entries",
        ["participant_pk", "created_at"],
        unique=False,
    )
