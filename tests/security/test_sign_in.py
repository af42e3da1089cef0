"""Attacks on sign-in and sessions, through Chainlit's real HTTP app (httpx over ASGI):
a forged proxy header, password guessing, tokens that outlive a sign-out, and
OAuth accounts that are nobody's on the team. On SQLite and PostgreSQL where the
database holds the answer."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import jwt
import pytest
from argon2 import PasswordHasher
from chainlit.auth import create_jwt
from chainlit.server import app as chainlit_server
from chainlit.user import User
from sqlalchemy import select, text

import chainlit_app
from handlers.core.i18n import translate
from handlers.core.settings import SettingsError, load_settings
from handlers.storage.database import credentials, ensure_schema, make_engine
from handlers.storage.users import UserStore
from tests.waiting import eventually

SECRET = "sign-in-test-secret-" + "x" * 32
PROXY_SECRET = "proxy-secret-" + "y" * 32
PASSWORD = "a long enough password"
HEADER = "X-Forwarded-User"
PROXY_SECRET_HEADER = "X-Auth-Proxy-Secret"  # what nginx adds (deploy/nginx.conf.example)


@pytest.fixture
async def start(start_app, monkeypatch, db_url):
    """The app on this test's database, with sign-in tokens signed."""
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", SECRET)

    async def go(**environ: str):
        await start_app(APP_DATABASE_URL=db_url, **environ)
        return chainlit_app.services().users

    return go


@pytest.fixture
async def client():
    transport = httpx.ASGITransport(app=chainlit_server)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        yield http


async def sign_in(
    client: httpx.AsyncClient, name: str, password: str = PASSWORD, **headers: str
) -> str:
    response = await client.post(
        "/login", data={"username": name, "password": password}, headers=headers
    )
    assert response.status_code == 200, response.text
    token = client.cookies["access_token"]
    client.cookies.clear()
    return token


async def status_with(client: httpx.AsyncClient, token: str) -> int:
    return (await client.get("/user", headers={"Authorization": f"Bearer {token}"})).status_code


async def shown_in_the_sign_in_form(
    client: httpx.AsyncClient, refused: httpx.Response, language: str
) -> str:
    """What Chainlit 2.12's sign-in page shows for an error: the response's status
    text looked up in `auth.login.errors` of the translations the page fetches
    (tests/e2e/test_sign_in.py sees it in the browser)."""
    page = await client.get("/project/translations", params={"language": language})
    return page.json()["translation"]["auth"]["login"]["errors"][refused.reason_phrase]


def claims(token: str) -> dict:
    return jwt.decode(token, SECRET, algorithms=["HS256"])


# --- the trusted header ------------------------------------------------------------


def test_the_app_refuses_to_start_with_a_trusted_header_but_no_proxy_secret():
    with pytest.raises(SettingsError, match="AUTH_TRUSTED_HEADER needs AUTH_PROXY_SECRET"):
        load_settings({"AUTH_TRUSTED_HEADER": HEADER}, env_file=None)
    with pytest.raises(SettingsError, match="AUTH_PROXY_SECRET: expected at least 32"):
        load_settings({"AUTH_TRUSTED_HEADER": HEADER, "AUTH_PROXY_SECRET": "short"}, env_file=None)


async def test_a_local_process_sending_the_trusted_header_gets_no_token(start, client):
    await start(AUTH_TRUSTED_HEADER=HEADER, AUTH_PROXY_SECRET=PROXY_SECRET)
    forged = await client.post("/auth/header", headers={HEADER: "dave"})
    assert forged.status_code == 401 and "access_token" not in client.cookies
    guessed = await client.post(
        "/auth/header", headers={HEADER: "dave", PROXY_SECRET_HEADER: "x" * 45}
    )
    assert guessed.status_code == 401 and "access_token" not in client.cookies

    proxied = await client.post(
        "/auth/header", headers={HEADER: "dave", PROXY_SECRET_HEADER: PROXY_SECRET}
    )
    assert proxied.status_code == 200
    assert (await client.get("/user")).json()["identifier"] == "dave"


