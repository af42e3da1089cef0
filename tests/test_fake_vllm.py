"""The fake vLLM server, seen through the real openai client (and httpx for the raw wire).

What the real vLLM can also show (routes, the 401 body, stream and usage chunks,
the image-limit, context and unknown-model refusals in vLLM's words, image
costs) is asserted against both servers in tests/real/test_contract.py; here is
what only the fake does: its switches and faults, recording, echo, timing.
"""

from __future__ import annotations

import base64
import io
import json
import statistics
import time

import httpx
import openai
import pytest
from PIL import Image

from tests.fake_vllm import FakeVLLM, echo_reply, image_tokens, split_words
from tests.waiting import eventually

REPLY = "Hello there, this reply comes in nine small chunks."
USER = {"role": "user", "content": "What is this?"}


@pytest.fixture
def fake():
    server = FakeVLLM(reply=REPLY).start()
    try:
        yield server
    finally:
        server.stop()


def client_for(fake: FakeVLLM, api_key: str = "unused") -> openai.AsyncOpenAI:
    """No retries: each test sees one attempt (by default the client retries 5xx and drops)."""
    return openai.AsyncOpenAI(base_url=fake.base_url, api_key=api_key, max_retries=0, timeout=5)


@pytest.fixture
async def client(fake):
    async with client_for(fake) as openai_client:
        yield openai_client


def data_url(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def with_images(count: int, url: str | None = None) -> dict:
    parts = [{"type": "image_url", "image_url": {"url": url or data_url(32, 32)}}] * count
    return {"role": "user", "content": [{"type": "text", "text": "Look."}, *parts]}


async def ask(client, fake, messages=(USER,), **options):
    return await client.chat.completions.create(
        model=fake.model, messages=list(messages), **options
    )


async def stream_texts(client, fake, **options) -> list[str]:
    stream = await ask(client, fake, stream=True, **options)
    return [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]


# --- routes and shapes -------------------------------------------------------


async def test_raw_stream_is_chunked_sse_in_vllms_order(fake):
    request = {
        "model": fake.model,
        "messages": [USER],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with httpx.AsyncClient() as raw:
        url = fake.base_url + "/chat/completions"
        async with raw.stream("POST", url, json=request) as response:
            assert response.headers["transfer-encoding"] == "chunked"
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = [line async for line in response.aiter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    first = events[0]
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["object"] == "chat.completion.chunk" and first["id"].startswith("chatcmpl-")
    contents = [event["choices"][0]["delta"]["content"] for event in events[1:-2]]
    assert "".join(contents) == REPLY and len(contents) == 9
    assert {event["choices"][0]["finish_reason"] for event in events[:-2]} == {None}
    assert events[-2]["choices"][0] == {
        "index": 0,
        "delta": {"content": ""},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 9
    # The counters change on the server's thread just after its last write: polled.
    await eventually(
        lambda: fake.streams_completed == 1 and fake.open_streams == 0, "the stream is counted"
    )


async def test_stream_through_openai_client(fake, client):
    stream = await ask(client, fake, stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 9
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content for c in chunks[:-1]) == REPLY


async def test_headers_come_at_once_and_chunks_as_they_are_written(fake, client):
    fake.ttft, fake.token_delay = 0.2, 0.04
    started = time.monotonic()
    stream = await ask(client, fake, stream=True)
    opened = time.monotonic() - started
    arrivals = [
        time.monotonic() - started async for chunk in stream if chunk.choices[0].delta.content
    ]
    assert arrivals[0] - opened >= 0.15  # like vLLM: 200 and headers first, tokens after the ttft
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:])]
    assert len(gaps) == 8 and statistics.median(gaps) >= 0.03  # not buffered into one burst


async def test_max_tokens_cuts_the_reply_with_finish_reason_length(fake, client):
    stream = await ask(client, fake, stream=True, max_tokens=3)
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content for c in chunks) == "Hello there, this "
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_stream_interval_groups_the_tokens_after_the_first_as_vllm_does(fake, client):
    # vLLM 0.32's rule: the first token at once, then `stream_interval` at a time,
    # what is left with the end; the request may raise the server's floor, not lower it.
    texts = await stream_texts(client, fake, extra_body={"stream_interval": 4})
    assert [text for text in texts if text] == [
        "Hello ",
        "there, this reply comes ",
        "in nine small chunks.",
    ]
    fake.stream_interval = 3
    texts = await stream_texts(client, fake, extra_body={"stream_interval": 2})
    assert len([text for text in texts if text]) == 4  # 1 + 3 + 3 + 2 of the nine
    assert "".join(texts) == REPLY


