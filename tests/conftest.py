"""Shared fixtures: a hermetic environment and a fake vLLM server on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from handlers.core import settings as settings_module
from handlers.core.settings import Settings, load_settings
from tests.fake_vllm import FakeVLLM
from tests.hermetic import NO_ENV_FILE, unset_variables

# Chainlit loads `.env` from the working directory when it is first imported, which
# tests.db_fixtures (next) does: point it at nothing first (tests/hermetic.py).
os.environ["CHAINLIT_ENV_FILE"] = NO_ENV_FILE
pytest_plugins = ("tests.db_fixtures",)  # db_url (SQLite and PostgreSQL), settings, layer, …


@pytest.fixture(autouse=True)
def hermetic_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees this machine's settings: its variables unset, no `.env` read."""
    for name in unset_variables(os.environ):
        monkeypatch.delenv(name)
    monkeypatch.setattr(settings_module.load_settings, "__defaults__", (None, NO_ENV_FILE))


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
