"""`python -m handlers.users`: add, remove and list the people who sign in with a password.

    python -m handlers.users add NAME [--password-stdin]
    python -m handlers.users passwd NAME [--password-stdin]
    python -m handlers.users remove NAME
    python -m handlers.users list
    python -m handlers.users init     (first start: creates `admin` if nobody can sign in)

Exit status 0 or 1 (never argparse's 2: scripts test for failure). Passwords are
never printed, except the first user's, once, by `init`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import secrets
import sys
from collections.abc import Sequence
from typing import NoReturn

from sqlalchemy.exc import SQLAlchemyError

from handlers.core.settings import SettingsError, load_settings
from handlers.storage.database import DatabaseUrlError, database_url, ensure_schema, make_engine
from handlers.storage.users import (
    FIRST_USER,
    AccountError,
    Credential,
    InvalidPassword,
    UserStore,
    check_password,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would exit 2; scripts expect 0/1
        self.exit(1, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m handlers.users", description="Manage password sign-in.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, summary in (("add", "create a user"), ("passwd", "change a user's password")):
        command = commands.add_parser(name, help=summary)
        command.add_argument("name")
        command.add_argument(
            "--password-stdin", action="store_true", help="read the password from one line of stdin"
        )
    commands.add_parser(
        "remove", help="stop a user signing in (their history is kept)"
    ).add_argument("name")
    commands.add_parser("list", help="list users who can sign in with a password")
    commands.add_parser(
        "init",
        help=f"if no user exists yet, create '{FIRST_USER}' with a random password and print it",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        url = database_url(load_settings())
        password = _read_password(args) if args.command in ("add", "passwd") else ""
        if report := asyncio.run(_run(args, url, password)):
            print(report)
    except (AccountError, SettingsError, DatabaseUrlError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (SQLAlchemyError, OSError) as error:
        # The driver's own message: SQLAlchemy's would include the statement's parameters.
        print(
            f"error: database unavailable: {getattr(error, 'orig', None) or error}", file=sys.stderr
        )
        return 1
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return check_password(sys.stdin.readline().rstrip("\r\n"))
    password = check_password(getpass.getpass("Password: "))
    if getpass.getpass("Repeat password: ") != password:
        raise InvalidPassword("the passwords do not match")
    return password


async def _run(args: argparse.Namespace, url: str, password: str) -> str:
    await ensure_schema(url)
    engine = make_engine(url)
    store = UserStore(engine)
    try:
        if args.command == "add":
            await store.add(args.name, password)
            return f"added {args.name}"
        if args.command == "passwd":
            await store.set_password(args.name, password)
            return f"changed the password of {args.name}: signed out everywhere"
        if args.command == "remove":
            await store.remove(args.name)
            return f"removed {args.name}: signed out everywhere; their chat history is kept"
        if args.command == "init":
            return await _first_user(store)
        return _table(await store.accounts())
    finally:
        store.close()
        await engine.dispose()


async def _first_user(store: UserStore) -> str:
    """The quick start's way in: a fresh install has nobody who can sign in, so the
    first start creates an administrator and shows the password once."""
    if await store.accounts():
        return ""
    password = secrets.token_urlsafe(12)
    await store.add(FIRST_USER, password)
    return (
        f"Created the first user — sign in with:\n  name:     {FIRST_USER}\n  password: {password}\n"
        f"Change it with `python -m handlers.users passwd {FIRST_USER}`; "
        "add people with `python -m handlers.users add NAME`."
    )


def _table(accounts: list[Credential]) -> str:
    if not accounts:
        return "no password users"
    width = max(len(account.identifier) for account in accounts)
    return "\n".join(
        f"{a.identifier:<{width}}  created {a.created_at}  password changed {a.updated_at}"
        for a in accounts
    )


if __name__ == "__main__":
    sys.exit(main())
