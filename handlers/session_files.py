"""Routes in front of two of Chainlit's, on the same paths, for files of a live chat.

- `POST /project/file` (an upload): Chainlit's route runs unchanged, then the
  app is told which file arrived, so that a photo is prepared while the person
  is still typing (`handlers/uploads.py`).
- `GET /project/file/{file_id}` (the page showing an upload): Chainlit's route
  decides who may see it, as before; a HEIC or TIFF, which browsers cannot
  show, is answered with the app's JPEG or PNG of it (`handlers/display.py`).

Chainlit 2.12 registers these on its router; each wrapper calls Chainlit's own
function, so its checks (signed-in user owns the session) stay in force. A
second `register` (Chainlit's reload re-imports the app) changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from chainlit.server import UserParam
from chainlit.server import get_file as chainlit_get_file
from chainlit.server import router as chainlit_router
from chainlit.server import upload_file as chainlit_upload_file
from chainlit.session import WebsocketSession
from fastapi import APIRouter, FastAPI, UploadFile
from fastapi.responses import FileResponse, Response
from fastapi.routing import APIRoute

from handlers.display import rendition_for

UPLOAD_ROUTE_NAME = "upload_then_notify"
SHOW_ROUTE_NAME = "session_file_for_browsers"


def register(app: FastAPI, arrived: Callable[[str, Path], None]) -> None:
    """`arrived(name, path)` is called for each file Chainlit has stored from an upload."""

    async def upload(
        current_user: UserParam, session_id: str, file: UploadFile, ask_parent_id: str | None = None
    ) -> Response:
        response = await chainlit_upload_file(current_user, session_id, file, ask_parent_id)
        session = WebsocketSession.get_by_id(session_id)
        stored = session.files.get(json.loads(response.body)["id"]) if session else None
        if stored:
            arrived(stored["name"], Path(stored["path"]))
        return response

    async def show(file_id: str, session_id: str, current_user: UserParam) -> Response:
        response = await chainlit_get_file(file_id, session_id, current_user)
        if isinstance(response, FileResponse) and (shown := await rendition_for(Path(response.path))):
            return Response(shown.data, media_type=shown.mime, headers={"X-Content-Type-Options": "nosniff"})
        return response

    _in_front_of(app, chainlit_upload_file, upload, UPLOAD_ROUTE_NAME)
    _in_front_of(app, chainlit_get_file, show, SHOW_ROUTE_NAME)


def _in_front_of(app: FastAPI, chainlit_endpoint: Callable, endpoint: Callable, name: str) -> None:
    if any(getattr(route, "name", None) == name for route in app.router.routes):
        return
    original = next(
        (r for r in chainlit_router.routes if isinstance(r, APIRoute) and r.endpoint is chainlit_endpoint), None
    )
    if original is None:
        raise RuntimeError(f"Chainlit's route for {chainlit_endpoint.__name__} was not found: is this Chainlit 2.12?")
    router = APIRouter()
    router.add_api_route(original.path, endpoint, methods=list(original.methods), name=name)
    app.router.routes[0:0] = router.routes
