"""The Continue button under an answer cut at the length limit, through the app's callbacks."""

from __future__ import annotations

import asyncio

import chainlit as cl
import chainlit.socket
import pytest

import chainlit_app
from handlers.core.i18n import translate
from tests.chainlit_harness import ChatHarness
from tests.waiting import eventually

FIRST = "one two three four five "
REST = "six seven eight nine ten "
END = "eleven twelve."


def reply_by_turn(body: dict) -> str:
    """The whole answer is 12 words; a continuation is answered with what follows
    the answer so far (as a model would go on), so MAX_TOKENS=5 cuts it twice."""
    words = (FIRST + REST + END).split(" ")
    if body.get("continue_final_message"):
        so_far = len(body["messages"][-1]["content"].split(" ")) - 1
        return " ".join(words[so_far:])
    return FIRST + REST + END


@pytest.fixture
async def cut_chat(start_app, fake_vllm):
    await start_app(MAX_TOKENS="5")
    fake_vllm.reply = reply_by_turn
    harness = ChatHarness()
    await harness.start()
    await harness.send("Tell me a story")
    return harness


def actions_of(chat: ChatHarness) -> list[dict]:
    """The buttons the browser would show: those sent, less those removed or
    whose message was removed."""
    removed = {
        data["id"] for event, data in chat.events if event in ("delete_message", "remove_action")
    }
    return [
        data
        for event, data in chat.events
        if event == "action" and data["id"] not in removed and data["forId"] not in removed
    ]


def continue_button(chat: ChatHarness) -> cl.Action:
    (button,) = actions_of(chat)
    return cl.Action(**button)


async def press(chat: ChatHarness, action: cl.Action) -> None:
    chat.enter()
    await chainlit_app.on_continue(action)


async def test_a_cut_answer_offers_continue_and_gets_the_rest_in_the_same_answer(
    cut_chat, fake_vllm
):
    answer_id = cut_chat.visible_messages()[0]["id"]
    assert cut_chat.texts()[0] == FIRST
    (button,) = actions_of(cut_chat)
    assert button["name"] == "continue" and button["label"] == "Continue"

    await press(cut_chat, continue_button(cut_chat))
    request = fake_vllm.requests[-1]
    assert request["continue_final_message"] is True and request["add_generation_prompt"] is False
    assert request["messages"][-1] == {"role": "assistant", "content": FIRST}
    shown = cut_chat.visible_messages()
    assert (
        shown[0]["id"] == answer_id and shown[0]["output"] == FIRST + REST
    )  # the same answer, longer
    (again,) = actions_of(cut_chat)  # cut again: a button of its own, the used one gone
    assert again["id"] != button["id"]

    await press(cut_chat, continue_button(cut_chat))
    assert cut_chat.visible_messages()[0]["output"] == FIRST + REST + END
    assert actions_of(cut_chat) == []  # finished: no button

    await cut_chat.send("And then?")  # the whole answer is remembered, once
    history = fake_vllm.requests[-1]["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user"]
    assert history[1]["content"] == FIRST + REST + END


async def test_the_button_of_an_answer_the_chat_moved_past_is_withdrawn(cut_chat, fake_vllm):
    button = continue_button(cut_chat)
    fake_vllm.reply = "Short."
    await cut_chat.send("Something else")
    assert actions_of(cut_chat) == []
    await press(cut_chat, button)  # a stale click (e.g. from another tab) is refused, clearly
    assert cut_chat.last_text() == translate("error.continue_moved_on", "en-US")
    assert len(fake_vllm.requests) == 2


async def test_stop_cancels_a_continuation_and_keeps_what_it_said(cut_chat, fake_vllm, start_app):
    fake_vllm.token_delay = 0.3
    pressing = asyncio.create_task(press(cut_chat, continue_button(cut_chat)))
    await eventually(
        lambda: cut_chat.visible_messages()[0]["output"].startswith(FIRST + "six"),
        "the continuation is streaming",
    )
    assert any(event == "task_start" for event, _ in cut_chat.events)  # the stop button shows
    await chainlit.socket.stop(cut_chat.session.socket_id)
    await pressing
    await eventually(lambda: fake_vllm.streams_aborted, "the fake counts the aborted stream")
    assert fake_vllm.streams_aborted == 1
    kept = cut_chat.visible_messages()[0]["output"]
    assert kept.startswith(FIRST + "six") and kept != FIRST + REST
    fake_vllm.token_delay, fake_vllm.reply = 0.0, "Fine."
    await cut_chat.send("Go on")
    assert fake_vllm.requests[-1]["messages"][1]["content"] == kept  # memory matches the screen
    assert cut_chat.last_text() == "Fine."


async def test_the_button_is_translated(start_app, fake_vllm):
    await start_app(MAX_TOKENS="5")
    fake_vllm.reply = reply_by_turn
    chat = ChatHarness("zh-CN")
    await chat.start()
    await chat.send("讲个故事")
    (button,) = actions_of(chat)
    assert button["label"] == "继续"
    assert "继续" in chat.last_text()


def test_a_continuation_is_counted_as_the_question_then_the_answer_so_far():
    """vLLM's mistral mode marks a final answer `prefix`: no `</s>` after it
    (mistral_common refuses to encode a final answer without it)."""
    from handlers.chat.tokens import CountedMessage, TokenCounter

    counter = TokenCounter()
    question = CountedMessage("user", ("Tell me a story",))
    so_far = counter.count(
        "Be brief.", [question, CountedMessage("assistant", (FIRST,))], continuing=True
    )
    assert so_far == counter.count("Be brief.", [question]) + counter.estimate_text(FIRST.strip())


async def test_a_resumed_chat_remembers_the_continued_answer_whole(start_app, fake_vllm):
    from tests.app_helpers import settle

    await start_app(MAX_TOKENS="5")
    fake_vllm.reply = reply_by_turn
    alice = await chainlit_app.services().data_layer.create_user(cl.User(identifier="alice"))
    chat = ChatHarness(user=alice)
    await chat.start()
    await chat.send("Tell me a story")
    await press(chat, continue_button(chat))
    await settle()

    await start_app(MAX_TOKENS="5")  # a restart: only the history is left
    thread = await chainlit_app.services().data_layer.get_thread(chat.session.thread_id)
    resumed = ChatHarness(user=alice, thread_id=chat.session.thread_id)
    await resumed.resume(thread)
    fake_vllm.reply = "Fine."
    await resumed.send("And then?")
    history = fake_vllm.requests[-1]["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user"]
    assert history[1]["content"] == FIRST + REST  # as shown: one answer, not two, no notice
