"""A person removed with `python -m handlers.users remove` is signed out at once.

Why: Chainlit's sign-in token lives for `user_session_timeout` (15 days here),
and Chainlit checks only its signature, so without this a person who left the
team could keep chatting and reading their history for up to two weeks.

How: every request and socket connection is authenticated by Chainlit 2.12's
`chainlit.auth.authenticate_user` (through `get_current_user`, which looks it
up at call time). `install` wraps it: for people who signed in with a password,
the token counts only while their credential exists. A tab that is already
connected keeps its socket, so `chainlit_app.on_message` asks `is_revoked` too.
People signed in by a trusted header or OAuth are left to the proxy or the
identity provider, which decide at their own sign-in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import chainlit.auth
from fastapi import HTTPException

PASSWORD_PROVIDER = "password"  # the sign-in metadata chainlit_app.password_login gives

HasCredential = Callable[[str], Awaitable[bool]]
_original = chainlit.auth.authenticate_user


async def is_revoked(user: object, has_credential: HasCredential) -> bool:
    """True for a password user whose credential has been removed."""
    metadata = getattr(user, "metadata", None) or {}
    if metadata.get("provider") != PASSWORD_PROVIDER:
        return False
    return not await has_credential(user.identifier)


def install(has_credential: HasCredential) -> None:
    """Refuse the tokens of password users whose credential is gone."""

    async def authenticate_user(token: str):
        user = await _original(token)
        if await is_revoked(user, has_credential):
            raise HTTPException(status_code=401, detail="Invalid authentication token")
        return user

    chainlit.auth.authenticate_user = authenticate_user


def uninstall() -> None:
    chainlit.auth.authenticate_user = _original
