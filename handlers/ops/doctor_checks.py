"""The doctor's checks: each asks one vLLM server one question over its real HTTP API.

Owns: the `Probe` (one server under test, and what the gates learned about it),
the `check_*` coroutines, each taking a `Probe` and returning a `CheckResult`
with the fix for a failure (the runner stamps the check's name on it), their
order (`CHECKS`), and the tiny requests and images they send. The first
`GATES` checks are gates: the rest mean nothing unless the server is up, takes
the key and serves the model.

Does not own: running the checks, skipping after a failed gate, the report or
the exit code (`handlers.ops.doctor`); settings (`handlers.core.settings`). The checks
build their requests themselves rather than use the app's image pipeline or
model client, so that a bug in the app cannot hide, or fake, a problem with the
server.
"""

from __future__ import annotations

import base64
import io
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, cast

import httpx
import openai
from openai.types.chat import ChatCompletionContentPartParam
from PIL import Image

from handlers.core.settings import Settings

APP_ENV = "/etc/visual-assistant/app.env"
VLLM_ENV = "/etc/visual-assistant/vllm.env"
VLLM_UNIT = "/etc/systemd/system/vllm.service"
QUESTION = "What colour is this square? Answer with one word."
ANSWER_TOKENS = 16
FIX_BASE_URL = f"VLLM_BASE_URL in {APP_ENV} must be vLLM's OpenAI API, ending in /v1 (http://127.0.0.1:8000/v1)"
IMAGE_LIMIT_MESSAGE = re.compile(r"At most (\d+) image\(s\)")

Status = Literal["OK", "FAIL", "SKIP"]


@dataclass(frozen=True)
class CheckResult:
    status: Status
    detail: str
    fix: str = ""  # what to do about a failure, as a command or a setting to change
    name: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "OK"


def ok(detail: str) -> CheckResult:
    return CheckResult("OK", detail)


def fail(detail: str, fix: str) -> CheckResult:
    return CheckResult("FAIL", detail, fix)


@dataclass
class Probe:
    """One server under test, and what the gates learned about it for the later checks."""

    settings: Settings
    base_url: str  # as configured, ending in /v1
    http: httpx.AsyncClient
    llm: openai.AsyncOpenAI
    models: list[dict] = field(default_factory=list)  # the model cards of GET /v1/models
    model: str | None = None
    card: dict = field(default_factory=dict)  # the card of `model`

    @property
    def root_url(self) -> str:
        """The server root, where vLLM serves /health (outside /v1 and its key check)."""
        return self.base_url.removesuffix("/v1")

    def auth_headers(self) -> dict[str, str]:
        return (
            {"Authorization": f"Bearer {self.settings.vllm_api_key}"}
            if self.settings.vllm_api_key
            else {}
        )


Check = Callable[[Probe], Awaitable[CheckResult]]


# --- the checks -------------------------------------------------------------


async def check_health(probe: Probe) -> CheckResult:
    url = f"{probe.root_url}/health"
    try:
        response = await probe.http.get(url)
    except httpx.HTTPError as error:
        return fail(f"{url}: {_describe_http_error(error)}", _fix_unreachable(probe.base_url))
    if response.status_code == 404:
        return fail(f"{url} answered 404: this is not vLLM's server root", FIX_BASE_URL)
    if response.status_code != 200:
        return fail(
            f"{url} answered {response.status_code}",
            "vLLM is up but its engine is not healthy: journalctl -u vllm -e, then systemctl restart vllm",
        )
    return ok(f"{url} answered 200")


async def check_api_key(probe: Probe) -> CheckResult:
    url = f"{probe.base_url}/models"
    try:
        response = await probe.http.get(url, headers=probe.auth_headers())
    except httpx.HTTPError as error:
        return fail(f"{url}: {_describe_http_error(error)}", _fix_unreachable(probe.base_url))
    if response.status_code in (401, 403):
        return fail(
            f"{url} answered {response.status_code} {_short(response.text)}", _fix_key(probe)
        )
    if response.status_code != 200:
        return fail(f"{url} answered {response.status_code} {_short(response.text)}", FIX_BASE_URL)
    try:
        probe.models = response.json()["data"]
    except (ValueError, KeyError, TypeError):
        return fail(
            f"{url} answered 200 but not with a model list: {_short(response.text)}", FIX_BASE_URL
        )
    return ok(f"{url} accepted the key" if probe.settings.vllm_api_key else f"{url} needs no key")


