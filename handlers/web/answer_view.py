"""One answer as the chat shows it: what `handlers.chat.turn` yields, rendered.

Long work gets one message per video, PDF or link, updated in place while it
works ("sampling 12 of 36 moments") and ending with what was sent — the
video's frames or the PDF's pages, or "fetched photo.jpg". Notices are
messages of their own; an answer cut at the length limit gets a Continue
button under it (`chainlit_app.on_continue` answers it).

Messages, not `cl.Step`s: this app's Chainlit config hides steps (`cot =
"hidden"`), and a message updated in place shows the same in every mode.
They are notices (`metadata.kind`), so a resumed chat does not feed them to
the model (`handlers.chat.history`).

Chainlit rendering only; what to say comes from `handlers.chat.turn` and
`handlers.core.progress`, and it is the one place besides `chainlit_app.py` that
turns errors into chat messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing

import chainlit as cl

from handlers.chat.counting import CountStatus, Final
from handlers.chat.turn import Notice
from handlers.core.errors import UserFacingError
from handlers.core.i18n import translate
from handlers.core.message_kinds import NOTICE_KIND
from handlers.core.progress import Progress

log = logging.getLogger(__name__)

CUT_ANSWER = "cut_answer"  # user_session: (answer turn id, its message, the note with the button)
WORKING, DONE = "◷ ", "✓ "  # in common fonts: ⏳ and ✅ need an emoji font


class ProgressView:
    def __init__(self, language: str) -> None:
        self.language = language
        self._open: dict[str, cl.Message] = {}  # work still going, by `Progress.id`

    async def show(self, item: Progress) -> None:
        text = (DONE if item.final else WORKING) + translate(item.key, self.language, **item.params)
        message = self._open.get(item.id)
        if message is None:
            message = cl.Message(content=text, metadata={"kind": NOTICE_KIND})
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
            await send_notice(notice, self.language)
            return
        message.content = "ℹ️ " + translate(notice.key, self.language, **notice.params)
        message.elements = images_of(notice)  # type: ignore[assignment]  # see CountView.final
        await message.update()

    async def close(self) -> None:
        """Work that ended without a word of its own (refused: its notice says
        why; or stopped) leaves no stale "sampling…" behind."""
        open_messages, self._open = list(self._open.values()), {}
        for message in open_messages:
            await message.remove()


class CountView:
    """A count's answer: a status while its JSON arrives, then the table and its CSV."""

    def __init__(self, answer: cl.Message) -> None:
        self.answer = answer
        self.kept: str | None = None  # a count under way: what the answer keeps if it ends now

    async def status(self, item: CountStatus) -> None:
        self.kept = item.kept
        if item.status != self.answer.content:
            await self.answer.stream_token(item.status, is_sequence=True)

    async def final(self, item: Final) -> None:
        self.kept = item.text
        files = [
            cl.File(name=file.name, content=file.data, mime=file.mime, display="inline")
            for file in item.files
        ]
        # Chainlit types `elements` with a TypeVar that its class does not bind
        # (list[ElementBased]), so no list of elements matches it.
        self.answer.elements = files  # type: ignore[assignment]
        await self.settle()

    async def settle(self) -> None:
        """The status gives way to what the count keeps; with nothing to keep, the message goes."""
        if self.kept is None:
            return
        kept, self.kept = self.kept, None
        if kept:
            await self.answer.stream_token(kept, is_sequence=True)
        elif self.answer.streaming:
            await self.answer.remove()
            self.answer.content, self.answer.streaming = "", False


def images_of(notice: Notice) -> list[cl.Image]:
    return [
        cl.Image(
            content=part.image.data,
            mime=part.image.mime,
            name=part.label or part.image.name,
            display="inline",
        )
        for part in notice.images
    ]


async def stream_into(
    answer: cl.Message, items: AsyncGenerator, language: str, *, sent: bool = False
) -> None:
    """Show what `respond` (or `continue_answer`) yields: progress, notices, and
    the answer's text in `answer` — sent at the end, or updated if it was `sent`.

    `items` is closed before a stopped or failed answer is shown, so the chat's
    memory (written in its `finally`) already holds what the person sees."""
    view, count, offered = ProgressView(language), CountView(answer), False
    try:
        async with aclosing(items) as answered:
            async for item in answered:
                if isinstance(item, Progress):
                    await view.show(item)
                elif isinstance(item, Notice) and item.continues:  # the last item
                    await _keep(answer, sent)
                    sent = offered = True
                    await _offer_continue(answer, item, language)
                elif isinstance(item, Notice):
                    await view.notice(item)
                elif isinstance(item, CountStatus):
                    await view.close()
                    await count.status(item)
                elif isinstance(item, Final):
                    await count.final(item)
                else:
                    await view.close()
                    await answer.stream_token(item)
    except UserFacingError as error:
        await _settle(view, count)
        await _send_failure(answer, error, language, sent)
        return
    except Exception:  # a bug: logged in full, the person gets a plain apology
        log.exception(
            "unexpected failure while answering message %s", (answer.metadata or {}).get("reply_to")
        )
        await _settle(view, count)
        await _send_failure(answer, UserFacingError(), language, sent)
        return
    except asyncio.CancelledError:  # the stop button: keep what was said so far
        await _settle(view, count)
        await _keep(answer, sent)
        raise
    await _settle(view, count)
    if not offered:
        await _keep(answer, sent)


async def _settle(view: ProgressView, count: CountView) -> None:
    await view.close()
    await count.settle()


async def _keep(answer: cl.Message, sent: bool) -> None:
    if answer.content:
        await (answer.update() if sent else answer.send())


async def _offer_continue(answer: cl.Message, notice: Notice, language: str) -> None:
    """Under an answer cut at the length limit: a Continue button for the rest."""
    label = translate("action.continue", language)
    button = cl.Action(
        name="continue", payload={"answer": notice.continues}, label=label, icon="arrow-down"
    )
    text = "⚠️ " + translate(notice.key, language, **notice.params)
    note = cl.Message(content=text, actions=[button], metadata={"kind": NOTICE_KIND})
    await note.send()
    cl.user_session.set(CUT_ANSWER, (notice.continues, answer, note))


def cut_answer() -> tuple[str, cl.Message, cl.Message] | None:
    """The chat's answer that was cut and may be continued, if any."""
    return cl.user_session.get(CUT_ANSWER)


async def withdraw_continue() -> None:
    """The Continue button goes once used, or once the chat moved past its answer."""
    cut = cut_answer()
    if cut:
        cl.user_session.set(CUT_ANSWER, None)
        await cut[2].remove()


async def send_notice(notice: Notice, language: str) -> None:
    """A notice, with the images it is about (e.g. the frames sampled from a video)."""
    text = translate(notice.key, language, **notice.params)
    prefix = "⚠️ " if notice.level == "warning" else "ℹ️ "
    await cl.Message(
        content=prefix + text, elements=images_of(notice), metadata={"kind": NOTICE_KIND}
    ).send()


async def _send_failure(
    answer: cl.Message, error: UserFacingError, language: str, sent: bool
) -> None:
    """A partial answer stays visible with the failure noted under it."""
    text = error.message(language)
    if answer.content:
        note = translate("error.partial_answer", language, reason=text)
        await answer.stream_token(f"\n\n---\n⚠️ {note}")
        await _keep(answer, sent)
    else:
        await cl.ErrorMessage(content=text).send()
