"""Putting the app's HTTP routes ahead of Chainlit's, the one way it is done.

Chainlit adds its API routes and then a catch-all GET for its frontend when
`chainlit.server` is imported, and Starlette answers with the first route that
matches: a route added later with `@app.get` is never reached, whether its path
is new (the catch-all answers it) or one of Chainlit's (Chainlit's route does).
`add_ahead_of_chainlit` puts a route first; `in_front_of` does so on the path and
methods of one of Chainlit's routes, to wrap it. Registering a name again
(Chainlit's reload on file change re-imports the app) changes nothing. Also
here: the language a route answers in (`request_language`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from chainlit.server import router as chainlit_router
from fastapi import APIRouter, FastAPI, Request
from fastapi.routing import APIRoute


def add_ahead_of_chainlit(
    app: FastAPI, path: str, endpoint: Callable, *, methods: Iterable[str], name: str
) -> None:
    """`endpoint` answers `methods` on `path` before any route already there."""
    if any(getattr(route, "name", None) == name for route in app.router.routes):
        return
    router = APIRouter()
    router.add_api_route(path, endpoint, methods=list(methods), name=name)
    app.router.routes[0:0] = router.routes


def in_front_of(app: FastAPI, chainlit_endpoint: Callable, endpoint: Callable) -> None:
    """`endpoint` answers instead of Chainlit's `chainlit_endpoint`, on its path and
    methods; it calls Chainlit's function itself when Chainlit is to have its say."""
    original = next(
        (
            r
            for r in chainlit_router.routes
            if isinstance(r, APIRoute) and r.endpoint is chainlit_endpoint
        ),
        None,
    )
    if original is None:
        raise RuntimeError(
            f"Chainlit's route for {chainlit_endpoint.__name__} was not found: is this Chainlit 2.12?"
        )
    # An APIRoute always has methods (GET if none were given); the attribute is typed
    # as Starlette's Route's, which may have none.
    methods = original.methods or ()
    add_ahead_of_chainlit(
        app, original.path, endpoint, methods=methods, name=f"app_{endpoint.__name__}"
    )


def request_language(request: Request) -> str:
    """The first language the request's Accept-Language names ("" if none), for
    what a route says in its response."""
    return request.headers.get("accept-language", "").split(",")[0].split(";")[0].strip()
