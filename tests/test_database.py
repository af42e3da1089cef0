"""The schema against Chainlit 2.12's real SQLAlchemyDataLayer, on SQLite and PostgreSQL.

Chainlit's `execute_sql` swallows SQL errors and logs a warning, so "nothing
errors" here means: Chainlit logged no warning, and every value read back is the
one written. Messages and steps are written through Chainlit's own `Message` and
`Step` (their `send`/`update`/`stream_token`), which is what fixes the columns.

The database fixtures (SQLite and a scratch PostgreSQL database per test) are
in tests/db_fixtures.py.
"""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest
from chainlit.types import Pagination, ThreadFilter
from sqlalchemy import inspect, text

from handlers.core.settings import Settings
from handlers.storage import database
from tests.db_fixtures import chainlit_context, converse, open_layer, person, png_bytes

# The schema Chainlit's documentation gives for the SQLAlchemy data layer: what an
# existing installation has. It lacks `modes`, `autoCollapse`, `autoPlay` and
# `playerConfig`, and its JSONB `props` breaks `get_element`.
DOCUMENTED_SCHEMA = [
    """CREATE TABLE users ("id" UUID PRIMARY KEY, "identifier" TEXT NOT NULL UNIQUE,
        "metadata" JSONB NOT NULL, "createdAt" TEXT)""",
    """CREATE TABLE threads ("id" UUID PRIMARY KEY, "createdAt" TEXT, "name" TEXT,
        "userId" UUID, "userIdentifier" TEXT, "tags" TEXT[], "metadata" JSONB,
        FOREIGN KEY ("userId") REFERENCES users("id") ON DELETE CASCADE)""",
    """CREATE TABLE steps ("id" UUID PRIMARY KEY, "name" TEXT NOT NULL, "type" TEXT NOT NULL,
        "threadId" UUID NOT NULL, "parentId" UUID, "streaming" BOOLEAN NOT NULL,
        "waitForAnswer" BOOLEAN, "isError" BOOLEAN, "metadata" JSONB, "tags" TEXT[],
        "input" TEXT, "output" TEXT, "createdAt" TEXT, "command" TEXT, "start" TEXT,
        "end" TEXT, "generation" JSONB, "showInput" TEXT, "language" TEXT, "indent" INT,
        "defaultOpen" BOOLEAN,
        FOREIGN KEY ("threadId") REFERENCES threads("id") ON DELETE CASCADE)""",
    """CREATE TABLE elements ("id" UUID PRIMARY KEY, "threadId" UUID, "type" TEXT, "url" TEXT,
        "chainlitKey" TEXT, "name" TEXT NOT NULL, "display" TEXT, "objectKey" TEXT,
        "size" TEXT, "page" INT, "language" TEXT, "forId" UUID, "mime" TEXT, "props" JSONB,
        FOREIGN KEY ("threadId") REFERENCES threads("id") ON DELETE CASCADE)""",
    """CREATE TABLE feedbacks ("id" UUID PRIMARY KEY, "forId" UUID NOT NULL,
        "threadId" UUID NOT NULL, "value" INT NOT NULL, "comment" TEXT,
        FOREIGN KEY ("threadId") REFERENCES threads("id") ON DELETE CASCADE)""",
]


# --- database_url -----------------------------------------------------------------


def test_database_url_defaults_to_a_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    url = database.database_url(Settings(data_dir=tmp_path / "new" / "data"))
    assert url == f"sqlite+aiosqlite:///{tmp_path / 'new' / 'data' / database.SQLITE_FILE}"
    assert (tmp_path / "new" / "data").is_dir()


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u:secret@db:5432/chat", "postgresql+asyncpg://u:secret@db:5432/chat"),
        ("postgres://u@db/chat", "postgresql+asyncpg://u@db/chat"),
        ("postgresql+asyncpg://u@db/chat", "postgresql+asyncpg://u@db/chat"),
        ("sqlite:////srv/chat.db", "sqlite+aiosqlite:////srv/chat.db"),
    ],
)
def test_database_url_gives_the_async_driver(tmp_path: Path, given: str, used: str) -> None:
    assert database.database_url(Settings(data_dir=tmp_path, database_url=given)) == used


