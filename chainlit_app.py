"""Chainlit callbacks, and nothing else: each one delegates to `handlers/`.

This and `handlers/web/answer_view.py` (how one answer is shown) are the only
modules that turn errors into chat messages.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import chainlit as cl
from chainlit.input_widget import InputWidget, Select
from chainlit.oauth_providers import get_configured_oauth_providers
from chainlit.server import app as chainlit_server
from chainlit.server import sio as chainlit_socket
from chainlit.session import WebsocketSession
from chainlit.types import CommandDict, ThreadDict

from handlers.chat import download as chat_download
from handlers.chat import history, welcome
from handlers.chat.attachments import Upload
from handlers.chat.conversation import Conversation
from handlers.chat.sessions import ChatRegistry
from handlers.chat.turn import ChatSession, Incoming, Notice
from handlers.core.errors import RequestRefused, UserFacingError
from handlers.core.i18n import translate
from handlers.core.message_kinds import ANSWER_KIND, DOWNLOAD_KIND
from handlers.core.prompts import PRESETS
from handlers.core.settings import ANSWER_LANGUAGES, load_settings
from handlers.services import Services, start_services
from handlers.web import (
    auth_routes,
    browser_policy,
    chainlit_routes,
    file_routes,
    message_guard,
    revocation,
    sign_in,
)
from handlers.web.answer_view import cut_answer, send_notice, stream_into, withdraw_continue

log = logging.getLogger("visual_assistant")

_services: Services | None = None
_chats = ChatRegistry()

file_routes.register(chainlit_server)
browser_policy.register(chainlit_server, chainlit_socket)


chainlit_routes.register(chainlit_server, lambda: _services.assistant.early if _services else None)
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
        revocation.TokenPolicy(
            _services.users.tokens_valid_after, settings.session_max_hours * 3600
        )
    )
    browser_policy.install(settings.allowed_origins)
    message_guard.install(settings.max_files_per_message, _tell)
    auth_routes.secure_cookies(settings.cookie_secure)
    if settings.auth_header:
        cl.header_auth_callback(_header_login)
    if get_configured_oauth_providers():  # Chainlit refuses the callback without a provider
        cl.oauth_callback(oauth_login)
        if not (settings.oauth_allowed_users or settings.oauth_allowed_domains):
            log.error(
                "OAuth is configured but OAUTH_ALLOWED_USERS and OAUTH_ALLOWED_DOMAINS are "
                "empty: nobody can sign in with it"
            )


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
    """What the message guard says about a message as it arrives (handlers/web/message_guard.py)."""
    language = _session().language or "en-US"
    if refused:
        await cl.ErrorMessage(content=error.message(language)).send()
    else:
        await send_notice(Notice(error.key, error.params, "warning"), language)


@cl.set_starters
async def set_starters(user: cl.User | None, language: str | None = None) -> list[cl.Starter]:
    """The five tasks on the empty chat, in the browser's language (handlers/chat/welcome.py)."""
    return [cl.Starter(**vars(spec)) for spec in welcome.starters(language)]


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
    if message.command == DOWNLOAD_COMMAND:
        await _send_download(message)
        return
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
    await withdraw_continue()  # a new question moves past a cut answer
    answer = cl.Message(content="", metadata={"kind": ANSWER_KIND, "reply_to": message.id})
    await stream_into(
        answer, services().assistant.respond(chat, _incoming(message)), chat.ui_language
    )


@cl.action_callback("continue")
async def on_continue(action: cl.Action) -> None:
    """The rest of a cut answer, in the same answer. Chainlit runs action callbacks
    in the HTTP request, not as the session's task: this runs the continuation
    as one, so the stop button (and a closed tab) cancel it."""
    session = cl.context.session
    task = asyncio.create_task(_continue(action.payload.get("answer")))
    previous, session.current_task = session.current_task, task
    await cl.context.emitter.task_start()  # shows the stop button
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        session.current_task = previous
        await cl.context.emitter.task_end()


async def _continue(answer_id: object) -> None:
    chat = _chat()
    cut = cut_answer()
    if not cut or cut[0] != answer_id:
        error = RequestRefused("error.continue_moved_on")
        await cl.ErrorMessage(content=error.message(chat.ui_language)).send()
        return
    await withdraw_continue()
    _, answer, _ = cut
    items = services().assistant.continue_answer(chat, cut[0])
    await stream_into(answer, items, chat.ui_language, sent=True)


DOWNLOAD_COMMAND = "download"


