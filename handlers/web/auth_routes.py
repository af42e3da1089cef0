"""Routes in front of Chainlit's sign-in routes, on the same paths.

- `POST /login` (password sign-in): attempts over LOGIN_ATTEMPTS_PER_MINUTE,
  per client address or per user name (`handlers/core/sign_in_limits.py`), get 429
  and `Retry-After`, before any password is hashed; so do attempts beyond
  LOGIN_MAX_WAITING in progress at once. Chainlit 2.12's sign-in page shows
  the translation of the response's *status text* from `auth.login.errors`
  (not its detail), so "Too Many Requests" has a translation there; the
  detail, which Chainlit shows in a passing notice, says how long to wait in
  the language of the request's Accept-Language. Otherwise Chainlit's route runs unchanged.
- `POST /auth/jwt` (a token traded for a fresh one): Chainlit 2.12 checks only
  the signature, so a removed person, or a session past SESSION_MAX_HOURS,
  could renew forever. Here a token is renewed only while it still counts
  (`handlers/web/revocation.py`) and records when its sign-in was; the fresh token
  keeps that time, so renewing never extends a session.

`secure_cookies` gives the sign-in cookie the `Secure` flag (COOKIE_SECURE, for
an install behind TLS): Chainlit 2.12 sets it only with SameSite=None, from a
module variable it reads at each sign-in.

The client address is the peer's, or, when the peer is this host (nginx in
front, which overwrites it), the `X-Real-IP` it sends.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from ipaddress import ip_address

import chainlit.auth.cookie
from chainlit.server import jwt_auth as chainlit_jwt_auth
from chainlit.server import login as chainlit_login
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.security import OAuth2PasswordRequestForm
from fastapi.security.utils import get_authorization_scheme_param

from handlers.core.i18n import translate
from handlers.core.sign_in_limits import AttemptLimiter
from handlers.web import revocation
from handlers.web.routes import in_front_of, request_language

Limiter = Callable[[], AttemptLimiter | None]
BUSY_RETRY_SECONDS = 5


def register(app: FastAPI, limiter: Limiter) -> None:
    """`limiter()` is the app's limiter, or None before the app has started."""

    async def login(
        request: Request, response: Response, form_data: OAuth2PasswordRequestForm = Depends()
    ) -> Response:
        found = limiter()
        if found is None:
            return await chainlit_login(request, response, form_data)
        name = form_data.username.lower()[:64]  # names are at most 64 characters
        keys = (("address", client_address(request)), ("name", name))
        if wait := found.try_attempt(*keys):
            raise _too_many(request, "sign_in.too_many_attempts", math.ceil(wait))
        with found.waiting() as admitted:
            if not admitted:
                raise _too_many(request, "sign_in.busy", BUSY_RETRY_SECONDS)
            return await chainlit_login(request, response, form_data)

    in_front_of(app, chainlit_login, login)
    in_front_of(app, chainlit_jwt_auth, renew)


async def renew(request: Request) -> Response:
    scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
    claims = revocation.claims_of(token) if scheme.lower() == "bearer" else None
    if claims is None or "signed_in_at" not in (claims.get("metadata") or {}):
        # Tokens from before sign-in times were recorded cannot prove their age.
        raise HTTPException(status_code=401, detail="Invalid token")
    if await revocation.is_revoked(token):
        raise HTTPException(status_code=401, detail="Invalid token")
    return await chainlit_jwt_auth(request)


def _too_many(request: Request, key: str, seconds: int) -> HTTPException:
    detail = translate(key, request_language(request), seconds=seconds)
    return HTTPException(status_code=429, detail=detail, headers={"Retry-After": str(seconds)})


def secure_cookies(enabled: bool) -> None:
    chainlit.auth.cookie._cookie_secure = enabled or chainlit.auth.cookie._cookie_samesite == "none"


def client_address(request: Request) -> str:
    peer = request.client.host if request.client else ""
    forwarded = request.headers.get("x-real-ip", "").strip()
    try:
        if forwarded and ip_address(peer).is_loopback:
            return str(ip_address(forwarded))
    except ValueError:
        pass
    return peer
