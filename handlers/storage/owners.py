"""Whose chat a row of the history is in: the question the routes in front of Chainlit's ask.

Owns the lookups -- a step, an element, a thread, a rating, a stored file -- each
one SQLAlchemy Core query over the tables of `handlers.storage.database` that
answers with the thread the row names and that thread's author. A failed query
raises (`SQLAlchemyError`): only a query that ran can say there is no such row,
so callers can refuse on an error instead of reading it as "missing" (what
Chainlit's `execute_sql`, which returns nothing on any error, made of it).

Does not own who may do what with the answer (`handlers/web/ownership.py`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import Column, FromClause, Uuid, select
from sqlalchemy.ext.asyncio import AsyncEngine

from handlers.storage.database import elements, feedbacks, steps, threads

_AUTHOR = threads.alias("author")


@dataclass(frozen=True)
class Lookup:
    """Rows of `source` whose `column` equals the value looked up; `thread` names their thread."""

    source: FromClause
    column: Column
    thread: Column


STEP = Lookup(steps, steps.c.id, steps.c.threadId)
ELEMENT = Lookup(elements, elements.c.id, elements.c.threadId)
STORED_FILE = Lookup(elements, elements.c.objectKey, elements.c.threadId)
THREAD = Lookup(threads, threads.c.id, threads.c.id)
# A rating's chat is its answer's: the step it is for.
FEEDBACK = Lookup(
    feedbacks.join(steps, steps.c.id == feedbacks.c.forId), feedbacks.c.id, steps.c.threadId
)


@dataclass(frozen=True)
class Place:
    """Where a row is: the thread it names (None: none) and that thread's author
    (None: no such thread yet, or nobody's)."""

    thread_id: str | None
    author: str | None


async def find(engine: AsyncEngine, lookup: Lookup, value: str) -> Place | None:
    """Where the row `lookup` finds for `value` is, or None when there is no such row.
    Raises `SQLAlchemyError` when the query fails."""
    key = _comparable(engine, lookup.column, value)
    if key is None:
        return None
    query = (
        select(lookup.thread, _AUTHOR.c.userIdentifier)
        .select_from(lookup.source.outerjoin(_AUTHOR, _AUTHOR.c.id == lookup.thread))
        .where(lookup.column == key)
        .limit(1)
    )
    async with engine.connect() as connection:
        row = (await connection.execute(query)).first()
    return None if row is None else Place(_text(row[0]), row[1])


def _comparable(engine: AsyncEngine, column: Column, value: str) -> str | None:
    """`value` as the database compares it with `column`; None when no row can hold it:
    ids are UUIDs on PostgreSQL, which refuses to compare one with any other string."""
    if not isinstance(column.type.dialect_impl(engine.dialect), Uuid):
        return value
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _text(value: object) -> str | None:
    return None if value is None else str(value)