async def test_stream_interval_keeps_the_pace_of_the_tokens(fake, client):
    fake.ttft, fake.token_delay = 0.1, 0.03
    started = time.monotonic()
    stream = await ask(client, fake, stream=True, extra_body={"stream_interval": 4})
    arrivals = [
        time.monotonic() - started async for chunk in stream if chunk.choices[0].delta.content
    ]
    # Tokens 1, 5 and 9: the group waits for its last token, no longer.
    assert len(arrivals) == 3 and arrivals[2] - arrivals[0] >= 8 * 0.03 * 0.9


@pytest.mark.parametrize(("interval", "events"), [("4", 3), (True, 9), (3.0, 4)])
async def test_stream_interval_is_read_as_pydantic_reads_it(fake, client, interval, events):
    texts = await stream_texts(client, fake, extra_body={"stream_interval": interval})
    assert len([text for text in texts if text]) == events


@pytest.mark.parametrize("interval", [0, -1, 2.5, "four", [4], {"n": 4}])
async def test_a_stream_interval_that_is_not_a_whole_number_from_one_is_refused(
    fake, client, interval
):
    with pytest.raises(openai.BadRequestError) as refused:
        await ask(client, fake, stream=True, extra_body={"stream_interval": interval})
    assert refused.value.body["param"] == "body.stream_interval"
    assert "validation error" in refused.value.body["message"]


async def test_non_streaming_completion_has_usage(fake, client):
    completion = await ask(client, fake, max_completion_tokens=100)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == REPLY
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == 9


async def test_requests_are_recorded_in_order_and_reply_may_be_a_function(fake, client):
    fake.reply = lambda body: f"You said {body['messages'][-1]['content']}"
    first = await ask(client, fake, messages=[{"role": "user", "content": "one"}])
    await stream_texts(client, fake, messages=[{"role": "user", "content": "two"}])
    assert first.choices[0].message.content == "You said one"
    assert [r["messages"][-1]["content"] for r in fake.requests] == ["one", "two"]
    assert fake.requests[1]["stream"] is True


def test_split_words_keeps_every_character():
    for text in ["", "one", "  lead and trail  ", "a\nb\tc  d"]:
        assert "".join(split_words(text)) == text
    assert split_words("Hi there, you") == ["Hi ", "there, ", "you"]


def test_echo_reply_says_what_it_received():
    reply = echo_reply({"messages": [with_images(2), {"role": "assistant", "content": "ok"}, USER]})
    assert "2 image(s)" in reply and "'What is this?'" in reply


# --- refusals ----------------------------------------------------------------


async def test_api_key_guards_v1_routes_with_vllms_flat_body():
    with FakeVLLM(api_key="sesame") as fake:
        async with httpx.AsyncClient() as raw:
            assert (await raw.get(fake.base_url.removesuffix("/v1") + "/health")).status_code == 200
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                models = await raw.get(fake.base_url + "/models", headers=headers)
                chat = await raw.post(fake.base_url + "/chat/completions", headers=headers, json={})
                for response in (models, chat):
                    assert (response.status_code, response.content) == (
                        401,
                        b'{"error":"Unauthorized"}',
                    )
        async with client_for(fake, api_key="wrong") as wrong:
            with pytest.raises(openai.AuthenticationError):
                await ask(wrong, fake)
        async with client_for(fake, api_key="sesame") as right:
            assert (await ask(right, fake)).choices[0].message.content


def test_pixtral_image_cost():
    assert image_tokens(1024, 768) == 3120
    assert image_tokens(2048, 1536) == 3120  # scaled down to 1024x768 first
    assert image_tokens(17, 1) == 2 * 1 + 1
    assert image_tokens(5000, 10) == 64 * 1 + 1  # the short side never rounds to zero


