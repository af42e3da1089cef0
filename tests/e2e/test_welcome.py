"""The empty chat in a real browser: the app's own logo, favicon and title, the five
starters in the person's language, and a starter clicked before any image is attached.

Each scenario saves screenshots under test-artifacts/e2e/ (welcome-*.png).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urljoin

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import BrowserContext, Page, expect

from handlers.chat.welcome import STARTER_TASKS
from handlers.core.i18n import translate
from handlers.core.prompts import preset_instruction
from tests.e2e.chat_page import TIMEOUT_MS, ChatPage, LoginPage
from tests.fake_vllm import FakeVLLM
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
STARTERS = "#starters button"
WELCOME_LOGO = "#welcome-screen img.logo"
THEME = json.loads((REPO / "public" / "theme.json").read_text(encoding="utf-8"))


def open_welcome(
    new_context: Callable[..., BrowserContext],
    app_url: str,
    signed_in,
    artifacts: Path,
    locale: str,
    theme: str,
) -> ChatPage:
    """The empty chat in `theme`, as the person's theme switch leaves it (Chainlit
    keeps the choice in localStorage; with none, it shows its default, dark)."""
    context = new_context(locale=locale, storage_state=signed_in)
    context.add_init_script(f"localStorage.setItem('vite-ui-theme', '{theme}')")
    chat = ChatPage(context.new_page(), artifacts)
    chat.open(app_url)
    expect(chat.page.locator(STARTERS)).to_have_count(len(STARTER_TASKS), timeout=TIMEOUT_MS)
    return chat


def served(page: Page, url: str) -> bytes:
    response = page.request.get(url)
    assert response.ok, url
    return response.body()


@pytest.mark.parametrize(
    ("locale", "theme"), [("en-US", "light"), ("zh-CN", "dark")], ids=["en-light", "zh-dark"]
)
def test_the_welcome_shows_the_apps_logo_and_five_starters_in_the_persons_language(
    new_context, app_url, signed_in, artifacts, fake: FakeVLLM, locale: str, theme: str
):
    chat = open_welcome(new_context, app_url, signed_in, artifacts, locale, theme)
    page = chat.page
    labels = [translate(f"starter.{task}.label", locale) for task in STARTER_TASKS]
    expect(page.locator(STARTERS)).to_have_text(labels)
    for task, icon in zip(STARTER_TASKS, page.locator(f"{STARTERS} img").all()):
        assert (
            served(page, icon.get_attribute("src"))
            == (REPO / "public" / "icons" / f"{task}.svg").read_bytes()
        )
        assert icon.evaluate("image => image.naturalWidth") > 0

    logo = page.locator(WELCOME_LOGO)
    expect(logo).to_be_visible()
    assert f"theme={theme}" in logo.get_attribute("src")
    assert logo.evaluate("image => image.complete && image.naturalWidth") > 0
    assert (
        served(page, logo.get_attribute("src"))
        == (REPO / "public" / f"logo_{theme}.svg").read_bytes()
    )

    expect(page).to_have_title("Visual Assistant")
    favicon = urljoin(page.url, page.locator("link[rel=icon]").get_attribute("href"))
    assert served(page, favicon) == (REPO / "public" / "favicon.svg").read_bytes()
    expect(page.locator("#chat-input")).to_have_attribute(
        "placeholder",
        "把图片拖到这里并提问，或输入 / 选择任务…"
        if locale == "zh-CN"
        else "Drop images here and ask about them, or type / for a task…",
    )
    primary = page.evaluate(
        "getComputedStyle(document.documentElement).getPropertyValue('--primary')"
    )
    assert (
        primary.strip() == THEME["variables"][theme]["--primary"]
    )  # the brand's colour, not Chainlit's pink
    chat.screenshot(f"welcome-{locale}-{theme}")


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_login_page_shows_the_apps_logo(
    new_context, app_url, artifacts, fake: FakeVLLM, theme: str
):
    context = new_context(locale="en-US")
    context.add_init_script(f"localStorage.setItem('vite-ui-theme', '{theme}')")
    page = context.new_page()
    page.goto(app_url)
    expect(page.locator("#email")).to_be_visible(
        timeout=TIMEOUT_MS
    )  # not signed in: the login form
    expect(page.get_by_text("Sign in to Visual Assistant")).to_be_visible()
    expect(
        page.get_by_text("User name")
    ).to_be_visible()  # people sign in with a name, not an e-mail
    logo = page.locator("img.logo")
    expect(logo).to_be_visible()
    assert logo.evaluate("image => image.complete && image.naturalWidth") > 0
    assert (
        served(page, logo.get_attribute("src"))
        == (REPO / "public" / f"logo_{theme}.svg").read_bytes()
    )
    picture = page.locator("img[alt=Image]")  # the other half of the page
    assert (
        served(page, urljoin(page.url, picture.get_attribute("src")))
        == (REPO / "public" / "login.svg").read_bytes()
    )
    expect(page).to_have_title("Visual Assistant")
    page.screenshot(path=artifacts / f"welcome-login-{theme}.png")


@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_a_starter_clicked_before_any_image_asks_for_it_and_the_image_gets_its_preset(
    new_context, app_url, signed_in, artifacts, fake: FakeVLLM, photo, locale: str
):
    chat = open_welcome(new_context, app_url, signed_in, artifacts, locale, "light")
    chat.page.locator(STARTERS, has_text=translate("starter.count.label", locale)).click()
    chat.wait_for_answer(translate("notice.awaiting.count", locale))
    expect(chat.page.locator("#starters")).to_have_count(0)  # the chat is no longer empty
    assert fake.requests == []
    chat.screenshot(f"welcome-starter-waiting-{locale}")

    chat.ask("", photo("shelf.jpg", "orange"))  # no command, no words: just the image
    wait_until(lambda: len(fake.requests) == 1, "the image reached the model server")
    question = fake.requests[0]["messages"][-1]["content"]
    assert any(part.get("type") == "image_url" for part in question)
    assert preset_instruction("count") in " ".join(p.get("text", "") for p in question)
    assert fake.requests[0]["response_format"]["type"] == "json_schema"  # the count's own path
    chat.wait_for_answer(translate("count.total", locale))  # its table's total row
    chat.wait_until_idle()
    chat.screenshot(f"welcome-starter-answered-{locale}")


def shelf_photo(path: Path) -> Path:
    """A made-up photo for the README: boxes on a shelf, something to count."""
    image = Image.new("RGB", (1200, 900), "#dbeafe")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 620, 1200, 900), fill="#92400e")
    for n, colour in enumerate(["#ef4444", "#f59e0b", "#10b981", "#3b82f6", "#8b5cf6"]):
        left = 80 + n * 215
        draw.rounded_rectangle((left, 380 - 40 * (n % 2), left + 170, 620), radius=14, fill=colour)
    image.save(path, "JPEG", quality=90)
    return path


@pytest.mark.skipif(
    not os.environ.get("README_SCREENSHOT"),
    reason="set README_SCREENSHOT=1 to retake docs/screenshot.png",
)
def test_readme_screenshot(launch_app, vllm_port, new_context, artifacts, fake: FakeVLLM, tmp_path):
    """docs/screenshot.png: the welcome of someone new (no chats yet, light theme), a photo
    dropped and a question typed, not yet sent. `README_SCREENSHOT=1 .venv/bin/python -m
    pytest tests/e2e/test_welcome.py -k readme` retakes it."""
    person = ("sam", "a password for the screenshot")
    app = launch_app(f"http://127.0.0.1:{vllm_port}/v1", dict([person]), "readme-app.log")
    context = new_context(locale="en-US")
    context.add_init_script("localStorage.setItem('vite-ui-theme', 'light')")
    page = context.new_page()
    page.set_viewport_size({"width": 1200, "height": 720})  # less empty space above and below
    page.goto(app.url)
    LoginPage(page).sign_in(*person)
    chat = ChatPage(page, artifacts)
    chat.wait_until_ready()
    expect(page.locator(STARTERS)).to_have_count(len(STARTER_TASKS), timeout=TIMEOUT_MS)
    chat.attach(shelf_photo(tmp_path / "shelf.jpg"))
    page.fill("#chat-input", "How many boxes are on the shelf?")
    expect(page.locator("#chat-submit")).to_be_enabled(timeout=TIMEOUT_MS)
    page.screenshot(path=REPO / "docs" / "screenshot.png")
    app.stop()
