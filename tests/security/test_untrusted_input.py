"""Attacks with what a signed-in colleague sends: text, chat settings, links, videos.

Each test performs the attack through the app's own interfaces — Chainlit's
socket handlers and the app's callbacks in a real Chainlit websocket context
(tests/chainlit_harness.py), against the fake vLLM server on loopback — and
checks that it is refused with a clear message while the chat goes on.
"""

from __future__ import annotations

import chainlit.socket as socket

from handlers.i18n import translate


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
