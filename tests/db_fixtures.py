"""Database fixtures for the history tests, on SQLite and on PostgreSQL.

Loaded for every test module through `pytest_plugins` in conftest.py. PostgreSQL:
TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test) is the
server; each test gets its own scratch database, dropped afterwards.

No server there: on a developer's machine the PostgreSQL tests skip, saying so
(`scripts/test.sh` starts a local one if it is installed); in CI (`CI` set, as
every CI service sets it) they fail, because a CI job without the server would
otherwise pass while never testing PostgreSQL. A server that answers but refuses
(a wrong password, no such database) fails everywhere: that is a setup to fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NoReturn
from uuid import uuid4

import asyncpg
import chainlit.data
import pytest
from chainlit.context import ChainlitContext, context_var
from chainlit.element import Image
from chainlit.message import Message
from chainlit.session import HTTPSession
from chainlit.step import Step
from chainlit.types import Feedback
from chainlit.user import PersistedUser, User
from chainlit.utils import utc_now
from sqlalchemy.engine import make_url

from handlers.core.settings import Settings
from handlers.storage import database
from handlers.storage.files import LocalStorageClient

DEFAULT_POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
CONNECT_TIMEOUT_S = 5.0  # a guard against a firewalled address, not a timing claim


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def no_postgres_server(server: str, error: BaseException) -> NoReturn:
    """Skip on a developer's machine, fail in CI: see the module docstring."""
    where = make_url(server).render_as_string(hide_password=True)
    reason = f"no PostgreSQL server at {where} ({type(error).__name__}: {error})"
    if in_ci():
        pytest.fail(f"{reason}; CI is set, so the PostgreSQL tests must run", pytrace=False)
    pytest.skip(f"{reason}; start one or set TEST_POSTGRES_URL")


@contextlib.asynccontextmanager
async def scratch_postgres_database() -> AsyncIterator[str]:
    """A new, empty database on the test server; dropped on exit, connections or not."""
    server_url = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_SERVER)
    server = make_url(server_url)
    name = f"test_chat_{uuid4().hex[:16]}"
    try:
        admin = await asyncpg.connect(
            server.set(drivername="postgresql").render_as_string(hide_password=False),
            timeout=CONNECT_TIMEOUT_S,
        )
    except (OSError, TimeoutError) as unreachable:  # refused, no route, unknown host
        no_postgres_server(server_url, unreachable)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield server.set(drivername="postgresql+asyncpg", database=name).render_as_string(
                hide_password=False
            )
        finally:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    else:
        async with scratch_postgres_database() as url:
            yield url


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=db_url)


@contextlib.asynccontextmanager
async def open_layer(settings: Settings, monkeypatch: pytest.MonkeyPatch):
    """Our schema behind Chainlit's own data layer, registered as Chainlit's data layer."""
    url = database.database_url(settings)
    await database.ensure_schema(url)
    data_layer = database.make_data_layer(settings, LocalStorageClient(settings.data_dir / "files"))
    monkeypatch.setattr(chainlit.data, "_data_layer", data_layer)
    monkeypatch.setattr(chainlit.data, "_data_layer_initialized", True)
    try:
        yield data_layer
    finally:
        await data_layer.close()


@pytest.fixture
async def layer(settings: Settings, monkeypatch: pytest.MonkeyPatch):
    async with open_layer(settings, monkeypatch) as data_layer:
        yield data_layer


class _Collect(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage())


@pytest.fixture
def chainlit_warnings() -> Iterator[list[str]]:
    """What Chainlit logs at WARNING or above, as it happens: its data layer turns
    every SQL error into such a warning."""
    messages: list[str] = []
    handler, chainlit_logger = _Collect(messages), logging.getLogger("chainlit")
    chainlit_logger.addHandler(handler)
    try:
        yield messages
    finally:
        chainlit_logger.removeHandler(handler)


@contextlib.contextmanager
def chainlit_context(thread_id: str, user: PersistedUser) -> Iterator[None]:
    """Chainlit's per-request context, as for an HTTP client: data layer calls run at once."""
    session = HTTPSession(id=str(uuid4()), client_type="webapp", thread_id=thread_id, user=user)
    token = context_var.set(ChainlitContext(session))
    try:
        yield
    finally:
        context_var.reset(token)


async def settled(action) -> None:
    """Await `action`, then the tasks Chainlit spawned to persist it (it never awaits them)."""
    before = asyncio.all_tasks()
    await action
    while spawned := asyncio.all_tasks() - before - {asyncio.current_task()}:
        await asyncio.gather(*spawned)
        before |= spawned


def png_bytes() -> bytes:
    """A valid 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


async def person(layer, identifier: str) -> PersistedUser:
    return await layer.create_user(User(identifier=identifier, metadata={"provider": "password"}))


async def converse(
    layer,
    user: PersistedUser,
    question: str,
    answer: str,
    *,
    image: bytes | None = None,
    rating: int | None = None,
    comment: str | None = None,
) -> dict[str, str]:
    """One exchange, persisted the way Chainlit 2.12 does it: the person's message
    (with an uploaded image), the thread's first update, a tool step, and a streamed
    answer; then, optionally, a rating. Returns the ids involved."""
    thread_id = str(uuid4())
    with chainlit_context(thread_id, user):
        asked = Message.from_dict(
            {
                "id": str(uuid4()),
                "type": "user_message",
                "output": question,
                "name": user.identifier,
                "createdAt": utc_now(),
                "command": "describe",
                "modes": {"model": "pixtral"},
            }
        )
        await settled(asked._create())
        await layer.update_thread(thread_id, name=question, user_id=user.id, tags=["photo"])
        ids = {"thread": thread_id, "question": asked.id}
        if image is not None:
            upload = Image(
                name="cat photo.png",
                content=image,
                mime="image/png",
                for_id=asked.id,
                thread_id=thread_id,
                display="inline",
                chainlit_key=str(uuid4()),
            )
            await layer.create_element(upload)
            ids["image"] = upload.id
        tool = Step(
            name="look",
            type="tool",
            default_open=True,
            auto_collapse=True,
            language="json",
            icon="image",
            tags=["vision"],
            metadata={"purpose": "test"},
        )
        await settled(tool.__aenter__())
        tool.input, tool.output = {"question": question}, "looked"
        await settled(tool.__aexit__(None, None, None))
        reply = Message(
            content="", author="Pixtral", tags=["answer"], metadata={"model": "pixtral-12b"}
        )
        for token in answer.split(" "):
            await settled(reply.stream_token(token + " "))
        await settled(reply.send())
        reply.content = answer
        await settled(reply.update())
        ids.update(tool=tool.id, answer=reply.id)
    if rating is not None:
        feedback = Feedback(forId=reply.id, threadId=thread_id, value=rating, comment=comment)
        ids["feedback"] = await layer.upsert_feedback(feedback)
    return ids
