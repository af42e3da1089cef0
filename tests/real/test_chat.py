"""The app as people use it, against the real vLLM: what the fake can only claim.

Answers are gibberish (random weights); what is asserted is vLLM's own doing:
it took the request, counted it as the app did, served follow-ups from its
prefix cache, refused what it refuses, and stopped when the person did.
"""

from __future__ import annotations

import asyncio

import chainlit as cl
import pytest

import chainlit_app
from handlers.chat.turn import ChatSession
from handlers.core.i18n import translate
from handlers.media.images import image_tokens
from tests.app_helpers import photo, settle
from tests.chainlit_harness import ChatHarness
from tests.mediacorpus import write_video
from tests.real_vllm import RealVLLM

IMAGE_TOKENS = 3120  # a 4:3 photo at Pixtral's 1024 px: 64 × 48 patches + 48 row breaks


def session_of(chat: ChatHarness) -> ChatSession:
    found = chainlit_app._chats.get(chat.session.id)
    assert found is not None
    return found


async def ask(chat: ChatHarness, text: str, files=(), **kwargs):
    """Send a message; the usage of its request, as counted by the app and by vLLM."""
    await chat.send(text, list(files), **kwargs)
    usage = session_of(chat).last_usage
    assert usage is not None, chat.texts()
    return usage


@pytest.fixture
async def chat(real_app) -> ChatHarness:
    await real_app()
    harness = ChatHarness()
    await harness.start()
    return harness


async def test_a_photo_is_answered_in_a_stream(chat, tmp_path):
    usage = await ask(chat, "What is this?", [photo(tmp_path, "IMG_0001.jpg", size=(4000, 3000))])
    assert chat.last_text().strip()  # vLLM's words (gibberish), streamed into the answer
    assert usage.reported == usage.counted
    # The photo went at its ¼ scale, 1000×750 (images._DRAFT_SHORTFALL), and vLLM agrees.
    assert usage.counted > image_tokens(1000, 750)


async def test_a_follow_up_still_sends_the_photo_and_comes_from_the_cache(chat, tmp_path):
    first = await ask(chat, "What is this?", [photo(tmp_path, "a.jpg")])
    follow_up = await ask(chat, "What colour is it?")
    assert follow_up.reported == follow_up.counted > first.counted  # the photo is still in it
    assert (
        follow_up.cached >= first.counted - 64
    )  # the first request, photo included, was not redone


async def test_five_images_in_one_message_send_four_and_say_so(chat, tmp_path):
    files = [
        photo(tmp_path, f"p{n}.jpg", size=(1024, 768), colour=c)
        for n, c in enumerate(["red", "green", "blue", "white", "black"])
    ]
    usage = await ask(chat, "Compare these.", files)
    assert usage.reported == usage.counted >= 4 * IMAGE_TOKENS
    assert usage.counted < 5 * IMAGE_TOKENS
    assert any("p4.jpg" in text for text in chat.texts())


async def test_a_prompt_over_the_servers_context_gets_the_apps_message(real_app):
    # The app is told the context is twice what vLLM was started with, so vLLM's own
    # 400 is what refuses the prompt.
    await real_app(MAX_MODEL_LEN="131072")
    chat = ChatHarness()
    await chat.start()
    await chat.send("summarise: " + "lorem ipsum dolor sit amet " * 14000)
    shown = chat.last_text()
    assert shown.startswith(translate("error.context_too_long", "en-US", detail="")[:40])
    assert "maximum context length is 65536 tokens" in shown
    await ask(chat, "A short question still works.")


