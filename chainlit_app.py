"""Chainlit callbacks, and nothing else: each one delegates to `handlers/`.

This is the only module that turns errors into chat messages.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import chainlit as cl
from chainlit.input_widget import Select

from handlers.attachments import Upload
from handlers.chat import Assistant, ChatSession, Incoming, Notice, start_assistant
from handlers.errors import UserFacingError
from handlers.i18n import translate
from handlers.prompts import PRESETS
from handlers.settings import ANSWER_LANGUAGES, load_settings

log = logging.getLogger("visual_assistant")

_assistant: Assistant | None = None


def assistant() -> Assistant:
    if _assistant is None:
        raise RuntimeError("the app has not started")
    return _assistant


@cl.on_app_startup
async def on_app_startup() -> None:
    global _assistant
    _assistant = await start_assistant(load_settings())


@cl.on_app_shutdown
async def on_app_shutdown() -> None:
    if _assistant is not None:
        await _assistant.client.aclose()


@cl.on_chat_start
async def on_chat_start() -> None:
    chat = ChatSession(
        ui_language=cl.context.session.language or "en-US",
        answer_language=assistant().settings.answer_language,
    )
    cl.user_session.set("chat", chat)
    await cl.context.emitter.set_commands(_commands(chat.ui_language))
    await cl.ChatSettings([_language_setting(chat)]).send()


@cl.on_settings_update
async def on_settings_update(values: dict) -> None:
    _chat().answer_language = values.get("answer_language", "auto")


@cl.on_message
async def on_message(message: cl.Message) -> None:
    chat = _chat()
    answer = cl.Message(content="")
    try:
        async for item in assistant().respond(chat, _incoming(message)):
            if isinstance(item, Notice):
                await _send_notice(item, chat.ui_language)
            else:
                await answer.stream_token(item)
    except UserFacingError as error:
        await _send_failure(answer, error, chat.ui_language)
        return
    except asyncio.CancelledError:  # the stop button: keep what was said so far
        if answer.content:
            await answer.send()
        raise
    if answer.content:
        await answer.send()


@cl.on_chat_end
async def on_chat_end() -> None:
    cl.user_session.set("chat", None)


def _chat() -> ChatSession:
    chat = cl.user_session.get("chat")
    if chat is None:  # e.g. a session restored after the app restarted
        chat = ChatSession(ui_language=cl.context.session.language or "en-US")
        cl.user_session.set("chat", chat)
    return chat


def _incoming(message: cl.Message) -> Incoming:
    uploads = [
        Upload(key=element.id, name=element.name, path=Path(element.path))
        for element in message.elements or []
        if getattr(element, "path", None)
    ]
    return Incoming(message.id, message.content or "", message.command, uploads)


async def _send_notice(notice: Notice, language: str) -> None:
    text = translate(notice.key, language, **notice.params)
    prefix = "⚠️ " if notice.level == "warning" else "ℹ️ "
    await cl.Message(content=prefix + text, author="assistant").send()


async def _send_failure(answer: cl.Message, error: UserFacingError, language: str) -> None:
    """A partial answer stays visible with the failure noted under it."""
    text = error.message(language)
    if answer.content:
        note = translate("error.partial_answer", language, reason=text)
        await answer.stream_token(f"\n\n---\n⚠️ {note}")
        await answer.send()
    else:
        await cl.ErrorMessage(content=text).send()


def _commands(language: str) -> list[dict]:
    return [
        {
            "id": preset.id,
            "icon": preset.icon,
            "description": translate(f"preset.{preset.id}", language),
            "button": False,
        }
        for preset in PRESETS
    ]


def _language_setting(chat: ChatSession) -> Select:
    labels = {code: translate(f"settings.language_{code}", chat.ui_language) for code in ANSWER_LANGUAGES}
    return Select(
        id="answer_language",
        label=translate("settings.language", chat.ui_language),
        items={label: code for code, label in labels.items()},
        initial_value=chat.answer_language,
    )
