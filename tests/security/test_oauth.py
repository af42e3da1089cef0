"""OAuth: an account at the provider is nobody on the team until the allow-list
says so, and it is never the password user of the same name.

The allow-list logic is tested with the raw user data GitHub and Google send
(as Chainlit 2.12 fetches it: GitHub's /user plus /user/emails, Google's
userinfo v2). The whole GitHub flow also runs through Chainlit's callback route
against a fake GitHub on 127.0.0.1 (Chainlit reads GitHub's URLs from class
attributes); Google's URLs are fixed in Chainlit's code, so its route cannot be
run without the network.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jwt
import pytest
from chainlit.oauth_providers import GithubOAuthProvider
from chainlit.server import app as chainlit_server
from chainlit.user import User

import chainlit_app
from handlers.core.settings import load_settings
from handlers.web.sign_in import oauth_user

SECRET = "oauth-test-secret-" + "x" * 32


def github_user(login: str, *emails: tuple[str, bool]) -> dict:
    return {
        "login": login,
        "id": 583231,
        "avatar_url": f"https://avatars.example/{login}",
        "emails": [
            {"email": e, "verified": v, "primary": i == 0, "visibility": None}
            for i, (e, v) in enumerate(emails)
        ],
    }


def google_user(email: str, verified: bool) -> dict:
    return {
        "id": "1234",
        "email": email,
        "verified_email": verified,
        "name": "A",
        "picture": "https://p.example/a",
        "hd": email.split("@")[1],
    }


def settings(**environ: str):
    return load_settings(environ, env_file=None)


def default_for(provider: str, raw: dict) -> User:
    name = raw["login"] if provider == "github" else raw["email"]
    return User(identifier=name, metadata={"provider": provider, "image": "https://p.example/x"})


@pytest.mark.parametrize(
    ("provider", "raw"),
    [
        ("github", github_user("mallory", ("mallory@gmail.com", True))),
        ("google", google_user("mallory@gmail.com", True)),
    ],
)
def test_with_no_allow_list_no_account_at_the_provider_gets_in(provider, raw):
    assert oauth_user(provider, raw, default_for(provider, raw), settings()) is None


@pytest.mark.parametrize(
    ("provider", "raw", "admitted"),
    [
        ("github", github_user("alice", ("alice@example.com", True)), True),
        (
            "github",
            github_user("mallory", ("mallory@example.com", False), ("m@gmail.com", True)),
            False,
        ),
        ("github", github_user("mallory", ("mallory@example.com.evil.io", True)), False),
        ("google", google_user("alice@example.com", True), True),
        ("google", google_user("mallory@example.com", False), False),
        ("google", google_user("mallory@sub.example.com", True), False),
    ],
)
def test_only_a_verified_address_in_an_allowed_domain_admits(provider, raw, admitted):
    user = oauth_user(
        provider, raw, default_for(provider, raw), settings(OAUTH_ALLOWED_DOMAINS="Example.com")
    )
    assert (user is not None) is admitted


def test_an_allowed_account_is_named_by_its_provider_not_as_a_password_user():
    raw = github_user("alice")  # no verified address: admitted by name only
    user = oauth_user(
        "github", raw, default_for("github", raw), settings(OAUTH_ALLOWED_USERS="github:Alice")
    )
    assert user.identifier == "github:alice" and user.display_name == "alice"
    assert user.metadata["provider"] == "github" and user.metadata["signed_in_at"] > 0
    assert (
        oauth_user("github", raw, default_for("github", raw), settings(OAUTH_ALLOWED_USERS="alice"))
        is None
    )
    google = google_user("alice@example.com", True)
    admitted = oauth_user(
        "google",
        google,
        default_for("google", google),
        settings(OAUTH_ALLOWED_DOMAINS="example.com"),
    )
    assert admitted.identifier == "google:alice@example.com"


# --- through Chainlit's callback route ----------------------------------------------


@pytest.fixture
def fake_github(monkeypatch) -> Iterator[dict]:
    """GitHub's token and user endpoints on loopback; `account` is who signs in there."""
    account: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._send(
                "application/x-www-form-urlencoded", b"access_token=gho_fake&token_type=bearer"
            )

        def do_GET(self):
            body = (
                account["emails"]
                if self.path.endswith("/emails")
                else {k: v for k, v in account.items() if k != "emails"}
            )
            self._send("application/json", json.dumps(body).encode())

        def _send(self, kind: str, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setattr(GithubOAuthProvider, "token_url", f"{base}/login/oauth/access_token")
    monkeypatch.setattr(GithubOAuthProvider, "user_info_url", f"{base}/user")
    try:
        yield account
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def oauth_app(start_app, monkeypatch, fake_github):
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", SECRET)
    monkeypatch.setenv("OAUTH_GITHUB_CLIENT_ID", "client-id")
    monkeypatch.setenv("OAUTH_GITHUB_CLIENT_SECRET", "client-secret")
    await start_app(OAUTH_ALLOWED_DOMAINS="example.com")
    await chainlit_app.services().users.add("alice", "alice's own password")
    return fake_github


async def github_callback() -> httpx.Response:
    transport = httpx.ASGITransport(app=chainlit_server)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        client.cookies.set("oauth_state", "state-1")
        return await client.get(
            "/auth/oauth/github/callback", params={"code": "c", "state": "state-1"}
        )


async def test_a_stranger_with_a_github_account_is_sent_back_to_sign_in(oauth_app):
    oauth_app.update(github_user("mallory", ("mallory@gmail.com", True)))
    response = await github_callback()
    assert response.status_code == 302 and "error=oauthSignin" in response.headers["location"]
    assert "access_token" not in response.cookies


async def test_github_alice_does_not_become_the_password_user_alice(oauth_app):
    oauth_app.update(github_user("alice", ("alice@example.com", True)))
    response = await github_callback()
    assert response.status_code == 302 and response.headers["location"].startswith(
        "/login/callback"
    )
    claims = jwt.decode(response.cookies["access_token"], SECRET, algorithms=["HS256"])
    assert claims["identifier"] == "github:alice" and claims["metadata"]["provider"] == "github"
    password_row = await chainlit_app.services().data_layer.get_user("alice")
    assert password_row is None or password_row.metadata.get("provider") == "password"
