"""Run the app's Chainlit callbacks in a real Chainlit websocket context.

The session's `emit` records every event the UI would receive, and
`visible_messages()` replays them the way the browser does (new, streamed,
updated), so tests assert on what a person would see.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import chainlit as cl
from chainlit.config import FILES_DIRECTORY
from chainlit.context import init_ws_context
from chainlit.session import WebsocketSession
from chainlit.utils import utc_now

import chainlit_app


class ChatHarness:
    def __init__(
        self, language: str = "en-US", *, user: object = None, thread_id: str | None = None
    ) -> None:
        self.events: list[tuple[str, object]] = []

        async def emit(event: str, data: object) -> None:
            self.events.append((event, data))

        async def emit_call(event: str, data: object, timeout: int | None) -> None:
            return None

        self.session = WebsocketSession(
            id=str(uuid.uuid4()),
            socket_id=str(uuid.uuid4()),
            emit=emit,
            emit_call=emit_call,
            user_env={},
            client_type="webapp",
            environ={"HTTP_ACCEPT_LANGUAGE": language},
            user=user,
            thread_id=thread_id,
        )

    def enter(self) -> None:
        # Any Chainlit server run from this folder deletes .files/ when it stops
        # (e.g. the browser tests' app); uploads need it back.
        FILES_DIRECTORY.mkdir(exist_ok=True)
        init_ws_context(self.session)

    async def start(self) -> None:
        self.enter()
        await chainlit_app.on_chat_start()

    def message(
        self, text: str, files: list[Path] = (), *, command: str | None = None
    ) -> cl.Message:
        """A user message as Chainlit builds it from an upload (elements with paths)."""
        self.enter()
        elements = [cl.File(name=path.name, path=str(path)) for path in files]
        message = cl.Message(content=text, elements=elements, author="User", type="user_message")
        message.command = command
        message.created_at = utc_now()  # as Chainlit's process_message does
        return message

    async def send(
        self, text: str, files: list[Path] = (), *, command: str | None = None
    ) -> cl.Message:
        message = self.message(text, files, command=command)
        if self.session.user:
            await self._persist_user_message(message)
        await chainlit_app.on_message(message)
        return message

    async def _persist_user_message(self, message: cl.Message) -> None:
        """What Chainlit's `process_message` does before `on_message` when history is on:
        store the message, give the thread its owner at the first one, store the files."""
        await message._create()
        if not self.session.has_first_interaction:
            self.session.has_first_interaction = True
            await self.session_emitter().init_thread(message.content)
        for element in message.elements:
            await element.send(for_id=message.id)

    def session_emitter(self):
        from chainlit.context import context

        return context.emitter

    async def resend(self, message: cl.Message) -> None:
        """What Chainlit does when a person edits `message`: on_message again, same id."""
        self.enter()
        await chainlit_app.on_message(message)

    async def resume(self, thread: dict) -> None:
        """What Chainlit does when a person opens a thread from the sidebar."""
        self.enter()
        await chainlit_app.on_chat_resume(thread)

    def visible_messages(self) -> list[dict]:
        shown: dict[str, dict] = {}
        for event, data in self.events:
            if event in ("new_message", "stream_start", "update_message"):
                shown[data["id"]] = dict(data)
            elif event == "stream_token":
                before = "" if data.get("isSequence") else shown[data["id"]]["output"]
                shown[data["id"]]["output"] = before + data["token"]
            elif event == "delete_message":
                shown.pop(data["id"], None)
        return [m for m in shown.values() if m.get("type") != "user_message"]

    def elements(self) -> list[dict]:
        """Every element sent to the UI (files, images), in order."""
        return [data for event, data in self.events if event == "element"]

    def texts(self) -> list[str]:
        return [m["output"] for m in self.visible_messages()]

    def last_text(self) -> str:
        return self.texts()[-1]
