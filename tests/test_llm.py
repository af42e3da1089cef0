"""The model client against the fake vLLM server, through the real AsyncOpenAI client."""

import asyncio

import pytest

from handlers.chat.llm import ModelClient, StreamResult
from handlers.core.errors import ModelAuthFailed, ModelRejected, ModelUnavailable
from handlers.core.settings import DEFAULT_MODEL
from tests.waiting import eventually

MESSAGES = [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]


async def collect(client: ModelClient, result: StreamResult | None = None) -> str:
    return "".join([piece async for piece in client.stream(MESSAGES, result or StreamResult())])


@pytest.fixture
async def client(settings_for):
    model_client = ModelClient(settings_for())
    yield model_client
    await model_client.aclose()


async def test_streams_the_answer_and_reports_usage(client, fake_vllm):
    result = StreamResult()
    assert await collect(client, result) == fake_vllm.reply
    assert result.finish_reason == "stop" and result.completion_tokens > 0
    sent = fake_vllm.requests[-1]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["model"] == DEFAULT_MODEL and sent["max_tokens"] == 1024


async def test_model_defaults_to_the_first_one_the_server_lists(settings_for, fake_vllm):
    fake_vllm.model = "team/pixtral-finetune"
    client = ModelClient(settings_for())
    try:
        await collect(client)
    finally:
        await client.aclose()
    assert fake_vllm.requests[-1]["model"] == "team/pixtral-finetune"


async def test_the_api_key_is_sent_as_a_bearer_token(settings_for, fake_vllm):
    fake_vllm.api_key = "sk-right"
    good, bad = ModelClient(settings_for(VLLM_API_KEY="sk-right")), ModelClient(settings_for())
    try:
        assert await collect(good) == fake_vllm.reply
        with pytest.raises(ModelAuthFailed) as failure:
            await collect(bad)
    finally:
        await asyncio.gather(good.aclose(), bad.aclose())
    assert "VLLM_API_KEY" in failure.value.message("en-US")


async def test_the_server_image_limit_is_explained(client, fake_vllm):
    fake_vllm.fail_next(
        400, message="At most 4 image(s) may be provided in one prompt. (parameter=image)"
    )
    with pytest.raises(ModelRejected) as failure:
        await collect(client)
    assert failure.value.key == "error.server_image_limit"
    assert "MAX_IMAGES_PER_REQUEST" in failure.value.message("en-US")


async def test_an_unreachable_server_is_said_and_the_chat_recovers(client, fake_vllm):
    fake_vllm.go_down()
    with pytest.raises(ModelUnavailable) as failure:
        await collect(client)
    assert failure.value.key == "error.model_unreachable"
    fake_vllm.come_up()
    assert await collect(client) == fake_vllm.reply


async def test_503_before_the_first_token_is_retried(client, fake_vllm):
    fake_vllm.fail_next(503)
    assert await collect(client) == fake_vllm.reply
    assert len(fake_vllm.requests) == 2


async def test_500_is_not_retried(client, fake_vllm):
    fake_vllm.fail_next(500)
    with pytest.raises(ModelUnavailable) as failure:
        await collect(client)
    assert failure.value.key == "error.model_server_error" and failure.value.params["status"] == 500
    assert len(fake_vllm.requests) == 1


async def test_failover_to_the_next_base_url(settings_for, fake_vllm):
    from tests.fake_vllm import FakeVLLM

    with FakeVLLM(reply="from the second server") as second:
        fake_vllm.go_down()
        client = ModelClient(settings_for(VLLM_BASE_URL=f"{fake_vllm.base_url},{second.base_url}"))
        try:
            assert await collect(client) == "from the second server"
        finally:
            await client.aclose()


async def test_a_dropped_connection_mid_stream_is_not_retried(client, fake_vllm):
    fake_vllm.drop_after(2)
    pieces = []
    with pytest.raises(ModelUnavailable) as failure:
        async for piece in client.stream(MESSAGES, StreamResult()):
            pieces.append(piece)
    assert len(pieces) == 2 and failure.value.key == "error.stream_interrupted"
    assert len(fake_vllm.requests) == 1


async def test_the_in_stream_error_event_is_an_error(client, fake_vllm):
    fake_vllm.error_event_after(1, message="CUDA out of memory")
    with pytest.raises(ModelUnavailable) as failure:
        await collect(client)
    assert failure.value.key == "error.stream_error"
    assert "CUDA out of memory" in failure.value.message("en-US")


async def test_cancelling_closes_the_upstream_stream(client, fake_vllm):
    fake_vllm.token_delay = 0.05
    fake_vllm.reply = "word " * 200

    tokens = []

    async def consume():
        async for token in client.stream(MESSAGES, StreamResult()):
            tokens.append(token)

    task = asyncio.create_task(consume())
    await eventually(lambda: tokens, "the answer is streaming")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: fake_vllm.streams_aborted, "the fake counts the aborted stream")
    assert fake_vllm.streams_aborted == 1 and fake_vllm.open_streams == 0


async def test_a_cut_off_answer_is_reported(settings_for, fake_vllm):
    client = ModelClient(settings_for(MAX_TOKENS="3"))
    result = StreamResult()
    try:
        await collect(client, result)
    finally:
        await client.aclose()
    assert result.truncated


async def test_the_answer_comes_in_pieces_of_the_stream_interval(settings_for, fake_vllm):
    """The app asks vLLM for `STREAM_INTERVAL` tokens a piece: the first alone, at
    once, then groups; the text is whole whatever the grouping."""
    client = ModelClient(settings_for(STREAM_INTERVAL="3"))
    try:
        pieces = [piece async for piece in client.stream(MESSAGES, StreamResult())]
    finally:
        await client.aclose()
    assert fake_vllm.requests[-1]["stream_interval"] == 3
    words = fake_vllm.reply.split()
    assert pieces[0].split() == words[:1] and pieces[1].split() == words[1:4]
    assert "".join(pieces) == fake_vllm.reply and len(pieces) == 1 + -(-(len(words) - 1) // 3)


async def test_a_continued_answer_keeps_the_stream_interval(settings_for, fake_vllm):
    client = ModelClient(settings_for())
    so_far = [*MESSAGES, {"role": "assistant", "content": "The answer so far"}]
    try:
        [piece async for piece in client.stream(so_far, StreamResult(), continues=True)]
    finally:
        await client.aclose()
    sent = fake_vllm.requests[-1]
    assert sent["stream_interval"] == 4 and sent["continue_final_message"] is True
