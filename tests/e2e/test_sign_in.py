"""Password guessing in the real browser: past LOGIN_ATTEMPTS_PER_MINUTE wrong
passwords, Chainlit's own sign-in form says why in the person's language, and
the right password is refused too until the minute has passed. (The page shows
the translation of the response's status text, "Too Many Requests".)

The app is its own (`launch_app`), so the guesses count against nobody else's
sign-ins; LOGIN_ATTEMPTS_PER_MINUTE has its default, 10.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.chat_page import TIMEOUT_MS, LoginPage
from tests.e2e.conftest import VIEWPORT
from tests.fake_vllm import FakeVLLM

PERSON = ("carol", "carol's long passphrase")
ATTEMPTS_PER_MINUTE = 10  # the default
REFUSED = {
    "en-US": "Too many sign-in attempts. Please wait a minute and try again.",
    "zh-CN": "登录尝试次数过多。请等一分钟后再试。",
}


@pytest.fixture(scope="module")
def app_url(launch_app) -> Iterator[str]:
    fake = FakeVLLM(reply="unused")
    fake.start()
    try:
        app = launch_app(fake.base_url, dict([PERSON]), "sign-in-app.log")
        yield app.url
        app.stop()
    finally:
        fake.stop()


def test_guessing_a_password_in_the_form_is_refused_with_a_clear_message(
    browser: Browser, app_url: str, artifacts
):
    page = open_sign_in(browser, app_url, "en-US")
    for guess in range(ATTEMPTS_PER_MINUTE):
        assert submit(page, PERSON[0], f"wrong guess {guess}") == 401
    assert submit(page, *PERSON) == 429  # the right password, too late
    expect(page.get_by_text(REFUSED["en-US"])).to_be_visible(timeout=TIMEOUT_MS)
    page.screenshot(path=artifacts / "sign-in-refused-en-US.png")
    assert "/login" in page.url
    page.context.close()

    # Same address, another name and language: the per-address limit, said in Chinese.
    page = open_sign_in(browser, app_url, "zh-CN")
    assert submit(page, "someone-else", "any password at all") == 429
    expect(page.get_by_text(REFUSED["zh-CN"])).to_be_visible(timeout=TIMEOUT_MS)
    page.screenshot(path=artifacts / "sign-in-refused-zh-CN.png")
    page.context.close()


def open_sign_in(browser: Browser, url: str, language: str) -> Page:
    page = browser.new_context(viewport=VIEWPORT, locale=language).new_page()
    page.goto(url)
    return page


def submit(page: Page, name: str, password: str) -> int:
    """Fill and send the form; the status of the /login answer."""
    with page.expect_response(
        lambda response: response.url.endswith("/login") and response.request.method == "POST"
    ) as answer:
        LoginPage(page).sign_in(name, password)
    return answer.value.status
