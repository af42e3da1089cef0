"""Password users: the store, on both databases, and the CLI scripts drive."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import insert, select

from handlers.ops import users_command
from handlers.storage.database import credentials, ensure_schema, make_engine
from handlers.storage.users import (
    InvalidIdentifier,
    InvalidPassword,
    UnknownUser,
    UserExists,
    UserStore,
)

PROJECT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"


@pytest.fixture
async def engine(db_url: str):
    await ensure_schema(db_url)
    engine = make_engine(db_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def store(engine) -> UserStore:
    return UserStore(engine)


async def stored_hash(engine, identifier: str) -> str:
    async with engine.connect() as conn:
        query = select(credentials.c.password_hash).where(credentials.c.identifier == identifier)
        return (await conn.execute(query)).scalar_one()


# --- the store ----------------------------------------------------------------------


async def test_a_user_signs_in_with_their_own_password_only(store: UserStore) -> None:
    await store.add("alice", PASSWORD)
    await store.add("bob", "another password")
    assert await store.verify("alice", PASSWORD) is True
    assert await store.verify("alice", "another password") is False
    assert await store.verify("alice", PASSWORD.upper()) is False
    assert await store.verify("Alice", PASSWORD) is False
    assert await store.verify("alice", "") is False


async def test_only_an_argon2id_hash_is_stored(store: UserStore, engine) -> None:
    await store.add("alice", PASSWORD)
    digest = await stored_hash(engine, "alice")
    assert digest.startswith("$argon2id$") and PASSWORD not in digest


async def test_an_unknown_name_costs_a_full_password_check(store: UserStore, monkeypatch) -> None:
    checked: list[str] = []
    real_verify = PasswordHasher.verify

    def spy(self, digest, password):
        checked.append(password)
        return real_verify(self, digest, password)

    monkeypatch.setattr(PasswordHasher, "verify", spy)
    assert await store.verify("nobody", PASSWORD) is False
    assert checked == [PASSWORD]


@pytest.mark.parametrize("name", ["", " alice", "alice smith", "-alice", "al/ice", "ä", "a" * 65])
async def test_add_refuses_names_that_are_not_plain(store: UserStore, name: str) -> None:
    with pytest.raises(InvalidIdentifier):
        await store.add(name, PASSWORD)


@pytest.mark.parametrize("password", ["", "short", "x" * 1025])
async def test_add_refuses_passwords_too_short_or_long(store: UserStore, password: str) -> None:
    with pytest.raises(InvalidPassword, match="8 to 1024 characters"):
        await store.add("alice", password)
    assert await store.accounts() == []


async def test_add_refuses_an_existing_name(store: UserStore) -> None:
    await store.add("alice", PASSWORD)
    with pytest.raises(UserExists):
        await store.add("alice", "a different password")
    assert await store.verify("alice", PASSWORD)


async def test_a_new_password_replaces_the_old(store: UserStore) -> None:
    await store.add("alice", PASSWORD)
    [before] = await store.accounts()
    await store.set_password("alice", "a brand new password")
    assert await store.verify("alice", "a brand new password")
    assert not await store.verify("alice", PASSWORD)
    [after] = await store.accounts()
    assert after.created_at == before.created_at and after.updated_at >= before.updated_at
    with pytest.raises(UnknownUser):
        await store.set_password("nobody", PASSWORD)


async def test_removing_a_user_stops_sign_in(store: UserStore) -> None:
    await store.add("alice", PASSWORD)
    await store.remove("alice")
    assert not await store.verify("alice", PASSWORD)
    with pytest.raises(UnknownUser):
        await store.remove("alice")


async def test_accounts_lists_names_and_times_in_order(store: UserStore) -> None:
    for name in ("carol", "alice", "bob"):
        await store.add(name, PASSWORD)
    accounts = await store.accounts()
    assert [a.identifier for a in accounts] == ["alice", "bob", "carol"]
    assert all(a.created_at.endswith("+00:00") for a in accounts)


async def test_a_hash_with_weaker_parameters_is_upgraded_at_sign_in(
    store: UserStore, engine
) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    async with engine.begin() as conn:
        await conn.execute(
            insert(credentials).values(
                identifier="alice",
                password_hash=weak,
                created_at="2024-01-01T00:00:00+00:00",
                updated_at="2024-01-01T00:00:00+00:00",
            )
        )
    assert await store.verify("alice", "wrong password") is False
    assert await stored_hash(engine, "alice") == weak
    assert await store.verify("alice", PASSWORD) is True
    upgraded = await stored_hash(engine, "alice")
    assert upgraded != weak and not PasswordHasher().check_needs_rehash(upgraded)


# --- the command line ----------------------------------------------------------------


async def run_cli(db_url: str, cwd: Path, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """`python -m handlers.users ...` as a script would run it, with only our variables set."""
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(PROJECT), "APP_DATABASE_URL": db_url}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "handlers.users",
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(stdin.encode())
    return process.returncode, out.decode(), err.decode()


async def test_a_script_manages_users_through_the_cli(db_url: str, tmp_path: Path, engine) -> None:
    assert await run_cli(
        db_url, tmp_path, "add", "alice", "--password-stdin", stdin=PASSWORD + "\n"
    ) == (0, "added alice\n", "")
    code, _, err = await run_cli(
        db_url, tmp_path, "add", "alice", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert code == 1 and err == "error: user 'alice' already exists\n"
    assert (
        await run_cli(
            db_url, tmp_path, "passwd", "alice", "--password-stdin", stdin="new password\r\n"
        )
    )[0] == 0
    assert await UserStore(engine).verify("alice", "new password")

    code, out, _ = await run_cli(db_url, tmp_path, "list")
    assert code == 0 and out.startswith("alice  created ")
    assert await run_cli(db_url, tmp_path, "remove", "alice") == (
        0,
        "removed alice: signed out everywhere; their chat history is kept\n",
        "",
    )
    assert await run_cli(db_url, tmp_path, "remove", "alice") == (1, "", "error: no user 'alice'\n")
    assert await run_cli(db_url, tmp_path, "list") == (0, "no password users\n", "")


async def test_the_first_start_creates_an_admin_once(db_url: str, tmp_path: Path, engine) -> None:
    code, out, err = await run_cli(db_url, tmp_path, "init")
    assert code == 0 and err == ""
    password = re.search(r"password: (\S+)", out).group(1)
    assert await UserStore(engine).verify("admin", password)
    assert await run_cli(db_url, tmp_path, "init") == (0, "", "")  # someone exists: nothing to do
    assert await UserStore(engine).verify("admin", password)


async def test_the_cli_reports_usage_mistakes_with_exit_code_1(db_url: str, tmp_path: Path) -> None:
    code, _, err = await run_cli(db_url, tmp_path, "frobnicate")
    assert code == 1 and "invalid choice" in err
    code, _, err = await run_cli(
        db_url, tmp_path, "add", "alice", "--password-stdin", stdin="short\n"
    )
    assert code == 1 and err == "error: the password must be 8 to 1024 characters long\n"


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """For running `users_command.main` in this process: our variables only, no `.env` in the directory."""
    monkeypatch.chdir(tmp_path)
    for key in ("APP_DATABASE_URL", "DATA_DIR"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def answers(*replies: str):
    pending = list(replies)
    return lambda prompt="": pending.pop(0)


async def test_the_cli_asks_for_the_password_twice(db_url: str, cli_env, engine, capsys) -> None:
    cli_env.setenv("APP_DATABASE_URL", db_url)
    cli_env.setattr(users_command.getpass, "getpass", answers(PASSWORD, "a typo"))
    assert await asyncio.to_thread(users_command.main, ["add", "alice"]) == 1
    cli_env.setattr(users_command.getpass, "getpass", answers(PASSWORD, PASSWORD))
    assert await asyncio.to_thread(users_command.main, ["add", "alice"]) == 0
    out, err = capsys.readouterr()
    assert err == "error: the passwords do not match\n" and out == "added alice\n"
    assert PASSWORD not in out + err
    assert await UserStore(engine).verify("alice", PASSWORD)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://postgres@127.0.0.1:1/nothing", "error: database unavailable: "),
        (
            "mysql://root:secret@127.0.0.1/chat",
            "error: APP_DATABASE_URL: expected postgresql:// or sqlite:///",
        ),
    ],
)
async def test_the_cli_explains_a_database_it_cannot_use(
    cli_env, capsys, url: str, message: str
) -> None:
    cli_env.setenv("APP_DATABASE_URL", url)
    assert await asyncio.to_thread(users_command.main, ["list"]) == 1
    _, err = capsys.readouterr()
    assert err.startswith(message) and "secret" not in err
