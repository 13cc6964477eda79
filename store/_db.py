"""What the read/query modules share: the connection type, a cursor, one fetch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

#: A connection, or a pool a connection is borrowed from for the call.
Db = psycopg.Connection[Any] | ConnectionPool


@contextlib.contextmanager
def cursor(db: Db) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
    """A dict-row cursor whose statements commit together (or roll back together)."""
    if isinstance(db, ConnectionPool):
        with db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            yield cur
        return
    with db.transaction(), db.cursor(row_factory=dict_row) as cur:
        yield cur


def fetch(
    db: Db, query: str, params: Sequence[Any] | dict[str, Any] = (), *, custom_plan: bool = False
) -> list[dict[str, Any]]:
    """Run one statement; its rows as dicts (none for a statement without a result).

    Queries whose selectivity depends on the values (a bounding box, a date range) pass
    ``custom_plan``: they are never prepared, since a generic plan chosen for "any box"
    is ~20x slower for a small one.
    """
    with cursor(db) as cur:
        cur.execute(query.encode(), params, prepare=False if custom_plan else None)
        return cur.fetchall() if cur.description else []
