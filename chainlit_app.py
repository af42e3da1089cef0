"""Chainlit callbacks, and nothing else: each one delegates to `handlers/`.

This is the only module that turns errors into chat messages.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing
from pathlib import Path

import chainlit as cl
from chainlit.input_widget import Select
from chainlit.oauth_providers import get_configured_oauth_providers
from chainlit.server import app as chainlit_server
from chainlit.server import sio as chainlit_socket
from chainlit.types import ThreadDict

from handlers import (
    auth_routes, browser_policy, chainlit_routes, file_routes, history, message_guard, revocation, sign_in,
)
from handlers.attachments import Upload
from handlers.chat import ChatSession, Incoming, Notice
from handlers.conversation import Conversation
from handlers.counting import Final, Progress
from handlers.errors import UserFacingError
from handlers.i18n import translate
from handlers.prompts import PRESETS
from handlers.services import Services, start_services
from handlers.sessions import ChatRegistry
from handlers.settings import ANSWER_LANGUAGES, load_settings

log = logging.getLogger("visual_assistant")

_services: Services | None = None
_chats = ChatRegistry()

file_routes.register(chainlit_server)
browser_policy.register(chainlit_server, chainlit_socket)


def _upload_arrived(name: str, path: Path) -> None:
    if _services is not None and _services.assistant.early is not None:
        _services.assistant.early.start(name, path)


chainlit_routes.register(chainlit_server, _upload_arrived)
auth_routes.register(chainlit_server, lambda: _services.sign_ins if _services else None)


def services() -> Services:
    if _services is None:
        raise RuntimeError("the app has not started")
    return _services


@cl.on_app_startup
async def on_app_startup() -> None:
    global _services
    _services = await start_services(load_settings())
    settings = _services.settings
    revocation.install(
        revocation.TokenPolicy(_services.users.tokens_valid_after, settings.session_max_hours * 3600)
    )
    browser_policy.install(settings.allowed_origins)
    message_guard.install(settings.max_files_per_message, _tell)
    auth_routes.secure_cookies(settings.cookie_secure)
    if settings.auth_header:
        cl.header_auth_callback(_header_login)
    if get_configured_oauth_providers():  # Chainlit refuses the callback without a provider
        cl.oauth_callback(oauth_login)
        if not (settings.oauth_allowed_users or settings.oauth_allowed_domains):
            log.error("OAuth is configured but OAUTH_ALLOWED_USERS and OAUTH_ALLOWED_DOMAINS are "
                      "empty: nobody can sign in with it")


@cl.on_app_shutdown
async def on_app_shutdown() -> None:
    revocation.uninstall()
    message_guard.uninstall()
    if _services is not None:
        await _services.close()


@cl.data_layer
def data_layer():
    return services().data_layer


@cl.password_auth_callback
async def password_login(username: str, password: str) -> cl.User | None:
    if await services().users.verify(username, password):
        return sign_in.password_user(username)
    return None


async def _header_login(headers) -> cl.User | None:
    """For teams behind an SSO proxy that sets a trusted header (AUTH_TRUSTED_HEADER)."""
    return await sign_in.header_user(headers, services().settings, services().users.has_credential)


async def oauth_login(provider_id: str, token: str, raw_user_data: dict, default_user: cl.User, *_):
    return sign_in.oauth_user(provider_id, raw_user_data, default_user, services().settings)


async def _tell(error: UserFacingError, refused: bool) -> None:
    """What the message guard says about a message as it arrives (handlers/message_guard.py)."""
    language = cl.context.session.language or "en-US"
    if refused:
        await cl.ErrorMessage(content=error.message(language)).send()
    else:
        await _send_notice(Notice(error.key, error.params, "warning"), language)


@cl.on_chat_start
async def on_chat_start() -> None:
    chat = _new_chat(cl.context.session.thread_id)
    await _offer_tools(chat)


@cl.on_chat_resume
async def on_chat_resume(thread: ThreadDict) -> None:
    """Chainlit leaves `message.elements` empty on resume: rebuild what the model saw."""
    found = services()
    conversation = await history.rebuild(
        thread, found.store, found.storage.path_for, max_bytes=found.settings.max_upload_bytes
    )
    await _offer_tools(_new_chat(thread["id"], conversation))


@cl.on_settings_update
async def on_settings_update(values: dict) -> None:
    chat = _chat()
    try:
        chat.choose_answer_language(values.get("answer_language", chat.answer_language))
    except UserFacingError as error:  # Chainlit already stored the value: put ours back
        cl.context.session.chat_settings["answer_language"] = chat.answer_language
        await cl.ErrorMessage(content=error.message(chat.ui_language)).send()


@cl.on_message
async def on_message(message: cl.Message) -> None:
    # Chainlit 2.12 runs an edited message's on_message outside the session's
    # current task, so the stop button and a closed tab could not cancel it:
    # while answering, this task is the one they cancel.
    session = cl.context.session
    previous, session.current_task = session.current_task, asyncio.current_task()
    try:
        await _answer(message)
    finally:
        session.current_task = previous


async def _answer(message: cl.Message) -> None:
    chat = _chat()
    token = cl.context.session.token
    if token and await revocation.is_revoked(token):
        await cl.ErrorMessage(content=translate("error.signed_out", chat.ui_language)).send()
        return
    answer = cl.Message(content="", metadata={"kind": history.ANSWER_KIND, "reply_to": message.id})
    shown = _Shown(answer, chat.ui_language)
    try:
        async with aclosing(services().assistant.respond(chat, _incoming(message))) as items:
            async for item in items:
                await shown.show(item)
    except UserFacingError as error:
        await shown.settle()
        await _send_failure(answer, error, chat.ui_language)
        return
    except Exception:  # a bug: logged in full, the person gets a plain apology
        log.exception("unexpected failure while answering message %s", message.id)
        await shown.settle()
        await _send_failure(answer, UserFacingError(), chat.ui_language)
        return
    except asyncio.CancelledError:  # the stop button: keep what was said so far
        await shown.settle()
        if answer.content:
            await answer.send()
        raise
    if answer.content:
        await answer.send()


class _Shown:
    """The answer message as it streams: text, a count's status, its final table."""

    def __init__(self, answer: cl.Message, language: str) -> None:
        self.answer, self.language = answer, language
        self.kept: str | None = None  # a count under way: what the answer keeps if it ends now

    async def show(self, item) -> None:
        if isinstance(item, Notice):
            await _send_notice(item, self.language)
        elif isinstance(item, Progress):
            self.kept = item.kept
            if item.status != self.answer.content:
                await self.answer.stream_token(item.status, is_sequence=True)
        elif isinstance(item, Final):
            self.kept = item.text
            self.answer.elements = [
                cl.File(name=file.name, content=file.data, mime=file.mime, display="inline") for file in item.files
            ]
            await self.settle()
        else:
            await self.answer.stream_token(item)

    async def settle(self) -> None:
        """A count's status gives way to what it keeps; with nothing to keep, the message goes."""
        if self.kept is None:
            return
        kept, self.kept = self.kept, None
        if kept:
            await self.answer.stream_token(kept, is_sequence=True)
        elif self.answer.streaming:
            await self.answer.remove()
            self.answer.content, self.answer.streaming = "", False


