"""A colleague who keeps one chat going for ever: what a chat holds is bounded.

Through the app's callbacks in a real Chainlit websocket context
(tests/chainlit_harness.py), against the fake vLLM on loopback.
"""

from __future__ import annotations

import chainlit_app
from handlers.core.i18n import translate
from tests.app_helpers import photo, sent_images, sent_text
from tests.chainlit_harness import ChatHarness


def turns_of(chat: ChatHarness) -> list:
    return chainlit_app._chats.get(chat.session.id).conversation.turns


async def test_a_chat_kept_going_past_its_message_limit_is_asked_to_start_anew(
    start_app, fake_vllm
):
    await start_app(MAX_CHAT_MESSAGES="3")
    chat = ChatHarness()
    await chat.start()
    for n in range(3):
        await chat.send(f"question {n}")
    kept, asked = len(turns_of(chat)), len(fake_vllm.requests)
    await chat.send("question 3")
    assert chat.last_text() == translate("error.chat_too_long", "en-US", limit=3)
    assert len(turns_of(chat)) == kept and len(fake_vllm.requests) == asked


async def test_images_past_the_chats_limit_are_not_kept_and_the_text_still_goes(
    start_app, fake_vllm, tmp_path
):
    await start_app(MAX_CHAT_IMAGES="2")
    chat = ChatHarness()
    await chat.start()
    await chat.send("first", [photo(tmp_path, "one.jpg"), photo(tmp_path, "two.jpg")])
    await chat.send("and this one?", [photo(tmp_path, "three.jpg", colour="blue")])
    notice = translate("notice.chat_image_limit", "en-US", limit=2, names="three.jpg")
    assert any(notice in text for text in chat.texts())
    request = fake_vllm.requests[-1]
    assert "and this one?" in sent_text(request) and len(sent_images(request)) == 2
    assert sum(len(turn.images) for turn in turns_of(chat)) == 2
