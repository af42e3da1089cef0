"""The chat download in the browser: a chat with a photo, `/download` typed in the
composer, the zip saved by Chromium and opened — in English and in Chinese.

Screenshots: `download-<locale>-menu.png` (the command offered as "/down" is
typed) and `download-<locale>-ready.png` (the reply with the zip).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import expect

from handlers.core.i18n import translate
from tests.e2e.chat_page import ANSWERS, COMPOSER, QUESTIONS, SEND, TIMEOUT_MS, ChatPage
from tests.e2e.conftest import REPLY

QUESTIONS_ASKED = {"en-US": "What is in this photo?", "zh-CN": "这张照片里有什么？"}
ZIP_LINK = "a.inline-file"  # Chainlit's file element: <a download=name href=…>


@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_a_chat_downloads_as_markdown_with_its_photo(
    open_chat: Callable[..., ChatPage],
    photo: Callable[..., Path],
    fake,
    tmp_path: Path,
    locale: str,
):
    chat = open_chat(locale=locale)
    upload = photo("红色 photo.jpg", "red")
    chat.ask(QUESTIONS_ASKED[locale], upload)
    chat.wait_for_answer(REPLY)
    chat.wait_until_idle()

    asked = chat.page.locator(QUESTIONS).count()
    chat.page.fill(COMPOSER, "/down")
    offered = chat.page.get_by_text(translate("download.command", locale))
    expect(offered).to_be_visible(timeout=TIMEOUT_MS)
    chat.screenshot(f"download-{locale}-menu")
    chat.page.press(COMPOSER, "Enter")  # picks the command
    expect(chat.page.locator(SEND)).to_be_enabled(timeout=TIMEOUT_MS)
    chat.page.press(COMPOSER, "Enter")  # sends it
    expect(chat.page.locator(QUESTIONS)).to_have_count(asked + 1, timeout=TIMEOUT_MS)

    reply = chat.page.locator(ANSWERS).last
    expect(reply).to_contain_text(translate("download.ready", locale, images=1), timeout=TIMEOUT_MS)
    link = reply.locator(ZIP_LINK)
    expect(link).to_be_visible(timeout=TIMEOUT_MS)
    chat.screenshot(f"download-{locale}-ready")
    with chat.page.expect_download(timeout=TIMEOUT_MS) as saved:
        link.click()
    zip_path = tmp_path / saved.value.suggested_filename
    saved.value.save_as(zip_path)

    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        markdown = archive.read("chat.md").decode("utf-8")
        image = archive.read("images/001-红色_photo.jpg")
    assert names == ["chat.md", "images/001-红色_photo.jpg"]
    assert image == upload.read_bytes()
    assert QUESTIONS_ASKED[locale] in markdown and REPLY in markdown
    assert f"## {translate('download.question', locale)} · " in markdown
    assert "](images/001-%E7%BA%A2%E8%89%B2_photo.jpg)" in markdown
    assert len(fake.requests) == 1  # the download asked nothing of the model