@pytest.mark.parametrize("given", ["mysql://u:secret@db/chat", "not a url"])
def test_database_url_refuses_other_databases_without_echoing_them(
    tmp_path: Path, given: str
) -> None:
    with pytest.raises(database.DatabaseUrlError) as refused:
        database.database_url(Settings(data_dir=tmp_path, database_url=given))
    assert "APP_DATABASE_URL" in str(refused.value) and "secret" not in str(refused.value)


# --- schema ---------------------------------------------------------------------------


async def _columns(url: str) -> dict[str, set[str]]:
    engine = database.make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: {
                    t: {c["name"] for c in inspect(sync).get_columns(t)}
                    for t in database.metadata.tables
                }
            )
    finally:
        await engine.dispose()


async def test_ensure_schema_creates_every_table_and_is_idempotent(db_url: str) -> None:
    await database.ensure_schema(db_url)
    await database.ensure_schema(db_url)
    expected = {
        name: {c.name for c in table.columns} for name, table in database.metadata.tables.items()
    }
    assert await _columns(db_url) == expected


async def test_ensure_schema_upgrades_the_documented_schema(
    db_url: str, settings, monkeypatch, chainlit_warnings
) -> None:
    old_element = str(uuid4())
    engine = database.make_engine(db_url)
    try:
        async with engine.begin() as conn:
            for statement in DOCUMENTED_SCHEMA:
                await conn.execute(text(statement))
            old_row = """INSERT INTO elements ("id", "name", "type") VALUES (:id, 'old', 'image')"""
            await conn.execute(text(old_row), {"id": old_element})
    finally:
        await engine.dispose()

    await database.ensure_schema(db_url)
    await database.ensure_schema(db_url)

    columns = await _columns(db_url)
    for name, table in database.metadata.tables.items():
        assert {c.name for c in table.columns} <= columns[name]
    assert "indent" in columns["steps"]  # documented columns Chainlit no longer writes stay

    # and the real data layer now works against it, old rows included
    async with open_layer(settings, monkeypatch) as layer:
        alice = await person(layer, "alice")
        ids = await converse(layer, alice, "What is this?", "A cat.", image=png_bytes(), rating=1)
        thread = await layer.get_thread(ids["thread"])
        assert [s["output"] for s in thread["steps"]][-1] == "A cat."
        assert (await layer.get_element(ids["thread"], ids["image"]))["props"] == {}
        async with layer.engine.begin() as conn:
            await conn.execute(
                text("""UPDATE elements SET "threadId" = :t WHERE "id" = :id"""),
                {"t": ids["thread"], "id": old_element},
            )
        assert (await layer.get_element(ids["thread"], old_element))["props"] == {}
    assert chainlit_warnings == []


# --- Chainlit's data layer over the schema --------------------------------------------


async def test_everything_chainlit_writes_reads_back(layer, chainlit_warnings, settings) -> None:
    alice = await person(layer, "alice")
    ids = await converse(
        layer,
        alice,
        "What is in this photo?",
        "A cat on a sofa.",
        image=png_bytes(),
        rating=1,
        comment="right",
    )
    await layer.update_thread(
        ids["thread"], metadata={"chat_settings": {"language": "en"}, "gone": None}
    )

    assert (await layer.get_user("alice")).metadata == {"provider": "password"}
    assert await layer.get_thread_author(ids["thread"]) == "alice"
    thread = await layer.get_thread(ids["thread"])
    assert thread["name"] == "What is in this photo?"
    assert thread["userId"] == alice.id and thread["userIdentifier"] == "alice"
    assert thread["tags"] == ["photo"]
    assert thread["metadata"] == {"chat_settings": {"language": "en"}}

    steps = {step["id"]: step for step in thread["steps"]}
    assert [step["type"] for step in thread["steps"]] == [
        "user_message",
        "tool",
        "assistant_message",
    ]
    question, tool, answer = steps[ids["question"]], steps[ids["tool"]], steps[ids["answer"]]
    assert question["output"] == "What is in this photo?" and question["name"] == "alice"
    assert (
        tool["input"] == '{\n    "question": "What is in this photo?"\n}'
        and tool["output"] == "looked"
    )
    assert tool["metadata"] == {"purpose": "test", "icon": "image"} and tool["tags"] == ["vision"]
    assert tool["showInput"] == "json" and tool["language"] == "json"
    assert tool["isError"] is False and tool["streaming"] is False
    assert tool["start"] and tool["end"] and tool["generation"] is None
    assert answer["output"] == "A cat on a sofa." and answer["name"] == "Pixtral"
    assert answer["metadata"] == {"model": "pixtral-12b"} and answer["tags"] == ["answer"]
    assert answer["waitForAnswer"] is False and answer["generation"] == {}
    assert answer["feedback"] == {
        "forId": ids["answer"],
        "id": ids["feedback"],
        "value": 1,
        "comment": "right",
    }

    [image] = thread["elements"]
    assert (
        image["id"] == ids["image"]
        and image["forId"] == ids["question"]
        and image["threadId"] == ids["thread"]
    )
    assert (
        image["name"] == "cat photo.png"
        and image["type"] == "image"
        and image["mime"] == "image/png"
    )
    assert image["display"] == "inline" and image["size"] == "medium"
    assert image["url"] == f"/files/{image['objectKey']}"
    assert image["objectKey"].endswith(f"{ids['image']}/cat_photo.png")
    stored = settings.data_dir / "files" / image["objectKey"]
    assert stored.read_bytes() == png_bytes()

    element = await layer.get_element(ids["thread"], ids["image"])
    assert (
        element["props"] == {}
        and element["url"] == image["url"]
        and element["objectKey"] == image["objectKey"]
    )
    assert (await layer.get_step(ids["answer"]))["feedback"]["value"] == 1

    await layer.delete_thread(ids["thread"])
    assert await layer.get_thread(ids["thread"]) is None
    assert not stored.exists()
    assert chainlit_warnings == []


