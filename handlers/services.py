"""Everything the app builds once at start-up, and closes at shutdown.

Built in `on_app_startup`, never at import: the settings are read then, the
schema is created or upgraded, and the tokenizer loads in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from chainlit.data.sql_alchemy import SQLAlchemyDataLayer
from sqlalchemy.ext.asyncio import AsyncEngine

from handlers.chat.history import PreparedStore
from handlers.chat.turn import Assistant, start_assistant
from handlers.core.settings import Settings
from handlers.core.sign_in_limits import AttemptLimiter
from handlers.storage import database
from handlers.storage.files import LocalStorageClient, make_private
from handlers.storage.users import UserStore


@dataclass
class Services:
    settings: Settings
    assistant: Assistant
    storage: LocalStorageClient
    store: PreparedStore
    data_layer: SQLAlchemyDataLayer
    users: UserStore
    sign_ins: AttemptLimiter
    _engine: AsyncEngine

    async def close(self) -> None:
        if self.assistant.early is not None:
            self.assistant.early.close()
        await self.assistant.client.aclose()
        self.users.close()
        await self._engine.dispose()
        await self.data_layer.engine.dispose()


async def start_services(settings: Settings) -> Services:
    make_private(settings.data_dir)
    url = database.database_url(settings)
    await database.ensure_schema(url)
    engine = database.make_engine(url)
    storage = LocalStorageClient(settings.data_dir / "files")
    store = PreparedStore(settings.data_dir / "prepared")
    return Services(
        settings=settings,
        assistant=await start_assistant(settings, store),
        storage=storage,
        store=store,
        data_layer=database.make_data_layer(settings, storage, store.forget_thread),
        users=UserStore(engine),
        sign_ins=AttemptLimiter(settings.login_attempts_per_minute, settings.login_max_waiting),
        _engine=engine,
    )