# What Chainlit 2.12's stop handler sends, in English whatever the person's language.
CHAINLIT_STOP_TEXT = "Task manually stopped."


@cl.on_stop
async def on_stop() -> None:
    """Say Chainlit's stop message in the person's language (it has no translation key)."""
    for message in reversed(cl.chat_context.get()):
        if message.content == CHAINLIT_STOP_TEXT:
            message.content = "⏹️ " + translate("notice.stopped", _chat().ui_language)
            await message.update()
            return


@cl.on_chat_end
async def on_chat_end() -> None:
    """The browser went away or started a new chat: stop generating for it
    (Chainlit does not cancel the running task on disconnect) and free its memory."""
    session = cl.context.session
    if session.current_task and not session.current_task.done():
        session.current_task.cancel()
    if session.to_clear:
        _chats.forget(session.id)
    else:
        _chats.forget_later(session.id)


def _chat() -> ChatSession:
    chat = _chats.get(cl.context.session.id)
    if chat is None:  # a session that outlived its memory (e.g. past the reconnect grace)
        chat = _new_chat(cl.context.session.thread_id)
    return chat


def _new_chat(thread_id: str | None, conversation: Conversation | None = None) -> ChatSession:
    """A chat for this session, remembered; its answer language is the one the person
    chose (Chainlit keeps chat settings with the thread), else the app's default."""
    session = cl.context.session
    chosen = (session.chat_settings or {}).get("answer_language")
    chat = ChatSession(
        ui_language=session.language or "en-US",
        answer_language=chosen if chosen in ANSWER_LANGUAGES else services().settings.answer_language,
        thread_id=thread_id,
        conversation=conversation or Conversation(),
    )
    _chats.put(session.id, chat)
    return chat


def _incoming(message: cl.Message) -> Incoming:
    uploads = [
        Upload(key=element.id, name=element.name, path=Path(element.path))
        for element in message.elements or []
        if getattr(element, "path", None)
    ]
    return Incoming(message.id, message.content or "", message.command, uploads)


async def _offer_tools(chat: ChatSession) -> None:
    await cl.context.emitter.set_commands(_commands(chat.ui_language))
    await cl.ChatSettings([_language_setting(chat)]).send()


async def _send_notice(notice: Notice, language: str) -> None:
    """A notice, with the images it is about (e.g. the frames sampled from a video)."""
    text = translate(notice.key, language, **notice.params)
    prefix = "⚠️ " if notice.level == "warning" else "ℹ️ "
    images = [
        cl.Image(content=part.image.data, mime=part.image.mime, name=part.label or part.image.name, display="inline")
        for part in notice.images
    ]
    await cl.Message(content=prefix + text, elements=images, metadata={"kind": "notice"}).send()


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
