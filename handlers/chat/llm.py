"""The one boundary to the model server (vLLM's OpenAI-compatible API).

Owns: the `AsyncOpenAI` clients (one per base URL, tried in order for
failover), which model to ask for, streaming an answer as plain text, and
turning every `openai` exception into one of our `ModelError`s, with the
server's own words where they help the person. The server's URL is never in
them: people cannot act on it, and it may carry credentials
(`http://user:pass@host`); the log has it, redacted.

Retries: connection failures and 503 are retried with short backoff, moving to
the next base URL, but only before the first token — once text has been shown,
a retry would repeat or contradict it. The `openai` client's own retries are
off so that this policy is the only one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import openai
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from handlers.core.errors import ModelAuthFailed, ModelError, ModelRejected, ModelUnavailable
from handlers.core.settings import DEFAULT_MODEL, Settings, redact_url

log = logging.getLogger(__name__)

BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0)
# vLLM's fields for going on with the final (assistant) message instead of
# answering after it: the Continue button's request.
CONTINUE_FINAL = {"continue_final_message": True, "add_generation_prompt": False}
CONNECT_TIMEOUT = 5.0


@dataclass
class StreamResult:
    """What the stream said besides its text, filled in as it ends."""

    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None  # from vLLM's prefix cache (--enable-prompt-tokens-details)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


class ModelClient:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        timeout = openai.Timeout(settings.request_timeout, connect=CONNECT_TIMEOUT)
        self._clients = [
            openai.AsyncOpenAI(
                base_url=url,
                # Passed explicitly: with no key the client would read OPENAI_API_KEY,
                # which `chainlit run` overwrites when CI is set. vLLM ignores it
                # unless started with an API key.
                api_key=settings.vllm_api_key or "EMPTY",
                timeout=timeout,
                max_retries=0,
            )
            for url in settings.vllm_base_urls
        ]
        self._model: str | None = settings.vllm_model

    async def aclose(self) -> None:
        await asyncio.gather(*(client.close() for client in self._clients))

    async def model(self) -> str:
        """VLLM_MODEL, else the first model the server lists (remembered once found)."""
        if self._model:
            return self._model
        for client in self._clients:
            try:
                models = await client.models.list()
            except openai.OpenAIError as error:
                log.warning(
                    "could not list models at %s: %s", redact_url(str(client.base_url)), error
                )
                continue
            if models.data:
                self._model = models.data[0].id
                return self._model
        return DEFAULT_MODEL

    async def stream(
        self,
        messages: list[dict],
        result: StreamResult,
        *,
        continues: bool = False,
        response_format: dict | None = None,
    ) -> AsyncIterator[str]:
        """Yield the answer's text as it arrives; `result` is filled in at the end.
        `continues`: the last message is an answer so far, and the model goes on with it.

        `response_format` asks for structured output (`{"type": "json_schema", ...}`,
        vLLM's grammar enforces it; it does not change the prompt's tokens).
        Cancelling the consumer (the stop button) closes the HTTP stream, which
        makes vLLM abort the request and free its GPU slot.
        """
        stream = await self._open(messages, CONTINUE_FINAL if continues else None, response_format)
        try:
            async for chunk in stream:
                if chunk.usage:
                    _read_usage(chunk.usage, result)
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.finish_reason:
                    result.finish_reason = choice.finish_reason
                if choice.delta and choice.delta.content:
                    yield choice.delta.content
        except openai.APITimeoutError as error:
            raise ModelUnavailable("error.model_timeout") from error
        except openai.APIConnectionError as error:
            raise ModelUnavailable("error.stream_interrupted") from error
        except openai.APIError as error:
            raise ModelUnavailable("error.stream_error", detail=_server_message(error)) from error
        finally:
            await stream.close()

    async def _open(
        self,
        messages: list[dict],
        extra_body: dict | None = None,
        response_format: dict | None = None,
    ) -> openai.AsyncStream[ChatCompletionChunk]:
        """Start a streamed completion, retrying and failing over before any token."""
        model = await self.model()
        extra: dict[str, Any] = {"response_format": response_format} if response_format else {}
        # vLLM groups the tokens after the first; each piece costs the app the same
        # parsing and socket.io work whatever its length.
        body = {"stream_interval": self._settings.stream_interval, **(extra_body or {})}
        attempt = 0
        while True:
            client = self._clients[attempt % len(self._clients)]
            try:
                stream = await client.chat.completions.create(
                    model=model,
                    # Built as plain dicts of the wire format (`conversation`), sent as JSON.
                    messages=cast("list[ChatCompletionMessageParam]", messages),
                    max_tokens=self._settings.max_tokens,
                    temperature=self._settings.temperature,
                    stream=True,
                    stream_options={"include_usage": True},
                    extra_body=body,
                    **extra,
                )
                return stream
            except openai.APIError as error:
                failure = _to_model_error(error)
                if not failure.retryable or attempt >= self._settings.connect_retries:
                    raise failure from error
                log.warning(
                    "model server attempt %d at %s failed: %s",
                    attempt + 1,
                    redact_url(str(client.base_url)),
                    error,
                )
                await asyncio.sleep(BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)])
                attempt += 1


def _read_usage(usage, result: StreamResult) -> None:
    result.prompt_tokens = usage.prompt_tokens
    result.completion_tokens = usage.completion_tokens
    details = usage.prompt_tokens_details
    result.cached_tokens = details.cached_tokens if details else None


def _to_model_error(error: openai.APIError) -> ModelError:
    """Translate an `openai` exception into what the person should be told."""
    if isinstance(error, openai.APITimeoutError):
        return ModelUnavailable("error.model_timeout")  # minutes lost: no retry
    if isinstance(error, openai.APIConnectionError):
        return ModelUnavailable("error.model_unreachable", retryable=True)
    if isinstance(error, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return ModelAuthFailed("error.model_auth")
    if isinstance(error, openai.NotFoundError):
        return ModelRejected("error.model_not_found", detail=_server_message(error))
    if isinstance(error, openai.BadRequestError):
        return _bad_request(error)
    status = getattr(error, "status_code", None)
    return ModelUnavailable("error.model_server_error", status=status, retryable=status == 503)


def _bad_request(error: openai.BadRequestError) -> ModelError:
    detail = _server_message(error)
    lowered = detail.lower()
    if "image(s) may be provided" in lowered:
        return ModelRejected("error.server_image_limit", detail=detail)
    if "context length" in lowered or "too large" in lowered:
        return ModelRejected("error.context_too_long", detail=detail)
    if "image" in lowered:
        return ModelRejected("error.image_rejected", detail=detail)
    return ModelRejected("error.model_rejected", detail=detail)


def _server_message(error: openai.APIError) -> str:
    """vLLM's own message ({"error": {"message": ...}}), else the client's summary."""
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        if isinstance(message, str) and message:
            return message
    return error.message
