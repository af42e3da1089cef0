"""Long work shows progress, and a cut answer gets a Continue button: in Chromium,
in English and Chinese, against the fake vLLM."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from tests.e2e.chat_page import TIMEOUT_MS, ChatPage
from tests.fake_vllm import FakeVLLM
from tests.mediacorpus import write_video

# Every text a message had while the page was open, however briefly (an
# update in place replaces the last one): the page is watched from within.
WATCH = """() => {
  window.__seen = [];
  new MutationObserver(() => {
    for (const node of document.querySelectorAll('[data-step-type="assistant_message"]')) {
      const text = node.innerText;
      if (!window.__seen.includes(text)) window.__seen.push(text);
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""

SAMPLING = {"en-US": "Sampling meeting.mp4:", "zh-CN": "正在从 meeting.mp4 取样"}
SAMPLED = {"en-US": "36 moments", "zh-CN": "36 个时刻"}
CONTINUE = {"en-US": "Continue", "zh-CN": "继续"}


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    """Ten minutes with one keyframe: the app decodes it through (3000 frames),
    which takes long enough on two cores to watch."""
    folder = tmp_path_factory.mktemp("video")
    return write_video(folder / "meeting.mp4", seconds=600, fps=5, size=(640, 360), gop=3000)


@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_a_long_video_shows_its_sampling_then_what_was_sent(
    open_chat, fake: FakeVLLM, long_video, locale
):
    chat: ChatPage = open_chat(locale=locale)
    chat.page.evaluate(WATCH)
    chat.ask("What happens in the meeting?", long_video)
    try:
        chat.page.get_by_text(SAMPLING[locale]).first.wait_for(timeout=TIMEOUT_MS)
        chat.screenshot(f"progress-video-{locale}")
    except PlaywrightTimeout:  # finished between two looks: the record below still tells
        pass
    chat.wait_for_answer(fake.reply)
    chat.wait_until_idle()
    seen = chat.page.evaluate("window.__seen")
    steps = [text for text in seen if SAMPLING[locale] in text]
    assert steps and all(text.startswith("◷") for text in steps), seen
    assert any(
        SAMPLED[locale] in text for text in chat.answer_texts()
    )  # the same message, finished
    assert not any(SAMPLING[locale] in text for text in chat.answer_texts())
    sampled = chat.answers.filter(has_text=SAMPLED[locale])
    expect(sampled.locator("img[alt*=':']")).to_have_count(
        4, timeout=TIMEOUT_MS
    )  # 4 sheets, named by time
    chat.screenshot(f"progress-video-done-{locale}")


def story(body: dict) -> str:
    """1100 words, cut at MAX_TOKENS (1024) the first time; the rest when continued."""
    if body.get("continue_final_message"):
        return "and that is the end of the story."
    return " ".join(f"w{n}" for n in range(1, 1101))


@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_continue_gets_the_rest_of_a_cut_answer_in_the_same_answer(
    open_chat, fake: FakeVLLM, locale
):
    fake.reply, fake.token_delay = story, 0.0
    chat: ChatPage = open_chat(locale=locale)
    chat.ask("Tell me a long story.")
    button = chat.page.get_by_role("button", name=CONTINUE[locale])
    expect(button).to_be_visible(timeout=3 * TIMEOUT_MS)  # 1024 tokens take the page a while
    chat.wait_until_idle()
    answers_before = chat.answers.count()
    chat.screenshot(f"continue-offered-{locale}")
    with chat.page.expect_response("**/project/action", timeout=TIMEOUT_MS):
        button.click()
    story_answer = chat.page.locator('[data-step-type="assistant_message"]', has_text="w1024")
    expect(story_answer).to_contain_text("the end of the story", timeout=TIMEOUT_MS)
    chat.wait_until_idle()
    expect(button).to_have_count(0)  # used: gone, and the answer was not cut again
    assert chat.answers.count() == answers_before - 1  # the cut notice went with its button
    assert fake.requests[-1]["continue_final_message"] is True
    chat.screenshot(f"continue-done-{locale}")
