"""Long work shown in the chat: one message per video, PDF or link, updated in
place while it works ("sampling 12 of 36 moments") and ending with what was
sent — the video's frames or the PDF's pages, or "fetched photo.jpg".

Messages, not `cl.Step`s: this app's Chainlit config hides steps (`cot =
"hidden"`), and a message updated in place shows the same in every mode.
They are notices (`metadata.kind`), so a resumed chat does not feed them to
the model (`handlers.history`).

Chainlit rendering only; what to say comes from `handlers.progress`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import chainlit as cl

from handlers.chat import Notice
from handlers.i18n import translate
from handlers.progress import Progress

WORKING, DONE = "◷ ", "✓ "  # in common fonts: ⏳ and ✅ need an emoji font


class ProgressView:
    def __init__(self, language: str, send_notice: Callable[[Notice, str], Awaitable[None]]) -> None:
        self.language = language
        self._send_notice = send_notice
        self._open: dict[str, cl.Message] = {}  # work still going, by `Progress.id`

    async def show(self, item: Progress) -> None:
        text = (DONE if item.final else WORKING) + translate(item.key, self.language, **item.params)
        message = self._open.get(item.id)
        if message is None:
            message = cl.Message(content=text, metadata={"kind": "notice"})
            await message.send()
        elif message.content != text:
            message.content = text
            await message.update()
        if item.final:
            self._open.pop(item.id, None)
        else:
            self._open[item.id] = message

    async def notice(self, notice: Notice) -> None:
        """A notice; one that ends a piece of work takes that work's message."""
        message = self._open.pop(notice.about, None) if notice.about else None
        if message is None:
            await self._send_notice(notice, self.language)
            return
        message.content = "ℹ️ " + translate(notice.key, self.language, **notice.params)
        message.elements = images_of(notice)
        await message.update()

    async def close(self) -> None:
        """Work that ended without a word of its own (refused: its notice says
        why; or stopped) leaves no stale "sampling…" behind."""
        open_messages, self._open = list(self._open.values()), {}
        for message in open_messages:
            await message.remove()


def images_of(notice: Notice) -> list[cl.Image]:
    return [
        cl.Image(content=part.image.data, mime=part.image.mime, name=part.label or part.image.name,
                 display="inline")
        for part in notice.images
    ]