async def test_documents_chainlit_binds_as_objects_are_stored(layer, chainlit_warnings) -> None:
    """`modes` arrives as a dict, and nothing Chainlit reads selects it: check the rows."""
    alice = await person(layer, "alice")
    ids = await converse(layer, alice, "Hi", "Hello.")
    query = text(
        'SELECT "modes", "command", "defaultOpen", "autoCollapse" FROM steps WHERE "id" = :id'
    )
    async with layer.engine.connect() as conn:
        question = (await conn.execute(query, {"id": ids["question"]})).one()
        tool = (await conn.execute(query, {"id": ids["tool"]})).one()
    assert tuple(question) == ({"model": "pixtral"}, "describe", None, None)
    assert tuple(tool) == (None, None, True, True)
    assert chainlit_warnings == []


async def test_list_threads_pages_filters_and_shows_only_the_owners(
    layer, chainlit_warnings
) -> None:
    alice, bob = await person(layer, "alice"), await person(layer, "bob")
    theirs = [
        await converse(layer, alice, f"question {n}", f"answer {n} about a dog", rating=n % 2)
        for n in range(3)
    ]
    bobs = await converse(layer, bob, "bob's question", "answer about a dog", rating=1)

    first = await layer.list_threads(Pagination(first=2), ThreadFilter(userId=alice.id))
    second = await layer.list_threads(
        Pagination(first=2, cursor=first.pageInfo.endCursor), ThreadFilter(userId=alice.id)
    )
    assert first.pageInfo.hasNextPage and not second.pageInfo.hasNextPage
    newest_first = [ids["thread"] for ids in reversed(theirs)]
    assert [t["id"] for t in first.data + second.data] == newest_first

    liked = await layer.list_threads(
        Pagination(first=10), ThreadFilter(userId=alice.id, feedback=1)
    )
    assert [t["id"] for t in liked.data] == [theirs[1]["thread"]]
    found = await layer.list_threads(
        Pagination(first=10), ThreadFilter(userId=alice.id, search="ANSWER 2")
    )
    assert [t["id"] for t in found.data] == [theirs[2]["thread"]]

    bobs_view = await layer.list_threads(
        Pagination(first=10), ThreadFilter(userId=bob.id, search="dog")
    )
    assert [t["id"] for t in bobs_view.data] == [bobs["thread"]]
    assert chainlit_warnings == []


async def test_deleting_an_element_removes_its_file(layer, chainlit_warnings, settings) -> None:
    alice = await person(layer, "alice")
    ids = await converse(layer, alice, "What is this?", "A cat.", image=png_bytes())
    [image] = (await layer.get_thread(ids["thread"]))["elements"]
    with chainlit_context(ids["thread"], alice):
        await layer.delete_element(ids["image"], ids["thread"])
    assert await layer.get_element(ids["thread"], ids["image"]) is None
    assert not (settings.data_dir / "files" / image["objectKey"]).exists()
    assert chainlit_warnings == []
