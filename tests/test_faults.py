"""Faults of the model server and of the browser, through the app's Chainlit callbacks.

Every scenario is a conversation: a normal exchange, then the fault, then a
question that must be answered normally. Each checks the same three things:
nothing crashes (the callback returns), nothing already said is lost (it is
still on screen and still in the history sent to the model), and the chat goes
on. Single error messages are covered in test_app.py; this suite is about
getting through the fault.

The browser really closing mid-answer is also proven in a browser, in
tests/e2e/test_browser.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import chainlit as cl
import chainlit.socket
import pytest
from chainlit.config import config as chainlit_config
from PIL import Image

import chainlit_app
from handlers.chat.llm import CONNECT_TIMEOUT
from handlers.core.i18n import translate
from tests.chainlit_harness import ChatHarness
from tests.fake_vllm import FakeVLLM, count_images
from tests.waiting import Watched, eventually

FIRST_ANSWER = "A red square on a white background."
LONG_REPLY = " ".join(f"w{n}" for n in range(1, 301))  # 300 tokens: 15 s at 0.05 s a token


@pytest.fixture
async def chat(
    start_app: Callable[..., Awaitable[None]], fake_vllm: FakeVLLM, tmp_path: Path
) -> ChatHarness:
    """A chat that has already had one normal exchange about a photo."""
    await start_app(VLLM_CONNECT_RETRIES="2")
    harness = ChatHarness()
    await harness.start()
    photo = tmp_path / "square.jpg"
    Image.new("RGB", (640, 480), "red").save(photo, "JPEG")
    fake_vllm.reply = FIRST_ANSWER
    await harness.send("What is this?", [photo])
    assert harness.texts() == [FIRST_ANSWER]
    return harness


async def answers_normally(
    chat: ChatHarness, fake: FakeVLLM, question: str = "Are you there?"
) -> dict:
    """Ask a question that must get a normal answer; returns the request the model server got."""
    fake.reply, fake.token_delay, fake.ttft = "Yes, carrying on.", 0.0, 0.0
    await chat.send(question)
    assert chat.last_text() == "Yes, carrying on."
    return fake.requests[-1]


def assert_first_exchange_kept(chat: ChatHarness, request: dict) -> None:
    """The first exchange is still on screen and still in what the model is sent, photo included."""
    assert chat.texts()[0] == FIRST_ANSWER
    history = request["messages"]
    assert history[1] == {"role": "assistant", "content": FIRST_ANSWER}
    assert count_images(history) == 1


def answer_text(request: dict, turn: int) -> str:
    """The remembered assistant text of the `turn`-th answer (1-based) in a request."""
    return [m["content"] for m in request["messages"] if m["role"] == "assistant"][turn - 1]


async def test_model_server_killed_mid_answer_and_restarted(chat, fake_vllm):
    fake_vllm.reply, fake_vllm.token_delay = LONG_REPLY, 0.05
    answering = asyncio.create_task(chat.send("Tell me everything."))
    await eventually(lambda: chat.last_text().startswith("w1 w2 w3"), "the answer is streaming")
    await asyncio.to_thread(fake_vllm.go_down)  # vLLM killed mid-answer
    await answering  # the callback itself does not fail

    shown = chat.last_text()
    lost = translate("error.stream_interrupted", "en-US")
    partial, _, note = shown.partition("\n\n---\n")
    assert LONG_REPLY.startswith(partial) and len(partial) < len(LONG_REPLY)
    assert lost in note
    await eventually(lambda: fake_vllm.streams_aborted == 1, "the fake counts the cut stream")

    await asyncio.to_thread(fake_vllm.come_up)
    request = await answers_normally(chat, fake_vllm)
    assert_first_exchange_kept(chat, request)
    assert chat.texts()[1] == shown
    assert answer_text(request, 2) == partial


async def test_a_slow_first_token_is_waited_for(chat, fake_vllm):
    """vLLM can take long before the first token (a queue, a big prompt): slower
    than the connect timeout is no failure."""
    fake_vllm.reply, fake_vllm.ttft = "Sorry, I was busy.", CONNECT_TIMEOUT + 1
    await chat.send("Still there?")
    assert chat.last_text() == "Sorry, I was busy."
    assert len(chat.texts()) == 2 and len(fake_vllm.requests) == 2


async def test_a_rotated_api_key_is_explained_and_not_retried(start_app, fake_vllm, tmp_path):
    await start_app(VLLM_API_KEY="key-1")
    fake_vllm.api_key = "key-1"
    chat = ChatHarness()
    await chat.start()
    fake_vllm.reply = FIRST_ANSWER
    await chat.send("Hello")
    fake_vllm.api_key = "key-2"  # the server was restarted with a new key

    await chat.send("Hello again")
    error = chat.visible_messages()[-1]
    assert error["isError"]
    assert "VLLM_API_KEY" in error["output"]
    assert len(fake_vllm.requests) == 2  # a wrong key is not tried again

    fake_vllm.api_key = "key-1"  # the rotation is undone
    request = await answers_normally(chat, fake_vllm)
    assert chat.texts()[0] == FIRST_ANSWER
    assert answer_text(request, 1) == FIRST_ANSWER


async def test_a_burst_of_503_is_retried_without_the_person_noticing(chat, fake_vllm):
    fake_vllm.fail_next(503, times=2)  # VLLM_CONNECT_RETRIES=2: the third try gets through
    request = await answers_normally(chat, fake_vllm)
    assert len(chat.texts()) == 2  # no error shown, just the answer
    first, *retries = fake_vllm.requests[1:]
    assert len(retries) == 2 and all(
        retry == first for retry in retries
    )  # the same request, resent
    assert_first_exchange_kept(chat, request)


async def test_a_burst_of_500_is_reported_each_time_then_the_chat_recovers(chat, fake_vllm):
    fake_vllm.fail_next(500, times=5)
    status_500 = translate("error.model_server_error", "en-US", status=500)
    for n in range(5):
        await chat.send(f"Try {n}")
        assert chat.last_text() == status_500
        assert chat.visible_messages()[-1]["isError"]
    assert len(fake_vllm.requests) == 1 + 5  # a 500 is not retried: the server is not hammered

    request = await answers_normally(chat, fake_vllm)
    assert_first_exchange_kept(chat, request)
    assert chat.texts()[1:6] == [status_500] * 5


async def test_an_error_event_mid_answer_keeps_the_partial_answer(chat, fake_vllm):
    fake_vllm.reply = "The square is red and it sits on a white page."
    fake_vllm.error_event_after(4, message="CUDA out of memory")
    await chat.send("Describe it in detail.")

    partial, _, note = chat.last_text().partition("\n\n---\n")
    assert partial == "The square is red "
    assert "CUDA out of memory" in note
    await eventually(
        lambda: fake_vllm.streams_completed == 2, "the fake counts the stream as written to the end"
    )
    assert fake_vllm.streams_aborted == 0

    request = await answers_normally(chat, fake_vllm)
    assert_first_exchange_kept(chat, request)
    assert answer_text(request, 2) == partial


async def test_stop_cancels_the_answer_to_an_edited_message(chat, fake_vllm):
    """Through Chainlit's own socket handlers: `edit_message`, then `stop`."""
    first = await chat.send("First question")
    cl.chat_context.add(first)  # as Chainlit's process_message does; edit_message looks there
    fake_vllm.reply, fake_vllm.token_delay = LONG_REPLY, 0.05
    edited = {"message": {**first.to_dict(), "output": "Tell me everything."}, "fileReferences": []}
    answering = asyncio.create_task(chainlit.socket.edit_message(chat.session.socket_id, edited))
    await eventually(
        lambda: fake_vllm.open_streams == 1 and "w3" in chat.last_text(),
        "the new answer is streaming",
    )

    await chainlit.socket.stop(chat.session.socket_id)
    await eventually(
        lambda: fake_vllm.open_streams == 0 and fake_vllm.streams_aborted == 1,
        "the model request is cancelled",
        timeout=5,
    )
    await answering
    texts = chat.texts()
    assert any(
        t.startswith("w1 w2 w3") and len(t) < len(LONG_REPLY) for t in texts
    )  # kept, partial
    assert any(translate("notice.stopped", "en-US") in t for t in texts)