@pytest.mark.parametrize("placement", ["first", "last"])
async def test_the_apps_token_count_is_vllms_on_every_turn_of_a_long_chat(
    real_app, tmp_path, placement
):
    await real_app(SYSTEM_PROMPT_PLACEMENT=placement)
    chat = ChatHarness("zh-CN")
    await chat.start()
    turns = [
        ("这张照片里有什么？", [photo(tmp_path, "街道.jpg", size=(3000, 2000))]),
        (
            "Describe the second one, and compare.",
            [
                photo(tmp_path, "b.png", size=(800, 1200), colour="blue"),
                photo(tmp_path, "c.jpg", size=(640, 480), colour="green"),
            ],
        ),
        ("颜色呢？请用中文回答。", []),
        (
            "",
            [photo(tmp_path, "d.jpg", size=(1500, 1500), colour="white")],
        ),  # images alone: described
        ("And now count everything.", [photo(tmp_path, "e.jpg", size=(200, 100))]),
        ("最后一个问题：一共几张图？", []),
        # frames labelled with their times: text parts that images separate
        (
            "What happens in this clip?",
            [write_video(tmp_path / "clip.mp4", seconds=8, size=(320, 180))],
        ),
    ]
    for text, files in turns:
        usage = await ask(chat, text, files)
        assert usage.reported == usage.counted, (text, usage)
    usage = await ask(chat, "", [], command="count")  # a preset on the earlier images
    assert usage.reported == usage.counted


async def test_stop_aborts_the_request_on_the_server(
    real_app, real_vllm: RealVLLM, running_requests, tmp_path
):
    await real_app(MAX_TOKENS="8000")  # ~30 s of tokens on this CPU: time to catch it running
    chat = ChatHarness()
    await chat.start()
    task = asyncio.create_task(chat.send("Tell me everything.", [photo(tmp_path, "x.jpg")]))
    chat.session.current_task = task  # as Chainlit's socket handler does
    assert await running_requests(1) == 1
    await _streamed_something(chat)
    task.cancel()  # what Chainlit's stop handler does
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await running_requests(0) == 0
    assert chat.last_text().strip()  # the partial answer is kept


async def test_a_closed_tab_aborts_the_request_on_the_server(real_app, running_requests, tmp_path):
    await real_app(MAX_TOKENS="8000")
    chat = ChatHarness()
    await chat.start()
    task = asyncio.create_task(chat.send("Tell me everything.", [photo(tmp_path, "x.jpg")]))
    chat.session.current_task = task
    assert await running_requests(1) == 1
    await _streamed_something(chat)
    chat.enter()
    await chainlit_app.on_chat_end()  # the browser tab was closed
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await running_requests(0) == 0


async def _streamed_something(chat: ChatHarness) -> None:
    for _ in range(300):
        if any(event == "stream_token" for event, _ in chat.events):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no token was streamed")


async def test_a_chat_resumed_after_a_restart_sends_the_same_prompt_and_hits_the_cache(
    real_app, tmp_path
):
    await real_app()
    alice = await chainlit_app.services().data_layer.create_user(cl.User(identifier="alice"))
    chat = ChatHarness(user=alice)
    await chat.start()
    await ask(chat, "", [photo(tmp_path, "receipt.jpg", size=(3000, 2000))], command="read")
    before = await ask(chat, "What is the total?")
    await settle()
    thread_id = chat.session.thread_id

    await real_app()  # the app restarts; vLLM keeps running, its cache warm
    thread = await chainlit_app.services().data_layer.get_thread(thread_id)
    resumed = ChatHarness(user=alice, thread_id=thread_id)
    await resumed.resume(thread)
    after = await ask(resumed, "And the date?")
    assert after.reported == after.counted > before.counted
    assert after.cached >= before.counted - 64  # byte for byte what was sent before the restart


async def test_continue_goes_on_with_the_same_answer_and_is_counted_as_vllm_counts_it(real_app):
    """The Continue button's request (`continue_final_message`): vLLM takes it, and
    the app's count of its prompt (the answer so far without `</s>`) is vLLM's."""
    await real_app(MAX_TOKENS="8")
    chat = ChatHarness()
    await chat.start()
    await ask(chat, "Tell me a long story about a lighthouse.")
    buttons = [data for event, data in chat.events if event == "action"]
    if not buttons:  # 8 random tokens end in `</s>` only by chance
        pytest.skip("random weights ended the answer before the length limit")
    (button,) = buttons
    first = chat.visible_messages()[0]["output"]
    chat.enter()
    await chainlit_app.on_continue(cl.Action(**button))
    usage = session_of(chat).last_usage
    assert usage.reported == usage.counted, usage
    turns = session_of(chat).conversation.turns
    assert [t.role for t in turns] == ["user", "assistant"]
    assert chat.visible_messages()[0]["output"] == turns[-1].text
    assert turns[-1].text.startswith(first) and len(turns[-1].text) > len(first)
