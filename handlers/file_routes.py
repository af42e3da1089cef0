"""The app's HTTP routes beside Chainlit's: persisted files, served to the person
who owns them, and uploads, handed on as they arrive.

`LocalStorageClient` hands Chainlit URLs of the form `/files/<object key>`; this
route answers them. A file is served only when the signed-in user (Chainlit's
own `get_current_user`, so cookie or bearer token alike) is the author of the
thread whose element points at that key. Every other case -- not signed in, a
bad token, someone else's file, an unknown or malformed key -- gets the same
404, so the route does not reveal which files exist.

Chainlit registers a catch-all GET for its frontend when `chainlit.server` is
imported, so a route added later with `@app.get` would never be reached:
`register` puts this one first.

The bytes are sniffed, not trusted: recognised image formats are served inline
with their type, anything else as an `application/octet-stream` download.

`register_uploads` puts a route in front of Chainlit's own upload route, on the
same path: it runs Chainlit's unchanged, then tells the app which file arrived,
so that a photo can be prepared while the person is still typing
(`handlers/uploads.py`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import filetype
from chainlit.auth import get_current_user, reuseable_oauth
from chainlit.data import get_data_layer
from chainlit.data.sql_alchemy import SQLAlchemyDataLayer
from chainlit.server import UserParam
from chainlit.server import router as chainlit_router
from chainlit.server import upload_file as chainlit_upload_file
from chainlit.session import WebsocketSession
from fastapi import APIRouter, Depends, FastAPI, HTTPException, UploadFile
from fastapi.responses import FileResponse, Response
from fastapi.routing import APIRoute

from handlers.storage import URL_PREFIX, LocalStorageClient, UnsafeObjectKey

ROUTE_NAME = "persisted_file"
UPLOAD_ROUTE_NAME = "upload_then_notify"
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"})


def register(app: FastAPI) -> None:
    """Add the route ahead of Chainlit's catch-all; a second call (Chainlit's
    reload on file change re-imports the app) changes nothing."""
    if any(getattr(route, "name", None) == ROUTE_NAME for route in app.router.routes):
        return
    router = APIRouter()
    router.add_api_route(
        f"{URL_PREFIX}/{{object_key:path}}", serve_file, methods=["GET"], name=ROUTE_NAME
    )
    app.router.routes[0:0] = router.routes


def register_uploads(app: FastAPI, arrived: Callable[[str, Path], None]) -> None:
    """Call `arrived(name, path)` for each file Chainlit has stored from an upload."""
    if any(getattr(route, "name", None) == UPLOAD_ROUTE_NAME for route in app.router.routes):
        return
    chainlit_route = next(
        (r for r in chainlit_router.routes if isinstance(r, APIRoute) and r.endpoint is chainlit_upload_file),
        None,
    )
    if chainlit_route is None:
        raise RuntimeError("Chainlit's upload route was not found: is this Chainlit 2.12?")

    async def upload(
        current_user: UserParam, session_id: str, file: UploadFile, ask_parent_id: str | None = None
    ) -> Response:
        response = await chainlit_upload_file(current_user, session_id, file, ask_parent_id)
        session = WebsocketSession.get_by_id(session_id)
        stored = session.files.get(json.loads(response.body)["id"]) if session else None
        if stored:
            arrived(stored["name"], Path(stored["path"]))
        return response

    router = APIRouter()
    router.add_api_route(chainlit_route.path, upload, methods=["POST"], name=UPLOAD_ROUTE_NAME)
    app.router.routes[0:0] = router.routes


async def serve_file(object_key: str, token: str | None = Depends(reuseable_oauth)) -> FileResponse:
    layer = get_data_layer()
    if not isinstance(layer, SQLAlchemyDataLayer) or not isinstance(
        layer.storage_provider, LocalStorageClient
    ):
        raise _not_found()
    try:
        path = layer.storage_provider.path_for(object_key)
    except UnsafeObjectKey:
        raise _not_found() from None
    viewer = await _signed_in_identifier(token)
    if viewer is None or viewer != await _owner_of(layer, object_key) or not path.is_file():
        raise _not_found()
    media_type = await asyncio.to_thread(filetype.guess_mime, str(path))
    inline = media_type in INLINE_TYPES
    return FileResponse(
        path,
        media_type=media_type if inline else "application/octet-stream",
        filename=path.name,
        content_disposition_type="inline" if inline else "attachment",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"},
    )


def _not_found() -> HTTPException:
    return HTTPException(status_code=404, detail="Not found")


async def _signed_in_identifier(token: str | None) -> str | None:
    """Chainlit answers a missing or bad token with 401; here that is just "nobody"."""
    try:
        user = await get_current_user(token)
    except HTTPException:
        return None
    return user.identifier if user else None


async def _owner_of(layer: SQLAlchemyDataLayer, object_key: str) -> str | None:
    """The identifier of the person whose thread holds the element stored at `object_key`."""
    rows = await layer.execute_sql(
        'SELECT "threadId" FROM elements WHERE "objectKey" = :key', {"key": object_key}
    )
    if not isinstance(rows, list) or not rows or rows[0]["threadId"] is None:
        return None
    try:
        return await layer.get_thread_author(rows[0]["threadId"])
    except ValueError:
        return None
