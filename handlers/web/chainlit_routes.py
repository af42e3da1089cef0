"""Routes in front of some of Chainlit's, on the same paths.

- `POST /project/file` (an upload): the form is read here, each piece of the
  file shown to the app as it arrives (`upload_body.py`), then Chainlit's route
  runs unchanged on it, so that a photo is prepared while it arrives and while
  the person is still typing (`handlers/chat/uploads.py`). A picture the
  browser sent without naming it is given its type (`display.displayed_type`),
  so that the chat shows the photo rather than a file chip.
- `GET /project/file/{file_id}` (the page showing an upload): Chainlit's route
  decides who may see it, as before, but it would serve the type the browser
  claimed at upload (an SVG "image" runs its script when opened in a tab): the
  bytes are sniffed as for stored files (`file_routes.sniffed_response`), and a
  HEIC or TIFF, which browsers cannot show, is answered with the app's JPEG or
  PNG of it (`handlers/web/display.py`).
- `PUT` and `DELETE /feedback` (thumbs up or down): Chainlit 2.12 lets any
  signed-in person rate or unrate any answer whose id they hold; here only the
  person whose chat it is may, or the ratings exported for evaluating the model
  could be forged. Everyone else gets 404, as for files.
- `PUT` and `DELETE /project/element`: Chainlit 2.12 overwrites or deletes the
  element (and its stored file) of any id, in any thread; here only the person
  whose chat holds it, or whose chat it is to be put in, may. Everyone else 404.
- `PUT /project/thread/share`: answered 404 while sharing is off
  (`allow_thread_sharing` in `.chainlit/config.toml`), as if it did not exist.

Each wrapper calls Chainlit's own function, so its checks stay in force. Whose a
row is comes from the history itself (`handlers/web/ownership.py`); when that
cannot be read, the request is refused with 503, never let through. A second
`register` (Chainlit's reload re-imports the app) changes nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from chainlit.config import config
from chainlit.server import UserParam
from chainlit.server import delete_feedback as chainlit_delete_feedback
from chainlit.server import delete_thread_element as chainlit_delete_element
from chainlit.server import get_file as chainlit_get_file
from chainlit.server import share_thread as chainlit_share_thread
from chainlit.server import update_feedback as chainlit_update_feedback
from chainlit.server import update_thread_element as chainlit_update_element
from chainlit.server import upload_file as chainlit_upload_file
from chainlit.session import WebsocketSession
from chainlit.types import (
    DeleteFeedbackRequest,
    ElementRequest,
    ShareThreadRequest,
    UpdateFeedbackRequest,
)
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, Response

from handlers.chat.uploads import Arrival, EarlyPreparations
from handlers.storage import owners
from handlers.web.display import displayed_type
from handlers.web.file_routes import sniffed_response
from handlers.web.ownership import history_engine, place_for
from handlers.web.routes import in_front_of
from handlers.web.upload_body import read_upload


def register(app: FastAPI, preparations: Callable[[], EarlyPreparations | None]) -> None:
    """Uploads are followed by `preparations()` (None: nobody prepares them)."""

    async def upload(
        request: Request,
        current_user: UserParam,
        session_id: str,
        ask_parent_id: str | None = None,
    ) -> Response:
        early = preparations() if _may_upload(current_user, session_id) else None
        arrival = early.follow() if early else None
        try:
            response = await _store(request, current_user, session_id, ask_parent_id, arrival)
        except BaseException:
            if arrival:
                arrival.abandon()
            raise
        session = WebsocketSession.get_by_id(session_id)
        stored = session.files.get(json.loads(bytes(response.body))["id"]) if session else None
        if stored:
            path = Path(stored["path"])
            stored["type"] = await asyncio.to_thread(displayed_type, path, stored["type"])
            if early and arrival:
                early.stored(arrival, stored["name"], path)
        elif arrival:
            arrival.abandon()
        return response

    in_front_of(app, chainlit_upload_file, upload)
    in_front_of(app, chainlit_get_file, show_file)
    in_front_of(app, chainlit_update_feedback, rate)
    in_front_of(app, chainlit_delete_feedback, unrate)
    in_front_of(app, chainlit_update_element, change_element)
    in_front_of(app, chainlit_delete_element, remove_element)
    in_front_of(app, chainlit_share_thread, share)


async def _store(
    request: Request, user, session_id: str, ask_parent_id: str | None, arrival: Arrival | None
) -> Response:
    """The upload read (each piece shown to `arrival`), then checked and stored by Chainlit."""
    file = await read_upload(request, arrival.feed if arrival else _ignore)
    if arrival:
        arrival.finish()  # the decoder need not wait for Chainlit's copy
    try:
        return await chainlit_upload_file(user, session_id, file, ask_parent_id)
    finally:
        await file.close()  # Chainlit closes it only once past its own checks


def _may_upload(user, session_id: str) -> bool:
    """Chainlit's own check, made before the body is read so that nobody's
    upload to a session not theirs is prepared (Chainlit then refuses it)."""
    session = WebsocketSession.get_by_id(session_id)
    return session is not None and (
        user is None or (session.user is not None and session.user.identifier == user.identifier)
    )


def _ignore(name: str, piece: bytes) -> None:
    pass


async def show_file(file_id: str, session_id: str, current_user: UserParam) -> Response:
    response = await chainlit_get_file(file_id, session_id, current_user)
    if not isinstance(response, FileResponse):
        return response
    stored = WebsocketSession.get_by_id(session_id).files.get(file_id) or {}
    return await sniffed_response(
        Path(response.path), name=stored.get("name") or file_id, cache="no-store"
    )


async def rate(
    request: Request, update: UpdateFeedbackRequest, current_user: UserParam
) -> Response:
    feedback = update.feedback
    await _require_owner(request, current_user, owners.STEP, feedback.forId)
    if feedback.id:  # changing a rating: the one changed must be theirs too
        await _require_owner(request, current_user, owners.FEEDBACK, feedback.id, missing_ok=True)
    return await chainlit_update_feedback(request, update, current_user)


async def unrate(
    request: Request, payload: DeleteFeedbackRequest, current_user: UserParam
) -> Response:
    await _require_owner(request, current_user, owners.FEEDBACK, payload.feedbackId)
    return await chainlit_delete_feedback(request, payload, current_user)


async def change_element(
    request: Request, payload: ElementRequest, current_user: UserParam
) -> Response:
    await _require_element_owner(request, current_user, payload.element)
    return await chainlit_update_element(payload, current_user)


async def remove_element(
    request: Request, payload: ElementRequest, current_user: UserParam
) -> Response:
    await _require_element_owner(request, current_user, payload.element)
    return await chainlit_delete_element(payload, current_user)


async def share(request: Request, payload: ShareThreadRequest, current_user: UserParam) -> Response:
    if not getattr(config.features, "allow_thread_sharing", False):
        raise HTTPException(status_code=404, detail="Not found")
    return await chainlit_share_thread(request, payload, current_user)


async def _require_element_owner(request: Request, user, element: dict) -> None:
    """The element, if it exists, and the thread it names must both be the user's."""
    await _require_owner(request, user, owners.ELEMENT, str(element.get("id")), missing_ok=True)
    if element.get("threadId"):
        await _require_owner(
            request, user, owners.THREAD, str(element["threadId"]), missing_ok=True
        )


async def _require_owner(
    request: Request, user, lookup: owners.Lookup, row_id: str, *, missing_ok: bool = False
) -> None:
    """404 unless `row_id` leads to a thread of `user`'s (or, with `missing_ok`, to
    nothing); 503 when the history cannot say which (`handlers/web/ownership.py`)."""
    engine = history_engine()
    if user is None or engine is None:
        return  # no sign-in or no history: Chainlit's own answer stands
    place = await place_for(request, engine, lookup, row_id)
    if missing_ok and (place is None or place.thread_id is None):
        return
    if place is None or place.author != user.identifier:
        raise HTTPException(status_code=404, detail="Not found")
