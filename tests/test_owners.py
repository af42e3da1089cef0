"""Whose chat a row is (handlers/storage/owners.py), on SQLite and PostgreSQL.

The rows are written by Chainlit's own data layer (tests/db_fixtures.py); the
questions go through an engine of the app's own, as the routes ask them.
"""

from __future__ import annotations

from uuid import uuid4

import pytest
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from handlers.storage import database, owners
from handlers.storage.owners import Place
from tests.db_fixtures import converse, person, png_bytes


@pytest.fixture
async def engine(layer, settings):
    engine = database.make_engine(database.database_url(settings))
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_each_row_leads_to_its_chat_and_its_author(layer, engine) -> None:
    alice = await person(layer, "alice")
    ids = await converse(layer, alice, "What is this?", "A cat.", image=png_bytes(), rating=1)
    [element] = (await layer.get_thread(ids["thread"]))["elements"]
    alices = Place(ids["thread"], "alice")
    assert await owners.find(engine, owners.STEP, ids["answer"]) == alices
    assert await owners.find(engine, owners.ELEMENT, ids["image"]) == alices
    assert await owners.find(engine, owners.THREAD, ids["thread"]) == alices
    assert await owners.find(engine, owners.FEEDBACK, ids["feedback"]) == alices
    assert await owners.find(engine, owners.STORED_FILE, element["objectKey"]) == alices


@pytest.mark.parametrize(
    "lookup", [owners.STEP, owners.ELEMENT, owners.THREAD, owners.FEEDBACK, owners.STORED_FILE]
)
@pytest.mark.parametrize("value", [str(uuid4()), "not-a-uuid", ""])
async def test_no_such_row_is_none(layer, engine, lookup, value) -> None:
    """On PostgreSQL an id that is no UUID names nothing, rather than failing the query."""
    assert await owners.find(engine, lookup, value) is None


async def test_a_failed_query_raises_instead_of_answering_none(tmp_path) -> None:
    # A file that is no database, rather than a path that cannot be opened: aiosqlite
    # (0.22) answers a failed connect by stopping its thread with a future on this
    # test's loop, which may already be closed when the thread gets to it.
    not_a_database = tmp_path / "chat.db"
    not_a_database.write_bytes(b"these bytes are no SQLite database" * 100)
    broken = create_async_engine(f"sqlite+aiosqlite:///{not_a_database}")
    try:
        with pytest.raises(SQLAlchemyError):
            await owners.find(broken, owners.STEP, str(uuid4()))
    finally:
        await broken.dispose()
