"""Sign-in and history in the real browser: a chat that outlives an app restart,
seen only by its owner, and rated for the export.

The tests are the steps of one story, in file order: Alice asks about a photo;
the app restarts and she resumes that chat and asks again; Bob, signed in next
to her, can reach neither her chat nor her photo; she gives the answer a
thumbs-up, and the export has it.
Each step hands on what the next needs (`Story`); a step whose predecessor did
not finish is skipped, so the first failure is the one to read.

The module has its own app (`launch_app`: its own DATA_DIR, auth secret and
people) and its own fake vLLM, so restarting it leaves the session's app, and
the other browser tests, alone. Screenshots are named `history-<step>-*.png`.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from PIL import Image
from playwright.sync_api import BrowserContext, StorageState, expect

from tests.e2e.chat_page import QUESTIONS, TIMEOUT_MS, ChatPage, LoginPage
from tests.fake_vllm import FakeVLLM, count_images

REPO = Path(__file__).resolve().parents[2]
ALICE = ("alice", "alice's long passphrase")
BOB = ("bob", "bob's other passphrase")
COLOUR = (31, 163, 124)  # a teal no other test uses: the photo is recognisable wherever it turns up
PHOTO = "desk.jpg"
QUESTION = "What is on my desk in this photo?"
ANSWER = "A teal desk mat, seen by the fake vLLM server."
FOLLOW_UP = "And what colour was that mat?"
FOLLOW_UP_ANSWER = "Still teal: the photo came along with the question."
# Chainlit's thread list: one item per chat, its id "thread-<thread id>", its text the chat's name.
THREADS = 'li[data-sidebar="menu-item"][id^="thread-"]'
# What Chainlit shows when the socket that would resume a thread is refused.
RESUME_REFUSED = "Couldn't resume chat"


@dataclass
class Story:
    """What one step leaves for the next."""

    alice: StorageState | None = None  # her browser state once signed in: the sign-in cookie
    thread_id: str | None = None  # her chat
    image_url: str | None = (
        None  # her photo, as her resumed chat shows it (the app's /files/ route)
    )
    rated: bool | None = None  # her thumbs-up on the answer was stored

    def needs(self, *facts: str) -> None:
        missing = [fact for fact in facts if getattr(self, fact) is None]
        if missing:
            pytest.skip(f"an earlier step did not finish: no {', '.join(missing)}")


@pytest.fixture(scope="module")
def story() -> Story:
    return Story()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeVLLM]:
    """One fake for the whole story (not conftest's one per test): the app is started pointing at it."""
    server = FakeVLLM(reply=ANSWER, token_delay=0.02)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def app(launch_app, fake: FakeVLLM):
    started = launch_app(fake.base_url, dict([ALICE, BOB]), "history-app.log")
    try:
        yield started
    finally:
        started.stop()


def sign_in(
    context: BrowserContext, url: str, person: tuple[str, str], artifacts: Path
) -> ChatPage:
    """Open the app, sign in through the login form, and wait for a new chat."""
    page = context.new_page()
    page.goto(url)
    LoginPage(page).sign_in(*person)
    chat = ChatPage(page, artifacts)
    chat.wait_until_ready()
    return chat


def sent_images(request: dict) -> list[Image.Image]:
    parts = [
        part
        for message in request["messages"]
        if isinstance(message["content"], list)
        for part in message["content"]
    ]
    urls = [part["image_url"]["url"] for part in parts if part["type"] == "image_url"]
    return [Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) for url in urls]


def texts(message: dict) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return " ".join(part["text"] for part in content if part["type"] == "text")


