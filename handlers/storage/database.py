"""Where chat history lives: the database URL, its schema, and Chainlit's data layer.

Chainlit 2.12's `SQLAlchemyDataLayer` runs raw SQL against tables it never
creates, and its documented schema lags behind what it writes. This module owns
those tables -- every column 2.12 inserts, updates or selects, no more -- plus
the app's own `app_credentials` (with each person's `tokens_valid_after`), and `ensure_schema`, which creates them or adds
what an older copy lacks. It does not own what goes in them: Chainlit writes the
history, `handlers.storage.users` the credentials.

Why the types are what they are:
- ids are UUID on PostgreSQL (as documented, so existing tables fit), TEXT on SQLite.
- JSON documents are JSONB on PostgreSQL and declared JSON on SQLite, and both
  read back as Python objects (SQLAlchemy's asyncpg codec; a sqlite3 converter
  keyed on the declared type), so `on_chat_resume` and the frontend get dicts on
  either backend. BOOLEAN reads back as bool on SQLite the same way.
- Chainlit binds `modes` and `playerConfig` as dicts, and `tags` as a list; a
  statement hook turns those into JSON text (lists only on SQLite: PostgreSQL
  stores `tags` as TEXT[]).
- `elements.props` is TEXT defaulting to '{}': `get_element` calls `json.loads`
  on it, which fails on a decoded JSONB dict and on NULL.
- `elements.threadId` has no foreign key: Chainlit persists an uploaded image and
  its message in separate tasks, so the element row may arrive before its thread.
- `steps.metadata` is JSONB, so Chainlit's favourites query (`LIKE` on it) fails
  on PostgreSQL; leave `features.favorites` off there.

Chainlit is imported only when `make_data_layer` runs, so the CLIs that use this
module stay fast and don't create `.chainlit/` wherever they are run.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    Text,
    event,
    inspect,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.schema import CreateColumn
from sqlalchemy.types import UserDefinedType

if TYPE_CHECKING:
    from chainlit.data.sql_alchemy import SQLAlchemyDataLayer
    from chainlit.data.storage_clients.base import BaseStorageClient

    from handlers.core.settings import Settings

SQLITE_FILE = "chat.db"
_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}


class DatabaseUrlError(ValueError):
    """APP_DATABASE_URL names a database this app cannot use (the URL is not echoed)."""


class _SqliteJson(UserDefinedType):
    """Declares a column JSON on SQLite, which is what the sqlite3 converter keys on."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "JSON"


_ID = Text().with_variant(UUID(as_uuid=False), "postgresql")
_DOCUMENT = _SqliteJson().with_variant(JSONB(), "postgresql")
_TAGS = _SqliteJson().with_variant(ARRAY(Text), "postgresql")

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("identifier", Text, nullable=False, unique=True),
    Column("metadata", _DOCUMENT, nullable=False),
    Column("createdAt", Text),
)

threads = Table(
    "threads",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("createdAt", Text),
    Column("name", Text),
    Column("userId", _ID, ForeignKey("users.id", ondelete="CASCADE"), index=True),
    Column("userIdentifier", Text),
    Column("tags", _TAGS),
    Column("metadata", _DOCUMENT),
)