async def test_a_header_sign_in_cannot_take_over_a_password_user(start, client):
    users = await start(AUTH_TRUSTED_HEADER=HEADER, AUTH_PROXY_SECRET=PROXY_SECRET)
    await users.add("admin", PASSWORD)
    token = await sign_in(client, "admin")

    taken = await client.post(
        "/auth/header", headers={HEADER: "admin", PROXY_SECRET_HEADER: PROXY_SECRET}
    )
    assert taken.status_code == 401 and "access_token" not in client.cookies
    row = await chainlit_app.services().data_layer.get_user("admin")
    assert row.metadata["provider"] == "password"  # not rewritten to "header"
    assert await status_with(client, token) == 200
    # A header token minted for that name (e.g. before the password user existed) no longer counts.
    header_token = create_jwt(
        User(identifier="admin", metadata={"provider": "header", "signed_in_at": time.time()})
    )
    assert await status_with(client, header_token) == 401


# --- password guessing -------------------------------------------------------------


@pytest.fixture
def hashes(monkeypatch) -> list[str]:
    """The thread of every password check."""
    threads: list[str] = []
    real_verify = PasswordHasher.verify

    def spy(self, digest, password):
        threads.append(threading.current_thread().name)
        return real_verify(self, digest, password)

    monkeypatch.setattr(PasswordHasher, "verify", spy)
    return threads


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_guessing_passwords_is_refused_after_the_limit_without_hashing(start, client, hashes):
    users = await start(LOGIN_ATTEMPTS_PER_MINUTE="3")
    await users.add("alice", PASSWORD)
    for guess in ("password1", "password2", "password3"):
        wrong = await client.post("/login", data={"username": "alice", "password": guess})
        assert wrong.status_code == 401
    refused = await client.post(
        "/login",
        data={"username": "alice", "password": PASSWORD},
        headers={"Accept-Language": "zh-CN"},
    )
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 60
    assert (
        await shown_in_the_sign_in_form(client, refused, "zh-CN")
        == "登录尝试次数过多。请等一分钟后再试。"
    )
    seconds = refused.headers["Retry-After"]
    assert refused.json()["detail"] == translate(
        "sign_in.too_many_attempts", "zh-CN", seconds=seconds
    )
    assert len(hashes) == 3 and "access_token" not in client.cookies

    # Per name: from another address the same name is still refused ...
    elsewhere = {"X-Real-IP": "10.1.2.3"}
    again = await client.post(
        "/login", data={"username": "alice", "password": PASSWORD}, headers=elsewhere
    )
    assert again.status_code == 429
    # ... per address: from the first, any other name too; and nobody else is held up.
    other = await client.post("/login", data={"username": "bob", "password": PASSWORD})
    assert other.status_code == 429 and len(hashes) == 3
    await users.add("bob", PASSWORD)
    await sign_in(client, "bob", **elsewhere)
    assert len(hashes) == 4


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_flood_from_forged_addresses_cannot_queue_up_behind_the_password_thread(
    start, client, hashes, monkeypatch
):
    await start(LOGIN_MAX_WAITING="2")
    release = threading.Event()
    real_verify = PasswordHasher.verify  # the spy, which records the thread

    def held(self, digest, password):
        release.wait(30)
        return real_verify(self, digest, password)

    monkeypatch.setattr(PasswordHasher, "verify", held)

    def attempt(n: int):
        return client.post(
            "/login",
            data={"username": f"user{n}", "password": "guess"},
            headers={"X-Real-IP": f"10.0.0.{n}"},
        )

    first = [asyncio.create_task(attempt(n)) for n in (1, 2)]
    gate = chainlit_app.services().sign_ins
    await eventually(lambda: gate._waiting == 2, "both first attempts wait for the password thread")
    refused = await attempt(3)
    release.set()
    assert refused.status_code == 429 and refused.json()["detail"] == translate(
        "sign_in.busy", "en-US", seconds=5
    )
    assert await shown_in_the_sign_in_form(client, refused, "en-US") == (
        "Too many sign-in attempts. Please wait a minute and try again."
    )
    assert [r.status_code for r in await asyncio.gather(*first)] == [401, 401]
    assert len(hashes) == 2  # the refused one cost nothing


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_password_checks_run_on_their_own_thread_not_the_shared_pool(start, client, hashes):
    users = await start()
    await users.add("alice", PASSWORD)
    await sign_in(client, "alice")
    await client.post("/login", data={"username": "nobody", "password": PASSWORD})
    assert hashes and all(name.startswith("sign-in") for name in hashes), hashes


# --- signing out -------------------------------------------------------------------


async def test_a_token_from_before_a_password_change_stops_working(start, client):
    users = await start()
    await users.add("alice", PASSWORD)
    old = await sign_in(client, "alice")
    assert await status_with(client, old) == 200
    await users.set_password("alice", "a brand new password")
    assert await status_with(client, old) == 401
    assert await status_with(client, await sign_in(client, "alice", "a brand new password")) == 200