async def check_model(probe: Probe) -> CheckResult:
    cards = {card.get("id"): card for card in probe.models}
    wanted = probe.settings.vllm_model
    if not cards:
        return fail("the server lists no models", f"check --served-model-name in {VLLM_UNIT}")
    if wanted and wanted not in cards:
        return fail(
            f"VLLM_MODEL={wanted} is not served; the server has {', '.join(map(str, cards))}",
            f"set VLLM_MODEL to one of those in {APP_ENV}, or serve {wanted} ({VLLM_UNIT})",
        )
    probe.model = wanted or next(iter(cards))
    probe.card = cards[probe.model]
    how = "" if wanted else " (VLLM_MODEL is empty: the app uses the first model listed)"
    return ok(f"{probe.model} is served{how}")


async def check_context_length(probe: Probe) -> CheckResult:
    served, configured = probe.card.get("max_model_len"), probe.settings.max_model_len
    if served is None:
        return fail(
            "the model card has no max_model_len (is this vLLM?)",
            "point VLLM_BASE_URL at vLLM 0.33's OpenAI-compatible server",
        )
    if served != configured:
        return fail(
            f"the server's max_model_len is {served}, MAX_MODEL_LEN is {configured}",
            f"make them equal: MAX_MODEL_LEN={served} in {APP_ENV}, "
            f"or --max-model-len {configured} in {VLLM_UNIT}",
        )
    return ok(f"max_model_len {served} = MAX_MODEL_LEN")


async def check_images_accepted(probe: Probe) -> CheckResult:
    limit = probe.settings.max_images_per_request
    try:
        await _ask(probe, _tiny_images(limit), max_tokens=1)
    except openai.BadRequestError as error:
        served = _served_image_limit(error)
        if served is not None:
            return fail(
                f"{limit} images refused: {_server_message(error)}", _fix_image_limit(limit, served)
            )
        return fail(
            f"{limit} tiny images refused: {_server_message(error)}",
            "read the server's message above; journalctl -u vllm -e has the details",
        )
    except openai.APIError as error:
        return _api_failure(error, probe)
    return ok(f"{limit} images in one request accepted (MAX_IMAGES_PER_REQUEST)")


async def check_image_limit(probe: Probe) -> CheckResult:
    limit = probe.settings.max_images_per_request
    try:
        await _ask(probe, _tiny_images(limit + 1), max_tokens=1)
    except openai.BadRequestError as error:
        served = _served_image_limit(error)
        if served == limit:
            return ok(f"{limit + 1} images refused: {_server_message(error)!r}")
        if served is not None:
            return fail(
                f"the server allows {served} images, MAX_IMAGES_PER_REQUEST is {limit}",
                _fix_image_limit(limit, served),
            )
        return fail(
            f"{limit + 1} images refused, but not for their number: {_server_message(error)}",
            "read the server's message above; journalctl -u vllm -e has the details",
        )
    except openai.APIError as error:
        return _api_failure(error, probe)
    return fail(
        f"{limit + 1} images accepted: the server allows more than MAX_IMAGES_PER_REQUEST",
        _fix_image_limit(limit, None),
    )


async def check_answer(probe: Probe) -> CheckResult:
    started = time.monotonic()
    first_token: float | None = None
    pieces: list[str] = []
    try:
        stream = await _ask(
            probe, [_image_part(_png((200, 30, 30)))], max_tokens=ANSWER_TOKENS, stream=True
        )
        try:
            async for chunk in stream:
                text = chunk.choices[0].delta.content if chunk.choices else None
                if text:
                    first_token = first_token or time.monotonic() - started
                    pieces.append(text)
        finally:
            await stream.close()
    except openai.APIError as error:
        return _api_failure(error, probe)
    answer = "".join(pieces).strip()
    if not answer:
        return fail("the streamed answer was empty", "journalctl -u vllm -e may say why")
    took = time.monotonic() - started
    return ok(
        f"streamed {_short(answer)!r} (first token after {first_token:.2f} s, all in {took:.2f} s)"
    )


