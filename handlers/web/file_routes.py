"""The HTTP route that serves persisted element files to the person who owns them.

`LocalStorageClient` hands Chainlit URLs of the form `/files/<object key>`; this
route answers them. A file is served only when the signed-in user (Chainlit's
own `get_current_user`, so cookie or bearer token alike) is the author of the
thread whose element points at that key. Every other case -- not signed in, a
bad token, someone else's file, an unknown or malformed key -- gets the same
404, so the route does not reveal which files exist; a signed-in person gets 503
when the history cannot say whose the file is (`handlers/web/ownership.py`).

Chainlit's catch-all GET for its frontend would answer these URLs first, so
`register` puts this route ahead of it (`handlers/web/routes.py`).

The bytes are sniffed, not trusted: recognised image formats are served inline
with their type, HEIC and TIFF as the JPEG or PNG the app prepared from them
(`handlers/web/display.py`), anything else as an `application/octet-stream` download.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import filetype
from chainlit.auth import get_current_user, reuseable_oauth
from chainlit.data import get_data_layer
from chainlit.data.sql_alchemy import SQLAlchemyDataLayer
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, Response

from handlers.storage import owners
from handlers.storage.files import URL_PREFIX, LocalStorageClient, UnsafeObjectKey
from handlers.web.display import SHOWN_AS_IS, rendition_for
from handlers.web.ownership import place_for
from handlers.web.routes import add_ahead_of_chainlit

ROUTE_NAME = "persisted_file"


def register(app: FastAPI) -> None:
    """Add the route ahead of Chainlit's catch-all; a second call changes nothing."""
    add_ahead_of_chainlit(
        app, f"{URL_PREFIX}/{{object_key:path}}", serve_file, methods=["GET"], name=ROUTE_NAME
    )


async def serve_file(
    request: Request, object_key: str, token: str | None = Depends(reuseable_oauth)
) -> Response:
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
    if (
        viewer is None
        or viewer != await _owner_of(request, layer, object_key)
        or not path.is_file()
    ):
        raise _not_found()
    return await sniffed_response(path, name=path.name, cache="private, max-age=3600")


async def sniffed_response(path: Path, *, name: str, cache: str) -> Response:
    """`path` served by what its bytes are, whatever type it was uploaded with:
    an image browsers show, inline; anything else (an SVG, a web page) as a
    download, never rendered by the browser."""
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": cache}
    if shown := await rendition_for(path):
        return Response(shown.data, media_type=shown.mime, headers=headers)
    media_type = await asyncio.to_thread(filetype.guess_mime, str(path))
    inline = media_type in SHOWN_AS_IS
    return FileResponse(
        path,
        media_type=media_type if inline else "application/octet-stream",
        filename=name,
        content_disposition_type="inline" if inline else "attachment",
        headers=headers,
    )


def _not_found() -> HTTPException:
    return HTTPException(status_code=404, detail="Not found")


async def _signed_in_identifier(token: str | None) -> str | None:
    """Chainlit answers a missing or bad token with 401; here that is just "nobody"."""
    try:
        # Chainlit's own dependency passes None for no token too (401); it annotates `str`.
        user = await get_current_user(token)  # type: ignore[arg-type]
    except HTTPException:
        return None
    return user.identifier if user else None


async def _owner_of(request: Request, layer: SQLAlchemyDataLayer, object_key: str) -> str | None:
    """Whose chat holds the element stored at `object_key`; 503 when the history cannot say."""
    place = await place_for(request, layer.engine, owners.STORED_FILE, object_key)
    return place.author if place else None