async def test_removing_and_re_adding_a_name_does_not_revive_its_old_tokens(start, client):
    users = await start()
    await users.add("alice", PASSWORD)
    old = await sign_in(client, "alice")
    await users.remove("alice")
    await users.add("alice", "someone else's password")
    assert await status_with(client, old) == 401
    renewed = await client.post("/auth/jwt", headers={"Authorization": f"Bearer {old}"})
    assert renewed.status_code == 401 and "access_token" not in client.cookies


async def test_renewing_a_token_keeps_its_sign_in_time_and_stops_at_the_maximum_age(start, client):
    users = await start(SESSION_MAX_HOURS="1")
    await users.add("alice", PASSWORD)
    token = await sign_in(client, "alice")
    renewed = await client.post("/auth/jwt", headers={"Authorization": f"Bearer {token}"})
    assert renewed.status_code == 200
    fresh = client.cookies["access_token"]
    client.cookies.clear()
    assert claims(fresh)["metadata"]["signed_in_at"] == claims(token)["metadata"]["signed_in_at"]

    two_hours_ago = time.time() - 7200
    await _move_sign_outs_back(users, "alice", two_hours_ago - 60)
    stale = create_jwt(
        User(identifier="alice", metadata={"provider": "password", "signed_in_at": two_hours_ago})
    )
    assert await status_with(client, stale) == 401
    again = await client.post("/auth/jwt", headers={"Authorization": f"Bearer {stale}"})
    assert again.status_code == 401 and "access_token" not in client.cookies
    # A token that does not say when its sign-in was cannot be renewed at all.
    undated = create_jwt(User(identifier="alice", metadata={"provider": "password"}))
    assert (
        await client.post("/auth/jwt", headers={"Authorization": f"Bearer {undated}"})
    ).status_code == 401


async def test_a_removed_password_user_is_not_let_back_in_by_another_sign_in_rewriting_their_row(
    start, client
):
    users = await start(AUTH_TRUSTED_HEADER=HEADER, AUTH_PROXY_SECRET=PROXY_SECRET)
    await users.add("alice", PASSWORD)
    token = await sign_in(client, "alice")
    await users.remove("alice")
    # Chainlit rewrites the users row's metadata at every sign-in, here to provider "header".
    proxied = await client.post(
        "/auth/header", headers={HEADER: "alice", PROXY_SECRET_HEADER: PROXY_SECRET}
    )
    assert proxied.status_code == 200
    client.cookies.clear()
    assert (await chainlit_app.services().data_layer.get_user("alice")).metadata[
        "provider"
    ] == "header"
    assert await status_with(client, token) == 401


async def _move_sign_outs_back(users: UserStore, name: str, when: float) -> None:
    async with users._engine.begin() as conn:
        await conn.execute(
            credentials.update()
            .where(credentials.c.identifier == name)
            .values(tokens_valid_after=when)
        )


async def test_an_older_database_gains_the_sign_out_time_and_keeps_its_people_signed_in(db_url):
    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:  # app_credentials as it was before tokens_valid_after
            await conn.execute(
                text(
                    "CREATE TABLE app_credentials (identifier TEXT PRIMARY KEY, password_hash TEXT NOT NULL, "
                    "created_at TEXT NOT NULL, updated_at TEXT NOT NULL)"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO app_credentials VALUES ('alice', 'x', '2024-01-01T00:00:00+00:00', "
                    "'2024-01-01T00:00:00+00:00')"
                )
            )
        await ensure_schema(db_url)
        store = UserStore(engine)
        assert await store.tokens_valid_after("alice") == 0
        await store.set_password("alice", PASSWORD)
        assert await store.tokens_valid_after("alice") > time.time() - 60
        store.close()
        async with engine.connect() as conn:
            rows = (await conn.execute(select(credentials.c.identifier))).all()
        assert rows == [("alice",)]
    finally:
        await engine.dispose()


# --- the cookie --------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_behind_tls_the_sign_in_cookie_never_travels_over_plain_http(start, client):
    users = await start(COOKIE_SECURE="true")
    await users.add("alice", PASSWORD)
    response = await client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    assert (
        cookie.startswith("access_token=")
        and "; secure" in cookie.lower()
        and "httponly" in cookie.lower()
    )

    users = await start(COOKIE_SECURE="false")
    await users.add("bob", PASSWORD)
    plain = await client.post("/login", data={"username": "bob", "password": PASSWORD})
    assert (
        "secure" not in plain.headers["set-cookie"].lower()
    )  # the quick start on http://127.0.0.1