# In order. The first GATES must pass for the others to be worth running.
CHECKS: tuple[tuple[str, Check], ...] = (
    ("health", check_health),
    ("api key", check_api_key),
    ("model", check_model),
    ("context", check_context_length),
    ("images", check_images_accepted),
    ("image limit", check_image_limit),
    ("answer", check_answer),
)
GATES = 3


# --- helpers ----------------------------------------------------------------


async def _ask(probe: Probe, images: list[dict], *, max_tokens: int, stream: bool = False):
    assert probe.model is not None, "the model gate, which sets it, passed before any check asks"
    # The images are plain dicts of the wire format (`_tiny_images`).
    content = cast(
        "list[ChatCompletionContentPartParam]", [{"type": "text", "text": QUESTION}, *images]
    )
    return await probe.llm.chat.completions.create(
        model=probe.model,
        messages=[{"role": "user", "content": content}],
        max_tokens=max_tokens,
        temperature=0.0,
        stream=stream,
    )


def _png(color: tuple[int, int, int], side: int = 32) -> bytes:
    """A tiny solid square: Pixtral turns a 32 px image into 6 tokens, so checks cost nothing."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), color).save(buffer, format="PNG")
    return buffer.getvalue()


def _image_part(png: bytes) -> dict:
    return {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()},
    }


def _tiny_images(count: int) -> list[dict]:
    return [_image_part(_png((40 * index % 256, 120, 200))) for index in range(count)]


def _served_image_limit(error: openai.BadRequestError) -> int | None:
    """N from vLLM's "At most N image(s) may be provided in one prompt.", if that is the refusal."""
    match = IMAGE_LIMIT_MESSAGE.search(_server_message(error))
    return int(match.group(1)) if match else None


def _server_message(error: openai.APIError) -> str:
    body = error.body
    inner = body.get("error", body) if isinstance(body, dict) else body
    message = inner.get("message") if isinstance(inner, dict) else inner
    return message if isinstance(message, str) and message else error.message


def _api_failure(error: openai.APIError, probe: Probe) -> CheckResult:
    if isinstance(error, openai.APITimeoutError):
        return fail(
            f"no answer from {probe.base_url} in time",
            "vLLM may be overloaded or stuck: journalctl -u vllm -e; or raise --timeout",
        )
    if isinstance(error, openai.APIConnectionError):
        return fail(f"lost the connection to {probe.base_url}", _fix_unreachable(probe.base_url))
    if isinstance(error, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return fail(f"{probe.base_url} refused the key ({error.status_code})", _fix_key(probe))
    status = getattr(error, "status_code", "an error event")
    return fail(
        f"{probe.base_url} answered {status}: {_server_message(error)}",
        "journalctl -u vllm -e has the server's side of it",
    )


def _describe_http_error(error: httpx.HTTPError) -> str:
    if isinstance(error, httpx.TimeoutException):
        return "no answer in time"
    if isinstance(error, httpx.ConnectError):
        return "cannot connect (nothing listening, or a firewall)"
    return f"{type(error).__name__}: {error}"


def _fix_unreachable(base_url: str) -> str:
    return (
        f"start vLLM (systemctl status vllm; loading takes minutes: journalctl -u vllm -f), "
        f"or correct VLLM_BASE_URL={base_url} in {APP_ENV}"
    )


def _fix_key(probe: Probe) -> str:
    if not probe.settings.vllm_api_key:
        return f"VLLM_API_KEY is not set: set it in {APP_ENV} to the key in {VLLM_ENV}"
    return f"401: set VLLM_API_KEY in {APP_ENV} to the key in {VLLM_ENV}"


def _fix_image_limit(limit: int, served: int | None) -> str:
    fix = f"""start vLLM with --limit-mm-per-prompt '{{"image": {limit}}}' ({VLLM_UNIT})"""
    if served is not None:
        fix += f", or set MAX_IMAGES_PER_REQUEST={served} in {APP_ENV}"
    return fix


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
