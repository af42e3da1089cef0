"""The fake vLLM server, seen through the real openai client (and httpx for the raw wire).

If these pass, the app's tests that run against the fake meet the same responses,
errors and stream shapes the app will meet from vLLM 0.33.
"""

from __future__ import annotations

import asyncio
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


async def wait_for(condition, timeout: float = 2.0) -> None:
    """Counters change on the server's thread just after its last write, so poll them."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# --- routes and shapes -------------------------------------------------------


async def test_health_is_open_and_empty_and_models_lists_the_model(fake, client):
    async with httpx.AsyncClient() as raw:
        health = await raw.get(fake.base_url.removesuffix("/v1") + "/health")
    assert (health.status_code, health.content) == (200, b"")
    models = (await client.models.list()).data
    assert [m.id for m in models] == [fake.model] and models[0].owned_by == "vllm"
    extra = models[0].model_extra
    assert (extra["max_model_len"], extra["root"], extra["parent"]) == (65536, fake.model, None)


async def test_raw_stream_is_chunked_sse_in_vllms_order(fake):
    request = {
        "model": fake.model, "messages": [USER], "stream": True,
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
        "index": 0, "delta": {"content": ""}, "logprobs": None, "finish_reason": "stop",
    }
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 9
    await wait_for(lambda: fake.streams_completed == 1 and fake.open_streams == 0)


async def test_stream_through_openai_client(fake, client):
    stream = await ask(client, fake, stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 9
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content for c in chunks[:-1]) == REPLY


async def test_usage_chunk_only_when_asked(fake, client):
    stream = await ask(client, fake, stream=True)
    assert all([chunk.choices and chunk.usage is None async for chunk in stream])


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
                        401, b'{"error":"Unauthorized"}'
                    )
        async with client_for(fake, api_key="wrong") as wrong:
            with pytest.raises(openai.AuthenticationError):
                await ask(wrong, fake)
        async with client_for(fake, api_key="sesame") as right:
            assert (await ask(right, fake)).choices[0].message.content


async def test_unknown_model_is_not_found(fake, client):
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="nope", messages=[USER])
    error = caught.value
    assert str(error) == "Error code: 404 - The model `nope` does not exist."
    assert (error.param, error.type, error.code) == ("model", "NotFoundError", "404")


async def test_image_limit_counts_images_in_the_whole_history(fake, client):
    history = [with_images(3), {"role": "assistant", "content": "Nice."}]
    await ask(client, fake, messages=[*history, with_images(1)])  # 4 in all: accepted
    with pytest.raises(openai.BadRequestError) as caught:
        await ask(client, fake, messages=[*history, with_images(2)])
    error = caught.value
    # openai 3.x puts only the message in str(); param is an attribute, no "(parameter=image)".
    assert str(error) == "Error code: 400 - At most 4 image(s) may be provided in one prompt."
    assert (error.param, error.type, error.code) == ("image", "BadRequestError", "400")
    assert len(fake.requests) == 2  # refused requests are recorded too


def test_pixtral_image_cost():
    assert image_tokens(1024, 768) == 3120
    assert image_tokens(2048, 1536) == 3120  # scaled down to 1024x768 first
    assert image_tokens(17, 1) == 2 * 1 + 1
    assert image_tokens(5000, 10) == 64 * 1 + 1  # the short side never rounds to zero


async def test_prompt_tokens_include_the_image_cost(fake, client):
    plain = await ask(client, fake, messages=[with_images(0)])
    with_image = await ask(client, fake, messages=[with_images(1, data_url(1024, 768))])
    assert with_image.usage.prompt_tokens - plain.usage.prompt_tokens == 3120


async def test_context_length_refusals_use_vllms_messages(fake, client):
    messages = [with_images(1, data_url(1024, 768))]
    prompt = (await ask(client, fake, messages=messages)).usage.prompt_tokens
    limit = fake.max_model_len = prompt + 100
    with pytest.raises(openai.BadRequestError) as too_big:
        await ask(client, fake, messages=messages, max_tokens=101)
    assert too_big.value.message == (
        f"Error code: 400 - 'max_tokens' or 'max_completion_tokens' is too large: 101. This "
        f"model's maximum context length is {limit} tokens and your request has {prompt} input "
        f"tokens (101 > {limit} - {prompt})."
    )
    assert too_big.value.param == "max_tokens"
    await ask(client, fake, messages=messages, max_tokens=100)  # exactly fits
    fake.max_model_len = prompt
    with pytest.raises(openai.BadRequestError) as too_long:
        await ask(client, fake, messages=messages)
    assert too_long.value.message == (
        f"Error code: 400 - This model's maximum context length is {prompt} tokens. However, "
        f"your request has {prompt} input tokens. Please reduce the length of the input messages."
    )
    assert too_long.value.param is None


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
            "message": "engine dead", "type": "InternalServerError", "param": None, "code": 500,
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
    await wait_for(lambda: fake.streams_completed == 1)  # the event ends the stream normally
    assert await stream_texts(client, fake)  # only that one stream was affected


async def test_drop_after_raises_connection_error_mid_stream(fake, client):
    fake.drop_after(3)
    received = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in await ask(client, fake, stream=True):
            received.append(chunk.choices[0].delta.content)
    assert received == ["", "Hello ", "there, ", "this "]
    await wait_for(lambda: fake.open_streams == 0)
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
    await wait_for(lambda: fake.streams_aborted == 1)
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
