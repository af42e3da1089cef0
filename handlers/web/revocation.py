"""Which sign-in tokens still count: signed out means signed out, at once.

Why: Chainlit's sign-in token lives for `user_session_timeout` (15 days here),
Chainlit checks only its signature, and `POST /auth/jwt` trades a valid token
for a fresh one, forever. Without this, a person removed from the team, or one
whose password was changed because it leaked, keeps chatting for two weeks, and
longer by renewing.

How: every request and socket connection is authenticated by Chainlit 2.12's
`chainlit.auth.authenticate_user` (through `get_current_user`, which looks it
up at call time). `install` wraps it, and `handlers/web/auth_routes.py` puts the same
check in front of `/auth/jwt`. The check reads the token's own claims, never the
`users` row (Chainlit rewrites that row's metadata at every sign-in, by any
method). A token counts only while:

- its sign-in (`signed_in_at`, which a renewal keeps; `iat` for older tokens)
  is younger than SESSION_MAX_HOURS, so renewing cannot extend a session;
- for a password sign-in: the person still has a password, and signed in after
  its `tokens_valid_after` (moved to now by `passwd` and by `add`, so removing
  and re-adding a name does not bring old tokens back);
- for a trusted-header sign-in: the name is not a password user's (the proxy
  does not speak for them; `handlers/web/sign_in.py` refuses such sign-ins too).

A tab already connected keeps its socket, so `chainlit_app.on_message` asks
`is_revoked` with the session's token too.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import chainlit.auth
import jwt
from chainlit.auth.jwt import get_jwt_secret
from fastapi import Depends, HTTPException

PASSWORD_PROVIDER = "password"  # the sign-in metadata handlers/web/sign_in.py gives
HEADER_PROVIDER = "header"

ValidAfter = Callable[[str], Awaitable[float | None]]
_original = chainlit.auth.authenticate_user


@dataclass(frozen=True)
class TokenPolicy:
    """`valid_after(name)`: the person's `tokens_valid_after`, None without a password."""

    valid_after: ValidAfter
    max_age_seconds: float


_policy: TokenPolicy | None = None


def claims_of(token: str | None) -> dict[str, Any] | None:
    """The claims of a token this app signed and that has not expired, else None."""
    secret = get_jwt_secret()
    if not token or not secret:
        return None
    try:
        return jwt.decode(token, secret, algorithms=["HS256"])
    except jwt.InvalidTokenError:
        return None


def signed_in_at(claims: dict[str, Any]) -> float:
    """When the person signed in: kept through renewals, unlike `iat`."""
    value = (claims.get("metadata") or {}).get("signed_in_at")
    return float(value) if isinstance(value, int | float) else float(claims.get("iat", 0))


async def counts(claims: dict[str, Any], policy: TokenPolicy) -> bool:
    """True while the sign-in these claims record still counts (see the module docstring)."""
    origin = signed_in_at(claims)
    if time.time() - origin > policy.max_age_seconds:
        return False
    provider = (claims.get("metadata") or {}).get("provider")
    if provider not in (PASSWORD_PROVIDER, HEADER_PROVIDER):
        return True  # OAuth: the identity provider decides at each sign-in
    valid_after = await policy.valid_after(str(claims.get("identifier", "")))
    if provider == HEADER_PROVIDER:
        return valid_after is None
    return valid_after is not None and origin >= valid_after


async def is_revoked(token: str | None) -> bool:
    """True for a token that no longer counts (or that is not a valid token at all)."""
    claims = claims_of(token)
    if claims is None:
        return True
    return _policy is not None and not await counts(claims, _policy)


def install(policy: TokenPolicy) -> None:
    """Refuse, everywhere Chainlit authenticates, the tokens that no longer count."""
    global _policy
    _policy = policy

    # Chainlit's signature, default included, so this stays a drop-in replacement.
    async def authenticate_user(token: str = Depends(chainlit.auth.reuseable_oauth)):
        claims = claims_of(token)
        if claims is not None and not await counts(claims, policy):
            raise HTTPException(status_code=401, detail="Invalid authentication token")
        return await _original(token)

    chainlit.auth.authenticate_user = authenticate_user


def uninstall() -> None:
    global _policy
    _policy = None
    chainlit.auth.authenticate_user = _original
