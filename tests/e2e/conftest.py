"""Browser end-to-end fixtures: the app as the README starts it, a fake vLLM, headless Chromium.

Owns:
- the app: `bash scripts/start.sh` from the repo root, once per session, on a
  free port, with `VLLM_BASE_URL` pointing at a port reserved for the fake;
  its output goes to test-artifacts/e2e/app.log; it is stopped (its whole
  process group) when the session ends;
- the fake vLLM: a fresh `FakeVLLM` on that reserved port for every test, so
  counters, recorded requests and switches start clean while the app keeps
  running (it reconnects as it would to a restarted vLLM);
- the browser: Debian's Chromium, once per test module; a new context (a
  new Chainlit session) per chat, in the locale asked for;
- artifacts: each test saves its own named screenshots; a failing test also
  gets `<test>--failed-N.png` of every page it had open. Those of the last
  run only: the folder's screenshots are cleared when a run starts;
- sign-in: when the app asks for it, a person is added with the app's own
  CLI (`python -m handlers.users add`) before it starts, signs in once through
  the login form, and every chat opens with that browser state (its cookie).

Resuming an earlier chat is not covered here: its scenarios come with the
resume work, in their own module, using `open_chat` as they are.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, StorageState, sync_playwright

from tests.conftest import APP_VARIABLES
from tests.e2e.chat_page import ChatPage, LoginPage
from tests.fake_vllm import FakeVLLM

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "e2e"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's: Playwright cannot download its own here
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
    # Nothing but loopback resolves: the page must not reach the network (e.g. web fonts).
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
VIEWPORT = {"width": 1280, "height": 900}
APP_START_TIMEOUT = 180  # seconds; start.sh runs pip first, which is slow only the first time
REPLY = "A red square on a white background, seen by the fake vLLM server."
PERSON, PASSWORD = "e2e-tester", "correct horse battery staple"

_failed = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed:
        item.stash[_failed] = True
    return report


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    return ARTIFACTS


@pytest.fixture(scope="session")
def vllm_port() -> int:
    """A port for the fake vLLM, known before the app starts (the app reads its URL once)."""
    return _free_port()


@pytest.fixture
def fake(vllm_port: int) -> Iterator[FakeVLLM]:
    server = FakeVLLM(port=vllm_port, reply=REPLY, token_delay=0.02)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def app_url(vllm_port: int, artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = _app_environment(port, f"http://127.0.0.1:{vllm_port}/v1", tmp_path_factory.mktemp("data"))
    _add_person(env)
    with open(artifacts / "app.log", "wb") as log:
        process = subprocess.Popen(
            ["bash", "scripts/start.sh"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            _wait_until_serving(url, process, artifacts / "app.log")
            yield url
        finally:
            _stop_group(process)


# Module scope, not session: while Playwright's sync API is running, its event
# loop counts as running, and every async test after it (pytest-asyncio) fails.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `bash scripts/test.sh` installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def signed_in(browser: Browser, app_url: str, artifacts: Path) -> StorageState | None:
    """The browser state of a person who signed in through the login form, if the app asks for it."""
    with urllib.request.urlopen(f"{app_url}/auth/config", timeout=10) as response:
        if not json.load(response).get("requireLogin"):
            return None
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.goto(app_url)
        LoginPage(page).sign_in(PERSON, PASSWORD)
        ChatPage(page, artifacts).wait_until_ready()
        return context.storage_state()
    finally:
        context.close()


@pytest.fixture
def open_chat(
    browser: Browser, app_url: str, signed_in: StorageState | None, artifacts: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., ChatPage]]:
    """Open a new chat, signed in, in a new browser context (a new Chainlit session).

    `open_chat(locale="zh-CN")` opens it as a browser set to Chinese would.
    """
    contexts: list[BrowserContext] = []

    def open_(locale: str = "en-US") -> ChatPage:
        # Chainlit deletes the whole .files/ folder whenever any instance run from
        # this root shuts down (e.g. someone's `chainlit run` here); uploads then
        # fail until it exists again.
        (REPO / ".files").mkdir(exist_ok=True)
        context = browser.new_context(locale=locale, viewport=VIEWPORT, storage_state=signed_in)
        contexts.append(context)
        chat = ChatPage(context.new_page(), artifacts)
        chat.open(app_url)
        return chat

    try:
        yield open_
    finally:
        for n, context in enumerate(contexts):
            if request.node.stash.get(_failed, False):
                for page in context.pages:
                    page.screenshot(path=artifacts / f"{request.node.name}--failed-{n}.png")
            context.close()


@pytest.fixture
def chat(open_chat: Callable[..., ChatPage]) -> ChatPage:
    return open_chat()


@pytest.fixture
def photo(tmp_path: Path) -> Callable[..., Path]:
    """Write a solid-colour JPEG made with Pillow: `photo("cat.jpg", "red")`."""

    def make(name: str, colour: str = "red", size: tuple[int, int] = (800, 600)) -> Path:
        path = tmp_path / name
        Image.new("RGB", size, colour).save(path, "JPEG")
        return path

    return make


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _app_environment(port: int, vllm_url: str, data_dir: Path) -> dict[str, str]:
    """This machine's environment, with every app variable set by the test.

    Variables set empty shadow a developer's `.env` (the environment wins over
    it, and empty means "the default").
    """
    env = dict(os.environ)
    env.update({name: "" for name in APP_VARIABLES})
    env.update(
        HOST="127.0.0.1", PORT=str(port), VLLM_BASE_URL=vllm_url, DATA_DIR=str(data_dir),
        CHAINLIT_AUTH_SECRET=secrets.token_urlsafe(32),  # signs the sign-in tokens
    )
    return env


def _add_person(env: dict[str, str]) -> None:
    """Give the test person a password, with the CLI an operator uses."""
    added = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "handlers.users", "add", PERSON, "--password-stdin"],
        cwd=REPO, env=env, input=PASSWORD, text=True, capture_output=True,
    )
    if added.returncode:
        pytest.fail(f"could not add the test person:\n{added.stdout}{added.stderr}")


def _wait_until_serving(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + APP_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the app exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    pytest.fail(f"the app did not answer on {url} within {APP_START_TIMEOUT} s; see {log}")


def _stop_group(process: subprocess.Popen) -> None:
    """Stop start.sh and everything it started (pip, chainlit): they share its process group."""
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
