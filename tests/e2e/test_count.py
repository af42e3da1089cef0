"""`/count` in a real browser, against the fake vLLM (which answers a JSON schema
with a count derived from the images it received): the table with its totals,
in English and Chinese, and its CSV downloaded from the answer."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import expect

from handlers.chat.counting import RESPONSE_FORMAT
from handlers.core.i18n import translate
from tests.e2e.chat_page import TIMEOUT_MS, ChatPage
from tests.fake_vllm import FakeVLLM


@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_a_count_of_two_photos_is_a_table_with_totals_and_a_csv(
    open_chat: Callable[..., ChatPage], fake: FakeVLLM, photo: Callable[..., Path], locale: str
) -> None:
    chat = open_chat(locale=locale)
    fake.token_delay = 0.05  # the status shows while the JSON arrives
    chat.choose_command(translate("preset.count", locale))
    chat.ask("", photo("red.jpg", "red"), photo("blue.jpg", "blue"))
    chat.wait_for_answer(translate("count.status", locale))
    chat.screenshot(f"count-{locale}-counting")

    table = chat.last_answer.locator("table")
    expect(table).to_be_visible(timeout=TIMEOUT_MS)
    chat.wait_until_idle()
    total = translate("count.total", locale)
    header = [cell.strip() for cell in table.locator("th").all_inner_texts()]
    assert header == [translate("count.object", locale), "red.jpg", "blue.jpg", total]
    rows = [
        [cell.strip() for cell in row.locator("td").all_inner_texts()]
        for row in table.locator("tbody tr").all()
    ]
    assert rows == [["red", "1", "0", "1"], ["blue", "0", "2", "2"], [total, "1", "2", "3"]]
    assert fake.requests[-1]["response_format"] == RESPONSE_FORMAT
    chat.last_answer.scroll_into_view_if_needed()
    chat.screenshot(f"count-{locale}-table")

    with chat.page.expect_download(timeout=TIMEOUT_MS) as download:
        chat.last_answer.locator("a[download='counts.csv']").click()
    saved = Path(download.value.path()).read_bytes().decode("utf-8-sig")
    assert list(csv.reader(io.StringIO(saved)))[-1] == [total, "1", "2", "3"]
