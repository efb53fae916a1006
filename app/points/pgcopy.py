"""COPY FROM STDIN through the session's own connection, inside its transaction.

Set-wise writers (batch and bulk awards, bulk staging) insert thousands of rows per
statement. Rows are handed over as preformatted lines of COPY's text format: building
one f-string per row costs a fraction of adapting each value separately, which matters
at a million rows. Every value that can hold arbitrary text goes through `copy_field`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from psycopg import sql
from sqlalchemy.orm import Session

COPY_NULL = "\\N"
# COPY text format: backslash escapes the delimiter (tab), row end and itself.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_LINES_PER_WRITE = 2_000


def copy_field(value: str | None) -> str:
    """A text value as one COPY field (None is NULL)."""
    return COPY_NULL if value is None else value.translate(_COPY_ESCAPES)


def copy_lines(session: Session, table: str, columns: Sequence[str], lines: Iterable[str]) -> int:
    """COPY `lines` (tab-separated fields, each ending in a newline) into `table`.

    `lines` may be a generator over a stream: it is consumed a block at a time.
    """
    session.flush()  # rows may reference objects the session has not written yet
    driver_connection = session.connection().connection.driver_connection
    assert driver_connection is not None
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    written = 0
    block: list[str] = []
    with driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
        for line in lines:
            block.append(line)
            if len(block) == _LINES_PER_WRITE:
                copy.write("".join(block))
                written += len(block)
                block.clear()
        if block:
            copy.write("".join(block))
            written += len(block)
    return written
