"""Attacks with what a signed-in colleague sends: text, chat settings, links, videos.

Each test performs the attack through the app's own interfaces — Chainlit's
socket handlers and the app's callbacks in a real Chainlit websocket context
(tests/chainlit_harness.py), against the fake vLLM server on loopback — and
checks that it is refused with a clear message while the chat goes on.
"""

from __future__ import annotations

import chainlit.socket as socket

from handlers.i18n import translate
from tests.mediacorpus import flat_page, write_pdf

# The message of the attack review: 640 KB that named 80 million pages.
PAGES_BOMB = "please read pages 1-1000, " + "1-1000, " * 80_000


async def test_an_unknown_answer_language_sent_over_the_socket_is_refused_and_the_chat_goes_on(chat, app):
    chat.enter()
    await socket.change_settings(chat.session.socket_id, {"answer_language": "zh"})
    await socket.change_settings(chat.session.socket_id, {"answer_language": "xx"})
    refusal = translate("error.unknown_answer_language", "en-US", choices="auto, en, zh")
    assert chat.last_text() == refusal
    assert chat.session.chat_settings["answer_language"] == "zh"  # what the thread keeps
    await chat.send("What is this?")
    assert chat.last_text() == app.reply
    assert "Simplified Chinese" in app.requests[-1]["messages"][0]["content"]


async def test_a_640_kb_message_naming_80_million_pages_is_refused_unread(chat, app):
    await chat.send(PAGES_BOMB)
    refusal = translate("error.message_too_long", "en-US", length=len(PAGES_BOMB), limit=4 * 65536)
    assert chat.last_text() == refusal
    assert app.requests == []
    await chat.send("What is this?")
    assert chat.last_text() == app.reply
    assert "pages 1-1000" not in str(app.requests[-1]["messages"])  # not kept either


async def test_a_message_naming_a_hundred_and_one_page_ranges_of_a_pdf_is_refused(chat, app, tmp_path):
    pdf = write_pdf(tmp_path / "report.pdf", [flat_page((200, 200, 200))] * 3)
    ranges = ", ".join(f"{n}-{n + 1}" for n in range(1, 203, 2))  # 101 ranges
    await chat.send(f"Read pages {ranges}", [pdf])
    assert chat.last_text() == translate("error.too_many_page_ranges", "en-US", limit=100)
    assert app.requests == []
    await chat.send("Read pages 2-3", [pdf])
    assert "report.pdf, page 2" in str(app.requests[-1]["messages"])


async def test_a_pasted_table_of_contents_without_a_pdf_is_not_refused(chat, app):
    contents = "\n".join(f"Chapter {n} ... page {n * 3}" for n in range(1, 300))
    await chat.send(f"Summarise this table of contents:\n{contents}")
    assert chat.last_text() == app.reply