async def test_a_browser_that_disconnects_mid_answer_cancels_the_model_request(
    chat, fake_vllm, monkeypatch
):
    """Through Chainlit's own socket `disconnect` handler, as when a tab is closed."""
    monkeypatch.setattr(
        chainlit_config.project, "session_timeout", 0
    )  # Chainlit clears the session at once
    fake_vllm.reply, fake_vllm.token_delay = LONG_REPLY, 0.05
    message = chat.message("Tell me everything.")
    answering = asyncio.create_task(chainlit_app.on_message(message))
    chat.session.current_task = answering  # as Chainlit's process_message does
    await eventually(lambda: chat.last_text().startswith("w1 w2 w3"), "the answer is streaming")

    await chainlit.socket.disconnect(chat.session.socket_id)
    await eventually(
        lambda: fake_vllm.open_streams == 0 and fake_vllm.streams_aborted == 1,
        "the model request is cancelled",
        timeout=5,
    )
    assert answering.cancelled()
    assert fake_vllm.streams_completed == 1  # only the first exchange

    other = ChatHarness()
    await other.start()
    await answers_normally(other, fake_vllm)


async def test_stop_during_a_long_video_stops_sampling_and_the_chat_goes_on(
    chat, fake_vllm, tmp_path, monkeypatch
):
    """Through Chainlit's own socket `stop` handler, while the worker threads sample."""
    import time

    from handlers.media import frame_sampler, video
    from tests.mediacorpus import write_video

    decoded, real = [], frame_sampler._shot

    def slow_shot(*args, **kwargs):  # a slow decoder: 36 moments take seconds
        time.sleep(0.05)
        decoded.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(frame_sampler, "_shot", slow_shot)
    sampling = Watched(video._prepare)
    monkeypatch.setattr(video, "_prepare", sampling)
    clip = write_video(tmp_path / "meeting.mp4", seconds=600, fps=1)
    message = chat.message("What happens?", [clip])
    answering = asyncio.create_task(chainlit_app.on_message(message))
    chat.session.current_task = answering  # as Chainlit's process_message does
    await eventually(lambda: any("◷" in t for t in chat.texts()), "sampling is shown")

    await chainlit.socket.stop(chat.session.socket_id)
    await eventually(answering.done, "the message's task ends")
    await eventually(lambda: sampling.ended, "each sampling thread reaches its next check")
    assert sampling.ended == ["WorkCancelled"] and sampling.running == 0
    stopped_at = len(decoded)
    assert stopped_at < 72
    assert not any("◷" in t for t in chat.texts())
    assert any(translate("notice.stopped", "en-US") in t for t in chat.texts())
    request = await answers_normally(chat, fake_vllm)
    assert_first_exchange_kept(chat, request)
    assert len(decoded) == stopped_at  # nothing decoded since
