"""Shared fixtures: a hermetic environment and a fake vLLM server on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from handlers.core.settings import Settings, load_settings
from tests.fake_vllm import FakeVLLM

pytest_plugins = ("tests.db_fixtures",)  # db_url (SQLite and PostgreSQL), settings, layer, …

# Every variable the app (or Chainlit on its behalf) reads: none may leak in
# from the machine running the tests.
APP_VARIABLES = (
    "VLLM_BASE_URL",
    "VLLM_API_KEY",
    "VLLM_MODEL",
    "VLLM_TIMEOUT",
    "VLLM_CONNECT_RETRIES",
    "MAX_IMAGES_PER_REQUEST",
    "MAX_MODEL_LEN",
    "MAX_TOKENS",
    "MAX_UPLOAD_MB",
    "MAX_VIDEO_PIXELS",
    "MAX_MESSAGE_CHARS",
    "MAX_PAGE_RANGES",
    "MAX_CHAT_MESSAGES",
    "MAX_CHAT_IMAGES",
    "MAX_DOWNLOAD_MB",
    "TEMPERATURE",
    "ANSWER_LANGUAGE",
    "SYSTEM_PROMPT_PLACEMENT",
    "DATA_DIR",
    "APP_DATABASE_URL",
    "AUTH_TRUSTED_HEADER",
    "DATABASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "CHAINLIT_AUTH_SECRET",
    "AUTH_PROXY_SECRET",
    "LOGIN_ATTEMPTS_PER_MINUTE",
    "LOGIN_MAX_WAITING",
    "SESSION_MAX_HOURS",
    "COOKIE_SECURE",
    "OAUTH_ALLOWED_DOMAINS",
    "OAUTH_ALLOWED_USERS",
    "OAUTH_GITHUB_CLIENT_ID",
    "OAUTH_GITHUB_CLIENT_SECRET",
    "OAUTH_GOOGLE_CLIENT_ID",
    "OAUTH_GOOGLE_CLIENT_SECRET",
    "MAX_FILES_PER_MESSAGE",
    "ALLOWED_ORIGINS",
)


@pytest.fixture(autouse=True)
def hermetic_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in APP_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_vllm() -> Iterator[FakeVLLM]:
    server = FakeVLLM(reply="A red square on a white background.")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings_for(fake_vllm: FakeVLLM):
    """Settings pointing at the fake server; keyword overrides use the env names."""

    def make(**overrides: str) -> Settings:
        environ = {"VLLM_BASE_URL": fake_vllm.base_url, "VLLM_CONNECT_RETRIES": "1"}
        environ.update(overrides)
        return load_settings(environ, env_file=None)

    return make


@pytest.fixture
async def start_app(fake_vllm: FakeVLLM, monkeypatch: pytest.MonkeyPatch, tmp_path):
    """Start (or restart) the app's services against the fake, with their own data
    folder and no chats left from other tests; keywords set environment variables."""
    import chainlit.data

    import chainlit_app
    from handlers.chat.sessions import ChatRegistry
    from tests.app_helpers import settle

    started = False

    async def start(**environ: str) -> None:
        nonlocal started
        if started:
            await settle()
            await chainlit_app.on_app_shutdown()
        defaults = {"VLLM_BASE_URL": fake_vllm.base_url, "VLLM_CONNECT_RETRIES": "1"}
        for name, value in {**defaults, "DATA_DIR": str(tmp_path / "data"), **environ}.items():
            monkeypatch.setenv(name, value)
        if not started:
            monkeypatch.setattr(chainlit_app, "_chats", ChatRegistry())
        monkeypatch.setattr(chainlit.data, "_data_layer", None)
        monkeypatch.setattr(chainlit.data, "_data_layer_initialized", False)
        await chainlit_app.on_app_startup()
        started = True

    yield start
    if started:
        await settle()
        await chainlit_app.on_app_shutdown()


@pytest.fixture
async def app(start_app, fake_vllm: FakeVLLM) -> FakeVLLM:
    """The app started with its defaults; the fake server it talks to."""
    await start_app()
    return fake_vllm


@pytest.fixture
async def chat(app):
    """A new chat in a Chainlit websocket context (tests/chainlit_harness.py)."""
    from tests.chainlit_harness import ChatHarness

    harness = ChatHarness()
    await harness.start()
    return harness


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("CHAINLIT_APP_ROOT", os.path.dirname(os.path.dirname(__file__)))