async def _send_download(request: cl.Message) -> None:
    """`/download`: the chat as a zip (handlers/chat/download.py), for its owner only."""
    language, found = _chat().ui_language, services()
    request.metadata = {**(request.metadata or {}), "kind": DOWNLOAD_KIND}
    await request.update()  # marked, so that a resume does not take it for a question
    user = cl.context.session.user
    try:
        thread = await chat_download.owned_thread(
            found.data_layer, cl.context.session.thread_id, user.identifier if user else None
        )
        if not chat_download.has_questions(thread, skip=frozenset({request.id})):
            await _download_reply(
                request, cl.Message(content="ℹ️ " + translate("download.nothing", language))
            )
            return
        download = await asyncio.to_thread(
            chat_download.build_download,
            thread,
            found.store,
            found.storage.path_for,
            language=language,
            max_bytes=found.settings.max_download_bytes,
            skip=frozenset({request.id}),
        )
    except UserFacingError as error:
        await _download_reply(request, cl.ErrorMessage(content=error.message(language)))
        return
    try:
        await _send_zip(request, download, language, found.settings.max_download_mb)
    finally:
        download.path.unlink(missing_ok=True)


async def _download_reply(request: cl.Message, reply: cl.Message | cl.ErrorMessage) -> None:
    """Send a reply to `/download` naming its request: history leaves both out of
    the conversation even if the request's own mark was not written."""
    reply.metadata = {"kind": DOWNLOAD_KIND, "reply_to": request.id}
    await reply.send()


async def _send_zip(
    request: cl.Message, download: chat_download.Download, language: str, limit_mb: int
) -> None:
    """Sent from the session's files only (persist=False): a chat's history does not
    keep copies of itself."""
    if download.left_out:
        text = translate(
            "download.ready_left_out",
            language,
            images=download.images,
            left_out=download.left_out,
            limit=limit_mb,
        )
    else:
        text = translate("download.ready", language, images=download.images)
    reply = cl.Message(content=text)
    await _download_reply(request, reply)
    zip_file = cl.File(
        name=download.file_name, path=str(download.path), mime="application/zip", display="inline"
    )
    await zip_file.send(for_id=reply.id, persist=False)


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
    session = _session()
    if session.current_task and not session.current_task.done():
        session.current_task.cancel()
    if session.to_clear:
        _chats.forget(session.id)
    else:
        _chats.forget_later(session.id)


def _session() -> WebsocketSession:
    """The session a callback here runs in: always a socket's (actions too, by the
    session id they carry); Chainlit makes HTTP sessions only for its REST API."""
    session = cl.context.session
    assert isinstance(session, WebsocketSession), "a chat callback outside a socket session"
    return session


def _chat() -> ChatSession:
    chat = _chats.get(cl.context.session.id)
    if chat is None:  # a session that outlived its memory (e.g. past the reconnect grace)
        chat = _new_chat(cl.context.session.thread_id)
    return chat


def _new_chat(thread_id: str | None, conversation: Conversation | None = None) -> ChatSession:
    """A chat for this session, remembered; its answer language is the one the person
    chose (Chainlit keeps chat settings with the thread), else the app's default."""
    session = _session()
    chosen = (session.chat_settings or {}).get("answer_language")
    chat = ChatSession(
        ui_language=session.language or "en-US",
        answer_language=chosen
        if chosen in ANSWER_LANGUAGES
        else services().settings.answer_language,
        thread_id=thread_id,
        conversation=conversation or Conversation(),
    )
    _chats.put(session.id, chat)
    return chat


def _incoming(message: cl.Message) -> Incoming:
    uploads = [
        Upload(key=element.id, name=element.name, path=Path(path))
        for element in message.elements or []
        if (path := getattr(element, "path", None))
    ]
    return Incoming(message.id, message.content or "", message.command, uploads)


async def _offer_tools(chat: ChatSession) -> None:
    await cl.context.emitter.set_commands(_commands(chat.ui_language))
    inputs: list[InputWidget] = [_language_setting(chat)]
    await cl.ChatSettings(inputs).send()


def _commands(language: str) -> list[CommandDict]:
    presets: list[CommandDict] = [
        {
            "id": preset.id,
            "icon": preset.icon,
            "description": translate(f"preset.{preset.id}", language),
            "button": False,
            "persistent": False,
            "selected": False,
        }
        for preset in PRESETS
    ]
    download: CommandDict = {
        "id": DOWNLOAD_COMMAND,
        "icon": "download",
        "description": translate("download.command", language),
        "button": False,
        "persistent": False,
        "selected": False,
    }
    return [*presets, download]


def _language_setting(chat: ChatSession) -> Select:
    labels = {
        code: translate(f"settings.language_{code}", chat.ui_language) for code in ANSWER_LANGUAGES
    }
    return Select(
        id="answer_language",
        label=translate("settings.language", chat.ui_language),
        items={label: code for code, label in labels.items()},
        initial_value=chat.answer_language,
    )