steps = Table(
    "steps",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("name", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column(
        "threadId", _ID, ForeignKey("threads.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("parentId", _ID),
    Column("command", Text),
    Column("modes", _DOCUMENT),
    Column("streaming", Boolean, nullable=False),
    Column("waitForAnswer", Boolean),
    Column("isError", Boolean),
    Column("metadata", _DOCUMENT),
    Column("tags", _TAGS),
    Column("input", Text),
    Column("output", Text),
    Column("createdAt", Text),
    Column("start", Text),
    Column("end", Text),
    Column("generation", _DOCUMENT),
    Column("showInput", Text),
    Column("language", Text),
    Column("defaultOpen", Boolean),
    Column("autoCollapse", Boolean),
)

elements = Table(
    "elements",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("threadId", _ID, index=True),
    Column("type", Text),
    Column("url", Text),
    Column("chainlitKey", Text),
    Column("name", Text, nullable=False),
    Column("display", Text),
    Column("objectKey", Text, index=True),
    Column("size", Text),
    Column("page", Integer),
    Column("language", Text),
    Column("forId", _ID),
    Column("mime", Text),
    Column("props", Text, server_default="{}"),
    Column("autoPlay", Boolean),
    Column("playerConfig", _DOCUMENT),
)

feedbacks = Table(
    "feedbacks",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("forId", _ID, nullable=False, index=True),
    Column("threadId", _ID, ForeignKey("threads.id", ondelete="CASCADE")),
    Column("value", Integer, nullable=False),
    Column("comment", Text),
)

credentials = Table(
    "app_credentials",
    metadata,
    Column("identifier", Text, primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
    # Seconds since the epoch: sign-ins before it no longer count (handlers/web/revocation.py).
    # 0 for rows from before the column existed: their sign-ins stay valid.
    Column("tokens_valid_after", Float, nullable=False, server_default=text("0")),
)

_SQLITE_PROPS_DEFAULT = """
CREATE TRIGGER IF NOT EXISTS elements_props_default AFTER INSERT ON elements
FOR EACH ROW WHEN NEW."props" IS NULL
BEGIN UPDATE elements SET "props" = '{}' WHERE "id" = NEW."id"; END
"""


def database_url(settings: Settings) -> str:
    """The async SQLAlchemy URL to use: APP_DATABASE_URL, else a SQLite file in
    `data_dir` (the directory is created). `postgresql://` and `sqlite:///` URLs
    are given the asyncpg / aiosqlite drivers the data layer needs."""
    if settings.database_url:
        return _with_async_driver(settings.database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / SQLITE_FILE
    _owner_only(path)
    return f"sqlite+aiosqlite:///{path.resolve()}"


def _owner_only(path: Path) -> None:
    """The SQLite file readable and writable by the app's account only (whatever
    the umask, and for files made before); SQLite gives its -wal and -shm files
    the database's mode."""
    path.touch(mode=0o600, exist_ok=True)
    for file in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
        if file.exists():
            file.chmod(0o600)


def make_engine(url: str) -> AsyncEngine:
    """An engine that reads and writes the schema's documents as described above;
    the caller disposes of it."""
    engine = create_async_engine(url, connect_args=_connect_args(url))
    _encode_documents(engine)
    return engine


def make_data_layer(
    settings: Settings,
    storage: BaseStorageClient,
    thread_deleted: Callable[[str], Awaitable[None]] | None = None,
) -> SQLAlchemyDataLayer:
    """Chainlit's own data layer over our schema, storing element files with `storage`.
    Run `ensure_schema` first (at app start-up): the layer never creates tables.
    `thread_deleted(thread_id)` runs after Chainlit deletes a thread (its rows and
    uploads), for what the app keeps beside them (the prepared images)."""
    url = database_url(settings)
    layer = _data_layer_class(thread_deleted)(
        conninfo=url, connect_args=_connect_args(url), storage_provider=storage
    )
    _encode_documents(layer.engine)
    return layer


def _data_layer_class(
    thread_deleted: Callable[[str], Awaitable[None]] | None,
) -> type[SQLAlchemyDataLayer]:
    from chainlit.data.sql_alchemy import SQLAlchemyDataLayer

    class DataLayer(SQLAlchemyDataLayer):
        """Chainlit's, telling the app when a thread is deleted (`DELETE /project/thread`)."""

        async def delete_thread(self, thread_id: str) -> None:
            await super().delete_thread(thread_id)
            if thread_deleted is not None:
                await thread_deleted(thread_id)

    return DataLayer


async def ensure_schema(url: str) -> None:
    """Create the tables, or bring older ones up to date, without touching their rows
    beyond filling `elements.props` where it is NULL. Safe to run at every start."""
    engine = make_engine(url)
    try:
        if engine.dialect.name == "sqlite":
            async with engine.connect() as conn:
                # Readers needn't wait for Chainlit's many small concurrent writes.
                await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        async with engine.begin() as conn:
            await conn.run_sync(_create_or_upgrade)
    finally:
        await engine.dispose()


def _with_async_driver(raw: str) -> str:
    try:
        url = make_url(raw)
    except ArgumentError:
        raise DatabaseUrlError("APP_DATABASE_URL: not a database URL") from None
    backend = url.get_backend_name()
    if backend not in _DRIVERS:
        raise DatabaseUrlError(
            f"APP_DATABASE_URL: expected postgresql:// or sqlite:///, got {backend}://"
        )
    return url.set(drivername=_DRIVERS[backend]).render_as_string(hide_password=False)


def _create_or_upgrade(conn: Connection) -> None:
    metadata.create_all(conn)
    for table in metadata.sorted_tables:
        _add_missing_columns(conn, table)
        for index in table.indexes:
            index.create(conn, checkfirst=True)
    _repair_props(conn)


def _add_missing_columns(conn: Connection, table: Table) -> None:
    present = {column["name"] for column in inspect(conn).get_columns(table.name)}
    for column in table.columns:
        if column.name not in present:
            definition = CreateColumn(column).compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {definition}"))


def _repair_props(conn: Connection) -> None:
    """The documented schema makes `props` JSONB without a default; see the module docstring."""
    props = next(c for c in inspect(conn).get_columns("elements") if c["name"] == "props")
    postgres = conn.dialect.name == "postgresql"
    if postgres and isinstance(props["type"], JSONB):
        conn.execute(
            text('ALTER TABLE elements ALTER COLUMN "props" TYPE TEXT USING "props"::text')
        )
    if props["default"] is None:
        # SQLite cannot change a column's default, so a trigger fills it instead.
        fix = (
            """ALTER TABLE elements ALTER COLUMN "props" SET DEFAULT '{}'"""
            if postgres
            else _SQLITE_PROPS_DEFAULT
        )
        conn.execute(text(fix))
    conn.execute(text("""UPDATE elements SET "props" = '{}' WHERE "props" IS NULL"""))


def _connect_args(url: str) -> dict[str, Any]:
    if make_url(url).get_backend_name() != "sqlite":
        return {}
    # Only "JSON", which this schema declares: a table made from Chainlit's docs says
    # JSONB, also for `props`, which `get_element` must get back as text.
    sqlite3.register_converter("JSON", _decode_json)
    sqlite3.register_converter("BOOLEAN", lambda raw: raw != b"0")
    return {"detect_types": sqlite3.PARSE_DECLTYPES}


def _decode_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        # Hand-edited or foreign rows: failing here would hide the whole thread.
        return raw.decode()


def _encode_documents(engine: AsyncEngine) -> None:
    """Bind dicts (and, on SQLite, lists) as JSON text, as Chainlit passes some raw;
    and tune each SQLite connection."""
    containers: tuple[type, ...] = (dict, list) if engine.dialect.name == "sqlite" else (dict,)

    def encode(value: Any) -> Any:
        return json.dumps(value) if isinstance(value, containers) else value

    def before_cursor_execute(conn, cursor, statement, parameters, context, executemany):
        if isinstance(parameters, Mapping):
            return statement, {key: encode(value) for key, value in parameters.items()}
        if parameters:
            return statement, type(parameters)(encode(value) for value in parameters)
        return statement, parameters

    event.listen(engine.sync_engine, "before_cursor_execute", before_cursor_execute, retval=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _tune_sqlite)


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """Per connection: in WAL mode, NORMAL syncs at checkpoints rather than at every
    commit (a power cut may lose the last messages, never the database), and Chainlit
    commits each message on its own; writers wait for each other instead of failing."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
