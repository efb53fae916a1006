"""COPY FROM STDIN through the session's own connection, inside its transaction; and
PostgreSQL array literals for set-wise statements.

Set-wise writers (batch and bulk awards, bulk staging) insert thousands of rows per
statement. Rows are handed over as preformatted lines of COPY's text format: building
one f-string per row costs a fraction of adapting each value separately, which matters
at a million rows. Every value that can hold arbitrary text goes through `copy_field`.

For the same reason a set of thousands of values is sent as one array literal (a single
text parameter, `CAST(:p AS text[])`) rather than a Python list, which the driver adapts
element by element in Python, and thousands of rows are read without the ORM
(`fetch_tuples`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from psycopg import Connection, Cursor, sql
from psycopg.copy import LibpqWriter
from sqlalchemy.orm import Session

COPY_NULL = "\\N"
# COPY text format: backslash escapes the delimiter (tab), row end and itself.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
# Lines go to the server a block at a time, each block flushed at once: PostgreSQL then
# inserts one block while the caller computes the next (psycopg would otherwise hold up to
# 1 MiB in the client's buffer, most of a 5,000-line COPY, until the end).
_LINES_PER_WRITE = 500
# Array literal: inside double quotes, backslash escapes the quote and itself.
_ARRAY_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})


def copy_field(value: str | None) -> str:
    """A text value as one COPY field (None is NULL)."""
    return COPY_NULL if value is None else value.translate(_COPY_ESCAPES)


def array_literal(values: Sequence[str | None]) -> str:
    """Text values (None is NULL) as one PostgreSQL array literal, e.g. '{"a","b\\"c",NULL}'."""
    if None not in values:
        joined = '","'.join(values)  # type: ignore[arg-type]  # no None, checked above
        if "\\" not in joined and '"' not in joined:
            return f'{{"{joined}"}}' if values else "{}"
    return (
        "{"
        + ",".join(
            "NULL" if value is None else f'"{value.translate(_ARRAY_ESCAPES)}"' for value in values
        )
        + "}"
    )


def plain_array_literal(values: Iterable[str]) -> str:
    """Values whose text needs no quoting (integers, UUIDs) as one array literal."""
    return "{" + ",".join(values) + "}"


def _driver_connection(session: Session) -> Connection[Any]:
    driver_connection = session.connection().connection.driver_connection
    assert driver_connection is not None
    return cast("Connection[Any]", driver_connection)


def fetch_tuples(session: Session, query: str, params: dict[str, Any]) -> Sequence[Any]:
    """Run `query` (psycopg's %(name)s parameters) in the session's transaction: its rows,
    tuple-like, without the ORM's per-row work (the statement still goes through the
    engine, so its events and logging see it)."""
    return session.connection().exec_driver_sql(query, params).all()


def _writer(cursor: Cursor[Any]) -> LibpqWriter:
    try:
        return LibpqWriter(cursor, flush_threshold=0)
    except TypeError:  # psycopg before 3.3 flushes every write anyway
        return LibpqWriter(cursor)


def copy_lines(session: Session, table: str, columns: Sequence[str], lines: Iterable[str]) -> int:
    """COPY `lines` (tab-separated fields, each ending in a newline) into `table`.

    `lines` may be a generator over a stream: it is consumed a block at a time.
    """
    session.flush()  # rows may reference objects the session has not written yet
    driver_connection = _driver_connection(session)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    written = 0
    block: list[str] = []
    with (
        driver_connection.cursor() as cursor,
        cursor.copy(statement, writer=_writer(cursor)) as copy,
    ):
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
