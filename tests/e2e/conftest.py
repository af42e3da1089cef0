"""Browser end-to-end fixtures: the app as the README starts it, a fake vLLM, headless Chromium.

Owns:
- the app: `bash scripts/start.sh` from the repo root, once per session, on a
  free port, with `VLLM_BASE_URL` pointing at a port reserved for the fake;
  its output goes to test-artifacts/e2e/app.log; it is stopped (its whole
  process group) when the session ends. `launch_app` starts further ones, each
  with its own data folder, people and log; an `App` can be stopped and started
  again on the same data, as an operator restarts it;
- the fake vLLM: a fresh `FakeVLLM` on that reserved port for every test, so
  counters, recorded requests and switches start clean while the app keeps
  running (it reconnects as it would to a restarted vLLM);
- the browser: Debian's Chromium, once per test module; a new context (a
  new Chainlit session) per chat, in the locale asked for (`new_context` for
  tests that drive several people or sign in themselves);
- artifacts: each test saves its own named screenshots; a failing test also
  gets `<test>--failed-N.png` of every page it had open. Those of the last
  run only: the folder's screenshots are cleared when a run starts;
- sign-in: when the app asks for it, a person is added with the app's own
  CLI (`python -m handlers.users add`) before it starts, signs in once through
  the login form, and every chat opens with that browser state (its cookie).

Resuming an earlier chat after a restart, and who may see it, is in
test_history.py, against an app of its own from `launch_app`.
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
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, StorageState, sync_playwright

from tests.e2e.chat_page import ChatPage, LoginPage
from tests.fake_vllm import FakeVLLM
from tests.hermetic import app_environment

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "e2e"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's: Playwright cannot download its own here
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
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


class App:
    """The app as the README starts it (`bash scripts/start.sh`), with a fixed environment.

    `stop` ends start.sh's whole process group; `start` again serves the same
    DATA_DIR with the same CHAINLIT_AUTH_SECRET, so sign-in cookies stay valid.
    Every start appends to the one log.
    """

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.env, self.log = dict(env), log
        self.url = f"http://{env['HOST']}:{env['PORT']}"
        self._process: subprocess.Popen | None = None
        log.write_bytes(b"")

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self._process = subprocess.Popen(
                ["bash", "scripts/start.sh"],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _wait_until_serving(self.url, self._process, self.log)

    def stop(self) -> None:
        if self._process is not None:
            _stop_group(self._process)
            self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def launch_app(
    artifacts: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., App]]:
    """Start an app: `launch_app(vllm_url, {name: password}, "app.log")`, once it serves.

    Each gets a free port, a fresh DATA_DIR, its own auth secret, and the
    people given (added with the CLI before it starts). Whatever is still
    running when the session ends is stopped then.
    """
    launched: list[App] = []

    def launch(vllm_url: str, people: Mapping[str, str], log_name: str) -> App:
        env = _app_environment(_free_port(), vllm_url, tmp_path_factory.mktemp("data"))
        for name, password in people.items():
            _add_person(env, name, password)
        app = App(env, artifacts / log_name)
        launched.append(app)
        app.start()
        return app

    try:
        yield launch
    finally:
        for app in launched:
            app.stop()


@pytest.fixture(scope="session")
def app_url(vllm_port: int, launch_app: Callable[..., App]) -> str:
    return launch_app(f"http://127.0.0.1:{vllm_port}/v1", {PERSON: PASSWORD}, "app.log").url


# Module scope, not session: while Playwright's sync API is running, its event
# loop counts as running, and every async test after it (pytest-asyncio) fails.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: `bash scripts/test.sh` installs it (apt-get install chromium)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
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
def new_context(
    browser: Browser, artifacts: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., BrowserContext]]:
    """A new browser context (a new Chainlit session), closed after the test.

    Keywords go to `Browser.new_context` (e.g. `storage_state`); the viewport
    is the tests' own. If the test fails, each of its pages is screenshotted.
    """
    contexts: list[BrowserContext] = []

    def new(**options) -> BrowserContext:
        # Chainlit deletes the whole .files/ folder whenever any instance run from
        # this root shuts down (e.g. someone's `chainlit run` here, or a test's
        # restart of its own app); uploads then fail until it exists again.
        (REPO / ".files").mkdir(exist_ok=True)
        context = browser.new_context(viewport=VIEWPORT, **options)
        contexts.append(context)
        return context

    try:
        yield new
    finally:
        for n, context in enumerate(contexts):
            if request.node.stash.get(_failed, False):
                for page in context.pages:
                    page.screenshot(path=artifacts / f"{request.node.name}--failed-{n}.png")
            context.close()


@pytest.fixture
def open_chat(
    new_context: Callable[..., BrowserContext],
    app_url: str,
    signed_in: StorageState | None,
    artifacts: Path,
) -> Callable[..., ChatPage]:
    """Open a new chat, signed in, in a new browser context (a new Chainlit session).

    `open_chat(locale="zh-CN")` opens it as a browser set to Chinese would.
    """

    def open_(locale: str = "en-US") -> ChatPage:
        chat = ChatPage(new_context(locale=locale, storage_state=signed_in).new_page(), artifacts)
        chat.open(app_url)
        return chat

    return open_


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
    """This machine's environment with none of its settings, and the test's: nothing in
    the repository's `.env` reaches the app (`tests.hermetic.app_environment`)."""
    return app_environment(
        HOST="127.0.0.1",
        PORT=str(port),
        VLLM_BASE_URL=vllm_url,
        DATA_DIR=str(data_dir),
        CHAINLIT_AUTH_SECRET=secrets.token_urlsafe(32),  # signs the sign-in tokens
    )


def _add_person(env: dict[str, str], name: str, password: str) -> None:
    """Give a person a password, with the CLI an operator uses."""
    added = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "python"),
            "-m",
            "handlers.users",
            "add",
            name,
            "--password-stdin",
        ],
        cwd=REPO,
        env=env,
        input=password,
        text=True,
        capture_output=True,
    )
    if added.returncode:
        pytest.fail(f"could not add {name}:\n{added.stdout}{added.stderr}")


def _wait_until_serving(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + APP_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"the app exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
            )
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