async def test_remote_image_urls_are_refused_but_recorded(fake, client):
    with pytest.raises(openai.BadRequestError, match="only accepts base64 data: URLs"):
        await ask(client, fake, messages=[with_images(1, "https://example.com/cat.png")])
    assert fake.requests[0]["messages"][0]["content"][1]["image_url"]["url"].startswith("https:")


@pytest.mark.parametrize("payload", ["bm90IGFuIGltYWdl", "%%%"])  # "not an image", not base64
async def test_undecodable_images_are_refused(fake, client, payload):
    with pytest.raises(openai.BadRequestError, match="Failed to load image: "):
        await ask(client, fake, messages=[with_images(1, "data:image/png;base64," + payload)])


async def test_invalid_json_is_a_bad_request(fake):
    async with httpx.AsyncClient() as raw:
        response = await raw.post(fake.base_url + "/chat/completions", content=b"{nope")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "BadRequestError"


# --- failure switches --------------------------------------------------------


async def test_fail_next_answers_the_next_requests_with_that_status(fake, client):
    fake.fail_next(500, times=2, message="engine dead")
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as caught:
            await ask(client, fake, stream=True)
        assert caught.value.body == {
            "message": "engine dead",
            "type": "InternalServerError",
            "param": None,
            "code": 500,
        }
    fake.fail_next(401)
    with pytest.raises(openai.AuthenticationError) as unauthorized:
        await ask(client, fake)
    assert unauthorized.value.body == "Unauthorized"  # the client unwraps {"error": ...}
    assert await stream_texts(client, fake)
    assert len(fake.requests) == 4


async def test_error_event_after_streaming_began_raises_api_error(fake, client):
    fake.error_event_after(2, "engine crashed")
    received = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in await ask(client, fake, stream=True):
            received.append(chunk.choices[0].delta.content)
    assert type(caught.value) is openai.APIError  # neither a status nor a connection error
    assert (caught.value.message, caught.value.type) == ("engine crashed", "InternalServerError")
    assert received == ["", "Hello ", "there, "]
    await eventually(lambda: fake.streams_completed == 1, "the event ends the stream normally")
    assert await stream_texts(client, fake)  # only that one stream was affected


async def test_drop_after_raises_connection_error_mid_stream(fake, client):
    fake.drop_after(3)
    received = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in await ask(client, fake, stream=True):
            received.append(chunk.choices[0].delta.content)
    assert received == ["", "Hello ", "there, ", "this "]
    await eventually(lambda: fake.open_streams == 0, "the stream is closed")
    assert (fake.streams_completed, fake.streams_aborted) == (0, 0)
    assert await stream_texts(client, fake)


async def test_closing_the_stream_midway_counts_as_aborted(fake, client):
    fake.reply, fake.token_delay = "word " * 200, 0.005
    stream = await ask(client, fake, stream=True)
    async for chunk in stream:
        if chunk.choices[0].delta.content:
            break
    assert fake.open_streams == 1
    await stream.close()
    await eventually(lambda: fake.streams_aborted == 1, "the fake counts the aborted stream")
    assert (fake.open_streams, fake.streams_completed) == (0, 0)


async def test_go_down_refuses_connections_and_come_up_serves_on_the_same_port(fake, client):
    assert await stream_texts(client, fake)  # leaves a pooled keep-alive connection behind
    url = fake.base_url
    fake.go_down()
    with pytest.raises(openai.APIConnectionError):
        await ask(client, fake)
    with pytest.raises(openai.APIConnectionError):
        await ask(client, fake, stream=True)
    fake.come_up()
    assert fake.base_url == url
    assert "".join(await stream_texts(client, fake)) == REPLY
    assert len(fake.requests) == 2


async def test_stop_is_prompt_with_a_stream_in_flight(fake, client):
    fake.token_delay = 5
    stream = await ask(client, fake, stream=True)
    await stream.__anext__()
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < 0.5
    assert (fake.streams_aborted, fake.open_streams) == (1, 0)
    with pytest.raises(openai.APIConnectionError):
        async for _ in stream:
            pass


async def test_several_servers_run_at_once():
    with FakeVLLM(reply="first") as one, FakeVLLM(reply="second", model="other") as two:
        assert one.base_url != two.base_url
        for fake, expected in ((one, "first"), (two, "second")):
            async with client_for(fake) as client:
                assert (await ask(client, fake)).choices[0].message.content == expected
