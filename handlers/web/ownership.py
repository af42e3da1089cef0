"""Whose chat a row is, asked of the app's history for the routes and the message guard.

The questions are `handlers.storage.owners`'s, asked through the engine of the
app's history: that of Chainlit's data layer, which `handlers.services` builds
(`handlers.storage.database.make_data_layer`). When one cannot be answered (the
database down or locked too long), `HistoryUnavailable` refuses what was asked:
503 over HTTP, an error in the chat. It is never taken for "no such row", which
some checks let through (a rating or element with a new id).
"""

from __future__ import annotations

import logging

from chainlit.data import get_data_layer
from chainlit.data.sql_alchemy import SQLAlchemyDataLayer
from fastapi import HTTPException, Request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from handlers.core.errors import UserFacingError
from handlers.storage import owners
from handlers.storage.owners import Lookup, Place
from handlers.web.routes import request_language

log = logging.getLogger(__name__)

RETRY_SECONDS = 5


class HistoryUnavailable(UserFacingError):
    key = "error.history_unavailable"


def history_engine() -> AsyncEngine | None:
    """The history's engine; None when the app keeps no history (nothing to check against)."""
    layer = get_data_layer()
    return layer.engine if isinstance(layer, SQLAlchemyDataLayer) else None


async def place_of(engine: AsyncEngine, lookup: Lookup, value: str) -> Place | None:
    """Where the row is (None: no such row); `HistoryUnavailable` when the query failed."""
    try:
        return await owners.find(engine, lookup, value)
    except (SQLAlchemyError, OSError) as error:
        log.error("could not look up %s %r in the history: %s", lookup.column, value, error)
        raise HistoryUnavailable() from error


async def place_for(
    request: Request, engine: AsyncEngine, lookup: Lookup, value: str
) -> Place | None:
    """`place_of` for a route: a failed query answers 503, in the request's language."""
    try:
        return await place_of(engine, lookup, value)
    except HistoryUnavailable as error:
        raise HTTPException(
            status_code=503,
            detail=error.message(request_language(request)),
            headers={"Retry-After": str(RETRY_SECONDS)},
        ) from error