def assert_is_the_photo(image: Image.Image) -> None:
    centre = image.convert("RGB").getpixel((image.width // 2, image.height // 2))
    assert all(abs(got - want) <= 10 for got, want in zip(centre, COLOUR)), (
        f"centre pixel {centre}, not {COLOUR}"
    )


def wait_until_loaded(image) -> None:
    """An <img> that has loaded and decoded (a refused or broken URL leaves naturalWidth at 0)."""
    image.page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0",
        arg=image.element_handle(),
        timeout=TIMEOUT_MS,
    )


def test_alice_signs_in_and_asks_about_her_photo(
    app,
    fake: FakeVLLM,
    new_context: Callable[..., BrowserContext],
    photo,
    artifacts: Path,
    story: Story,
) -> None:
    context = new_context()
    chat = sign_in(context, app.url, ALICE, artifacts)
    chat.ask(QUESTION, photo(PHOTO, "#" + bytes(COLOUR).hex()))
    chat.wait_for_answer(ANSWER)
    chat.wait_until_idle()
    expect(chat.page.locator(QUESTIONS).locator("img")).to_be_visible()
    listed = chat.page.locator(THREADS).filter(has_text=QUESTION)
    expect(listed).to_have_count(1, timeout=TIMEOUT_MS)  # named after her first question
    chat.screenshot("history-1-alice-answered")

    (request,) = fake.requests
    assert texts(request["messages"][-1]).endswith(QUESTION)  # after the system prompt
    (image,) = sent_images(request)
    assert_is_the_photo(image)
    story.alice = context.storage_state()
    story.thread_id = listed.get_attribute("id").removeprefix("thread-")


def test_after_a_restart_alice_resumes_her_chat_and_the_model_sees_the_photo_again(
    app, fake: FakeVLLM, new_context: Callable[..., BrowserContext], artifacts: Path, story: Story
) -> None:
    story.needs("alice", "thread_id")
    app.restart()  # same DATA_DIR, same auth secret
    fake.reply = FOLLOW_UP_ANSWER
    chat = ChatPage(new_context(storage_state=story.alice).new_page(), artifacts)
    chat.open(app.url)  # her cookie from before the restart still signs her in
    earlier = chat.page.locator(f"#thread-{story.thread_id}")
    expect(earlier).to_have_text(QUESTION, timeout=TIMEOUT_MS)
    chat.screenshot("history-2-sidebar-after-restart")

    earlier.click()
    asked = chat.page.locator(QUESTIONS)
    expect(asked).to_have_count(1, timeout=TIMEOUT_MS)
    expect(asked).to_contain_text(QUESTION)
    expect(chat.answers.filter(has_text=ANSWER)).to_have_count(1)
    shown = asked.locator("img")
    wait_until_loaded(shown)
    story.image_url = shown.evaluate("img => img.src")
    assert urlsplit(story.image_url).path.startswith("/files/")
    chat.screenshot("history-2-resumed")

    chat.ask(FOLLOW_UP)
    chat.wait_for_answer(FOLLOW_UP_ANSWER)
    chat.wait_until_idle()
    chat.screenshot("history-2-follow-up")
    request = fake.requests[-1]
    assert [m["role"] for m in request["messages"]] == ["user", "assistant", "user"]
    question, answer, follow_up = request["messages"]
    assert (
        texts(question).endswith(QUESTION)
        and texts(answer) == ANSWER
        and texts(follow_up) == FOLLOW_UP
    )
    assert count_images(request["messages"]) == 1
    (image,) = sent_images(request)
    assert_is_the_photo(image)


def test_bob_sees_neither_alices_chat_nor_her_photo(
    app, fake: FakeVLLM, new_context: Callable[..., BrowserContext], artifacts: Path, story: Story
) -> None:
    story.needs("alice", "thread_id", "image_url")
    fake.reply = "Hello Bob."
    bob = new_context()
    chat = sign_in(bob, app.url, BOB, artifacts)
    chat.ask("Is this my own chat?")
    chat.wait_for_answer("Hello Bob.")
    chat.wait_until_idle()
    threads = chat.page.locator(THREADS)
    expect(threads).to_have_count(
        1, timeout=TIMEOUT_MS
    )  # his list has loaded: his chat, and only it
    expect(threads).to_have_text("Is this my own chat?")
    chat.screenshot("history-3-bob-sidebar")

    # Chainlit refuses the socket that would resume someone else's thread; the
    # page says so in a toast and goes back to "/", where the tab stays
    # disconnected ("Could not reach the server") until it is reloaded.
    chat.page.goto(f"{app.url}/thread/{story.thread_id}")
    expect(chat.page.get_by_text(RESUME_REFUSED)).to_be_visible(timeout=TIMEOUT_MS)
    expect(chat.page).to_have_url(f"{app.url}/", timeout=TIMEOUT_MS)
    # The toast is still sliding in: finish its animation so the screenshot shows it.
    chat.page.screenshot(path=artifacts / "history-3-bob-refused.png", animations="disabled")
    expect(chat.page.locator(QUESTIONS)).to_have_count(0)
    for hers in (QUESTION, ANSWER, FOLLOW_UP, FOLLOW_UP_ANSWER):  # her chat's name included
        expect(chat.page.get_by_text(hers)).to_have_count(0)
    chat.page.reload()
    chat.wait_until_ready()
    expect(chat.page.locator(THREADS)).to_have_text(["Is this my own chat?"], timeout=TIMEOUT_MS)

    assert bob.request.get(story.image_url).status == 404
    hers = new_context(storage_state=story.alice).request.get(story.image_url)
    assert hers.status == 200
    assert_is_the_photo(Image.open(io.BytesIO(hers.body())))


def test_alices_thumbs_up_on_her_answer_is_stored(
    app, new_context: Callable[..., BrowserContext], artifacts: Path, story: Story
) -> None:
    story.needs("alice", "thread_id")
    chat = ChatPage(new_context(storage_state=story.alice).new_page(), artifacts)
    chat.page.goto(f"{app.url}/thread/{story.thread_id}")
    answer = chat.answers.filter(has_text=ANSWER)
    expect(answer).to_have_count(1, timeout=TIMEOUT_MS)
    answer.locator(".positive-feedback-off").click()
    chat.page.locator("#submit-feedback").click()  # the dialog that offers a comment
    expect(chat.page.get_by_role("dialog")).to_have_count(0)
    expect(answer.locator(".positive-feedback-on")).to_be_visible(
        timeout=TIMEOUT_MS
    )  # the server took it
    chat.screenshot("history-4-thumbs-up")

    chat.page.reload()
    answer = chat.answers.filter(has_text=ANSWER)
    expect(answer.locator(".positive-feedback-on")).to_be_visible(
        timeout=TIMEOUT_MS
    )  # kept with the thread
    story.rated = True


# Chainlit 2.12's thumbs rate the answer's run step (the `on_message` step, its
# parent), not the answer: the export must follow that.
def test_the_export_has_alices_rated_answer_with_her_question_and_photo(
    app, story: Story, tmp_path: Path
) -> None:
    story.needs("alice", "thread_id", "image_url", "rated")
    out = tmp_path / "ratings.jsonl"
    exported = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "handlers.export", "--out", str(out)],
        check=False,
        cwd=REPO,
        env=app.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert exported.returncode == 0, exported.stderr
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 1, f"{exported.stderr.strip()}: {records}"
    (record,) = records
    assert (record["user"], record["thread_id"]) == ("alice", story.thread_id)
    assert (record["question"], record["answer"], record["rating"]) == (QUESTION, ANSWER, 1)
    (image,) = record["images"]
    assert image["name"] == PHOTO and image["url"] == urlsplit(story.image_url).path
