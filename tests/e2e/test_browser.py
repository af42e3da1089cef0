"""The app in a real browser, started as the README starts it, against the fake vLLM.

Each scenario drives Chainlit's own page (composer, file input, stop button)
and checks two sides: what the page shows a person, and what the app sent the
model server (the fake's recorded requests and stream counters). Each saves a
screenshot under test-artifacts/e2e/.

Every chat is opened by a person who signed in through the login form (see
conftest.py). Reopening an earlier chat after a restart and asking about its
images again, and who may see it, is in test_history.py.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from playwright.sync_api import Locator, expect

from handlers.core.i18n import translate
from tests.e2e.chat_page import COMPOSER, ERROR_ICON, QUESTIONS, ChatPage
from tests.fake_vllm import FakeVLLM, count_images
from tests.waiting import wait_until

LONG_REPLY = " ".join(f"w{n}" for n in range(1, 301))  # 300 tokens: 15 s at 0.05 s a token
CJK = re.compile("[\u4e00-\u9fff]")


def content_parts(messages: list[dict]) -> list[dict]:
    """Every content part of the messages; a plain-string content is one text part."""
    parts = []
    for message in messages:
        content = message["content"]
        parts.extend([{"type": "text", "text": content}] if isinstance(content, str) else content)
    return parts


def sent_images(request: dict) -> list[Image.Image]:
    urls = [
        p["image_url"]["url"]
        for p in content_parts(request["messages"])
        if p.get("type") == "image_url"
    ]
    return [Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) for url in urls]


def question_text(request: dict) -> str:
    """The last text of the request's last message: the question just asked (in a first
    message, the system prompt comes before it)."""
    return [p["text"] for p in content_parts(request["messages"][-1:]) if p.get("type") == "text"][
        -1
    ]


def words(text: str) -> str:
    return " ".join(text.split())


def assert_shows_no_server_url(message: Locator, url: str) -> None:
    """The model server's address is the administrators' business (and may carry credentials)."""
    host = url.split("//", 1)[1].split("/", 1)[0]
    assert host not in message.inner_text()
    expect(message.locator("a")).to_have_count(0)


def test_an_attached_photo_is_answered_as_it_streams(chat: ChatPage, fake: FakeVLLM, photo) -> None:
    fake.reply = " ".join(f"word{n}" for n in range(1, 41))
    fake.token_delay = 0.1  # about 4 s of streaming: long enough to see it grow
    chat.ask("What is in this photo?", photo("IMG_0001.jpg", "red", size=(2400, 1800)))
    expect(chat.page.locator(QUESTIONS).last.locator("img")).to_be_visible()

    partial = chat.wait_for_answer("word1").inner_text()
    assert "word40" not in partial, "the answer should arrive word by word, not at once"
    chat.screenshot("upload-streaming")
    chat.wait_for_answer("word40")
    chat.wait_until_idle()
    chat.screenshot("upload-answered")

    assert words(chat.last_answer.inner_text()) == fake.reply
    (request,) = fake.requests
    assert question_text(request) == "What is in this photo?"
    (image,) = sent_images(request)
    assert max(image.size) == 1024  # scaled for Pixtral before it left the app


def test_a_follow_up_question_still_sends_the_photo(chat: ChatPage, fake: FakeVLLM, photo) -> None:
    chat.ask("What is this?", photo("square.jpg", "blue"))
    chat.wait_for_answer(fake.reply)
    chat.wait_until_idle()
    chat.ask("What colour is it?")
    expect(chat.answers).to_have_count(2)
    chat.wait_for_answer(fake.reply)
    chat.wait_until_idle()
    chat.screenshot("follow-up")

    first, follow_up = fake.requests
    assert [m["role"] for m in follow_up["messages"]] == ["user", "assistant", "user"]
    assert follow_up["messages"][1]["content"] == fake.reply
    assert question_text(follow_up) == "What colour is it?"
    (image,) = sent_images(follow_up)
    red, green, blue = image.convert("RGB").getpixel((image.width // 2, image.height // 2))
    assert blue > 200 and red < 60 and green < 60  # the photo from the first question


def test_stop_keeps_the_partial_answer_and_frees_the_server(chat: ChatPage, fake: FakeVLLM) -> None:
    fake.reply, fake.token_delay = LONG_REPLY, 0.05
    chat.ask("Tell me everything.")
    chat.wait_for_answer("w5")
    chat.stop()
    wait_until(
        lambda: fake.streams_aborted == 1 and fake.open_streams == 0, "the model request is aborted"
    )
    expect(chat.answers.filter(has_text=translate("notice.stopped", "en-US"))).to_have_count(1)
    expect(chat.answers.filter(has_text="Task manually stopped.")).to_have_count(
        0
    )  # Chainlit's own words
    partial = chat.answers.filter(has_text="w1")
    expect(partial).to_have_count(1)
    shown = words(partial.inner_text())
    assert LONG_REPLY.startswith(shown) and len(shown) < len(LONG_REPLY)
    chat.screenshot("stop-partial-kept")

    fake.reply, fake.token_delay = "Carrying on from there.", 0.0
    chat.ask("Go on.")
    chat.wait_for_answer("Carrying on from there.")
    chat.wait_until_idle()
    partial.scroll_into_view_if_needed()
    chat.screenshot("stop-then-next-question")
    assert words(partial.inner_text()) == shown  # still there, unchanged
    remembered = fake.requests[-1]["messages"][1]
    assert remembered["role"] == "assistant" and words(remembered["content"]) == shown
    assert fake.streams_aborted == 1


def test_a_broken_file_is_named_and_the_valid_image_is_answered(
    chat: ChatPage, fake: FakeVLLM, photo, tmp_path: Path
) -> None:
    broken = tmp_path / "holiday.png"
    broken.write_text("<!doctype html><html><body>Saved from a web page</body></html>")
    chat.ask("What do these show?", broken, photo("beach.jpg", "yellow"))
    chat.wait_for_answer(fake.reply)
    chat.wait_until_idle()
    chat.screenshot("broken-file")

    refusal = chat.answers.filter(has_text="holiday.png")
    expect(refusal).to_have_count(1)
    assert "beach.jpg" not in refusal.inner_text()
    assert "JPEG" in refusal.inner_text()  # it says which formats are accepted
    (request,) = fake.requests
    assert count_images(request["messages"]) == 1


def test_a_stopped_server_is_said_and_the_chat_recovers_when_it_is_back(
    chat: ChatPage, fake: FakeVLLM
) -> None:
    fake.go_down()
    chat.ask("Hello?")
    said = translate("error.model_unreachable", "en-US")
    error = chat.wait_for_answer(said)
    chat.wait_until_idle()
    expect(error.locator(ERROR_ICON)).to_be_visible()
    assert_shows_no_server_url(error, fake.base_url)
    chat.screenshot("server-down")

    fake.come_up()  # the app is not restarted
    chat.ask("Hello again?")
    chat.wait_for_answer(fake.reply)
    chat.wait_until_idle()
    earlier_error = chat.answers.filter(has_text=said)
    expect(earlier_error).to_have_count(1)  # the error is not lost
    earlier_error.scroll_into_view_if_needed()
    chat.screenshot("server-back")
    (request,) = fake.requests
    assert question_text(request) == "Hello again?"


def test_a_chinese_browser_gets_the_apps_messages_in_chinese(
    open_chat: Callable[..., ChatPage], fake: FakeVLLM
) -> None:
    chat = open_chat(locale="zh-CN")
    expect(chat.page.locator(COMPOSER)).to_have_attribute(
        "placeholder", CJK
    )  # Chainlit's own strings
    chat.page.locator("#command-button").click()
    preset = translate("preset.describe", "zh-CN")
    assert CJK.search(preset)
    expect(chat.page.get_by_role("option").filter(has_text=preset)).to_be_visible()
    chat.screenshot("zh-commands")
    chat.page.keyboard.press("Escape")

    fake.go_down()
    chat.ask("这是什么？")
    expected = translate("error.model_unreachable", "zh-CN")
    assert CJK.search(expected)
    error = chat.wait_for_answer(expected)
    chat.wait_until_idle()
    chat.screenshot("zh-server-down")
    assert_shows_no_server_url(error, fake.base_url)

    fake.come_up()
    chat.ask("现在呢？")
    chat.wait_for_answer(fake.reply)
    chat.wait_until_idle()

    fake.reply, fake.token_delay = LONG_REPLY, 0.05
    chat.ask("详细说说。")
    chat.wait_for_answer("w5")
    chat.stop()
    stopped = translate("notice.stopped", "zh-CN")
    assert CJK.search(stopped)
    expect(chat.answers.filter(has_text=stopped)).to_have_count(1)
    chat.screenshot("zh-stopped")


def test_closing_the_browser_mid_answer_cancels_the_model_request(
    open_chat: Callable[..., ChatPage], fake: FakeVLLM
) -> None:
    chat = open_chat()
    fake.reply, fake.token_delay = LONG_REPLY, 0.05
    chat.ask("Tell me everything.")
    chat.wait_for_answer("w5")
    chat.screenshot("disconnect-before-closing")
    assert fake.open_streams == 1
    chat.page.context.close()  # the socket goes away mid-answer
    wait_until(
        lambda: fake.open_streams == 0 and fake.streams_aborted == 1,
        "the model request is cancelled after the browser went away",
        timeout=10,  # well before the 15 s the whole answer would take
    )
    assert fake.streams_completed == 0

    fake.reply, fake.token_delay = "Hello again.", 0.0
    later = open_chat()
    later.ask("Anyone there?")
    later.wait_for_answer("Hello again.")
    later.screenshot("disconnect-then-new-chat")
