"""Password sign-in: the app's credential table (its command line: `handlers/ops/users_command.py`).

Hashes live in the app's own `app_credentials` table, not in Chainlit's
`users.metadata`: Chainlit puts a user's metadata into the sign-in token and
returns it to the browser from `/user`, and a credential has to exist before the
person first signs in, which is when Chainlit creates their `users` row.

Removing a credential, or changing its password, ends the person's sessions at
their next request (through `handlers/web/revocation.py`); removing keeps their history.
Passwords are never logged or printed.

    AccountError            the message is meant for the operator at the CLI
     ├── InvalidIdentifier
     ├── InvalidPassword
     ├── UserExists
     └── UnknownUser

"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from handlers.storage.database import (
    credentials,
)

FIRST_USER = "admin"
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
T = TypeVar("T")


class AccountError(Exception):
    """A request about an account that cannot be done; the message says why."""


class InvalidIdentifier(AccountError):
    pass


class InvalidPassword(AccountError):
    pass


class UserExists(AccountError):
    pass


class UnknownUser(AccountError):
    pass


@dataclass(frozen=True)
class Credential:
    """What may be shown about an account: never the hash."""

    identifier: str
    created_at: str
    updated_at: str


def check_identifier(identifier: str) -> str:
    """Sign-in names are 1-64 of A-Z a-z 0-9 . _ @ -, starting with a letter or digit."""
    if not _IDENTIFIER.fullmatch(identifier):
        raise InvalidIdentifier(
            f"invalid user name {identifier!r}: use 1-64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return identifier


def check_password(password: str) -> str:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise InvalidPassword(
            f"the password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters long"
        )
    return password


class UserStore:
    """Credentials in `app_credentials`.

    Hashing runs on one thread of its own: argon2 takes 64 MiB and tens of
    milliseconds on purpose, the event loop must not wait, and a flood of sign-in
    attempts must not take the shared threads that uploads and the database use
    (nor more than one hash's worth of memory and cores at a time).

    Adding a person or changing their password moves their `tokens_valid_after`
    to now: every sign-in from before stops counting (handlers/web/revocation.py).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._hasher = PasswordHasher()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sign-in")
        # Checked against when the name is unknown, so that case costs the same.
        self._decoy = self._hasher.hash(secrets.token_urlsafe(16))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def add(self, identifier: str, password: str) -> None:
        row = {
            "identifier": check_identifier(identifier),
            "password_hash": await self._hash(password),
            "tokens_valid_after": time.time(),
        }
        now = _now()
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    insert(credentials).values(**row, created_at=now, updated_at=now)
                )
        except IntegrityError:
            raise UserExists(f"user {identifier!r} already exists") from None

    async def set_password(self, identifier: str, password: str) -> None:
        await self._store_hash(identifier, await self._hash(password))

    async def remove(self, identifier: str) -> None:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(credentials).where(credentials.c.identifier == identifier)
            )
        if result.rowcount == 0:
            raise UnknownUser(f"no user {identifier!r}")

    async def accounts(self) -> list[Credential]:
        query = select(credentials.c.identifier, credentials.c.created_at, credentials.c.updated_at)
        async with self._engine.connect() as conn:
            rows = await conn.execute(query.order_by(credentials.c.identifier))
        return [Credential(*row) for row in rows]

    async def verify(self, identifier: str, password: str) -> bool:
        """True only for a known name with its password. An unknown name is checked
        against a decoy hash so it takes as long; a hash made with older argon2
        parameters is replaced after a successful check."""
        stored = await self._hash_of(identifier)
        matches = await self._run(self._matches, stored or self._decoy, password)
        if not (matches and stored):
            return False
        if self._hasher.check_needs_rehash(stored):
            rehashed = await self._run(self._hasher.hash, password)
            await self._store_hash(identifier, rehashed, sign_out=False)
        return True

    async def has_credential(self, identifier: str) -> bool:
        return await self._hash_of(identifier) is not None

    async def tokens_valid_after(self, identifier: str) -> float | None:
        """Seconds since the epoch before which this person's sign-ins no longer
        count; None when they have no password (never had one, or were removed)."""
        query = select(credentials.c.tokens_valid_after).where(
            credentials.c.identifier == identifier
        )
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).scalar_one_or_none()

    async def _run(self, function: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)

    async def _hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, check_password(password))

    async def _hash_of(self, identifier: str) -> str | None:
        query = select(credentials.c.password_hash).where(credentials.c.identifier == identifier)
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).scalar_one_or_none()

    async def _store_hash(
        self, identifier: str, password_hash: str, *, sign_out: bool = True
    ) -> None:
        change = update(credentials).where(credentials.c.identifier == identifier)
        values: dict[str, object] = {"password_hash": password_hash, "updated_at": _now()}
        if sign_out:  # a new password: sessions signed in with the old one end
            values["tokens_valid_after"] = time.time()
        async with self._engine.begin() as conn:
            result = await conn.execute(change.values(**values))
        if result.rowcount == 0:
            raise UnknownUser(f"no user {identifier!r}")

    def _matches(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
