"""Each chat message a browser sends, checked before Chainlit 2.12 acts on it.

Chainlit's `process_message` (chainlit/socket.py, then the emitter's) trusts the
message the browser sends over socket.io:

- `fileReferences` may name an upload any number of times, and Chainlit reads
  and saves every repeat whole (the memory it takes: docs/security.md, "Memory
  under the repeated-reference attack"). Here repeats count once and at most
  `max_files` distinct files go on (the file picker's limit, which Chainlit does
  not check on the server); the rest are left out before any file is read, and
  named to the person.
- the step's `type`, `metadata` and `parentId` come from the browser, so a
  person could send an "assistant answer" (`metadata.kind`, which history and
  the ratings export rely on) and rate it. A message from the browser is made a
  plain user message with no metadata and no parent.
- its `id` is used as is, and Chainlit's step upsert moves an existing step to
  the sender's thread: an id that already belongs to another thread is refused,
  and so is every message while the history cannot be asked.

And `edit_message` edits whichever message of the chat has the id, so a person
could rewrite the app's answer; only their own messages can be edited.

`install` wraps Chainlit's functions, which still do the work. What to tell the
person goes to `tell(error, refused)`; `chainlit_app.py` renders it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import chainlit.socket
from chainlit.chat_context import chat_context
from chainlit.config import config
from chainlit.context import init_ws_context
from chainlit.server import sio
from chainlit.session import WebsocketSession
from chainlit.step import StepDict
from chainlit.types import MessagePayload

from handlers.core.errors import UserFacingError
from handlers.storage import owners
from handlers.web.ownership import HistoryUnavailable, history_engine, place_of

Tell = Callable[[UserFacingError, bool], Awaitable[None]]  # (what, whether the message was refused)

_original_process = chainlit.socket.process_message
_original_edit = chainlit.socket.edit_message


class FilesLeftOut(UserFacingError):
    key = "notice.too_many_files"


class MessageRefused(UserFacingError):
    key = "error.message_refused"


def install(max_files: int, tell: Tell) -> None:
    """Check every message from now on; the file picker offers `max_files` too."""
    config.features.spontaneous_file_upload.max_files = max_files

    async def process_message(session: WebsocketSession, payload: MessagePayload) -> None:
        init_ws_context(session)
        try:
            await _require_new_step(str(payload["message"].get("id")), session.thread_id)
        except (MessageRefused, HistoryUnavailable) as refusal:
            await tell(refusal, True)
            return
        payload, left_out = checked(payload, session.files, max_files)
        if left_out:
            await tell(FilesLeftOut(limit=max_files, names=", ".join(left_out)), False)
        await _original_process(session, payload)

    async def edit_message(sid: str, payload: MessagePayload) -> None:
        init_ws_context(WebsocketSession.require(sid))
        wanted = payload["message"]["id"]
        if any(m.id == wanted and m.type == "user_message" for m in chat_context.get()):
            await _original_edit(sid, payload)

    chainlit.socket.process_message = process_message
    sio.on("edit_message")(edit_message)


def uninstall() -> None:
    chainlit.socket.process_message = _original_process
    sio.on("edit_message")(_original_edit)


def checked(
    payload: MessagePayload, files: dict, max_files: int
) -> tuple[MessagePayload, list[str]]:
    """The payload as Chainlit may take it, and the names of the files left out."""
    message: StepDict = {
        **payload["message"],
        "type": "user_message",
        "metadata": {},
        "parentId": None,
    }
    distinct = list(dict.fromkeys(ref["id"] for ref in payload.get("fileReferences") or []))
    kept, dropped = distinct[:max_files], distinct[max_files:]
    names = [files[key]["name"] for key in dropped if key in files]
    return {**payload, "message": message, "fileReferences": [{"id": key} for key in kept]}, names


async def _require_new_step(step_id: str, thread_id: str | None) -> None:
    """Refuse a message id that already names a step of another thread, and any
    message while the history cannot say (`HistoryUnavailable`)."""
    engine = history_engine()
    if engine is None:
        return
    place = await place_of(engine, owners.STEP, step_id)
    if place is not None and place.thread_id != thread_id:
        raise MessageRefused()
