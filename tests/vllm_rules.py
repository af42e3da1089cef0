"""vLLM 0.33's request rules, as the fake server applies them: pure functions, no HTTP.

Owns: vLLM's error bodies (`ApiError`), Pixtral-12B's image token cost, the
prompt-size estimate, the image-count and context-length refusals with vLLM's
own messages, how a reply is cut into stream chunks, the CLI's echo reply, and
the JSON a request with a `response_format` schema gets (`count_reply`).
Every refusal is raised as an `ApiError` whose `body()` is what vLLM answers.

Does not own: the server, its routes, the API-key check, streaming or the
switches that make it fail (`tests.fake_vllm`).
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Iterator
from http import HTTPStatus

from PIL import Image

MAX_IMAGE_SIDE = 1024  # Pixtral-12B scales larger images down to this
PATCH_SIZE = 16
TOKENS_PER_MESSAGE = 4  # stands in for role and control tokens; it only has to be deterministic


class ApiError(Exception):
    """A request vLLM would refuse; `body()` is the JSON vLLM answers with."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param

    def body(self) -> dict:
        if self.status == 401:  # vLLM's API-key middleware has its own, flat shape
            return {"error": "Unauthorized"}
        if self.status >= 500:
            kind = "InternalServerError"
        else:
            kind = HTTPStatus(self.status).phrase.replace(" ", "") + "Error"
        error = {"message": self.message, "type": kind, "param": self.param, "code": self.status}
        return {"error": error}


def image_tokens(width: int, height: int) -> int:
    """Pixtral-12B's prompt cost of one image (1024x768 costs 3120).

    Larger images are first scaled to fit 1024 px (rounding, as mistral_common does);
    then one token per 16x16 patch plus one break token per row.
    """
    ratio = max(width, height) / MAX_IMAGE_SIDE
    if ratio > 1:
        width, height = max(round(width / ratio), 1), max(round(height / ratio), 1)
    cols, rows = -(-width // PATCH_SIZE), -(-height // PATCH_SIZE)
    return cols * rows + rows


def split_words(text: str) -> list[str]:
    """A reply's stream chunks: each word keeps its trailing spaces, so they join back to `text`."""
    return [piece for piece in re.split(r"(?<=\s)(?=\S)", text) if piece]


def content_parts(messages: list[dict]) -> Iterator[dict]:
    """Every content part of every message; a plain-string content is one text part."""
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            yield {"type": "text", "text": content}
        elif isinstance(content, list):
            yield from content


def count_images(messages: list[dict]) -> int:
    """Images in the whole request: vLLM's limit counts the history too."""
    return sum(part.get("type") == "image_url" for part in content_parts(messages))


def prompt_tokens(messages: list[dict]) -> int:
    """A deterministic estimate (text: len // 3 + 1 per part) with Pixtral's exact image costs.

    It decodes every image, so a bad one raises ApiError here, as it would in vLLM.
    """
    total = TOKENS_PER_MESSAGE * len(messages)
    for part in content_parts(messages):
        if part.get("type") == "text":
            total += len(part.get("text") or "") // 3 + 1
        elif part.get("type") == "image_url":
            total += image_tokens(*_image_size((part.get("image_url") or {}).get("url") or ""))
    return total


def _image_size(url: str) -> tuple[int, int]:
    """Decode a base64 data URL fully; refuse other URLs: the app must never make vLLM fetch."""
    if not url.startswith("data:"):
        raise ApiError(400, f"The fake vLLM only accepts base64 data: URLs, got {url[:60]!r}.")
    header, _, data = url.partition(",")
    try:
        if not header.endswith(";base64"):
            raise ValueError("the data URL is not base64-encoded")
        with Image.open(io.BytesIO(base64.b64decode(data, validate=True))) as image:
            image.load()
            return image.size
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ApiError(400, f"Failed to load image: {exc}") from exc


def max_tokens_of(body: dict) -> int | None:
    """The completion budget asked for; vLLM takes the newer field first."""
    return body.get("max_completion_tokens") or body.get("max_tokens")


def check_continuation(body: dict) -> None:
    """A final answer is gone on with only when asked so (`continue_final_message`,
    and `add_generation_prompt` off: it defaults to on), in vLLM's words."""
    messages = body.get("messages") or []
    final_answer = bool(messages) and messages[-1].get("role") == "assistant"
    going_on, prompt = (
        bool(body.get("continue_final_message")),
        body.get("add_generation_prompt", True),
    )
    if going_on and prompt:
        raise ApiError(
            400, "Cannot set both `add_generation_prompt` and `continue_final_message` to True."
        )
    if final_answer and prompt:
        raise ApiError(
            400,
            "Cannot set `add_generation_prompt` to True when the last message is from the "
            "assistant. Consider using `continue_final_message` instead.",
        )
    if going_on and not final_answer:
        raise ApiError(
            400,
            "Cannot set `continue_final_message` to True when the last message is not "
            "from the assistant.",
        )


def check_image_count(messages: list[dict], max_images: int) -> None:
    """Refuse more images than --limit-mm-per-prompt allows, in vLLM's words."""
    if count_images(messages) > max_images:
        raise ApiError(
            400,
            f"At most {max_images} image(s) may be provided in one prompt. (parameter=image)",
            "image",
        )


def check_length(prompt: int, max_tokens: int, limit: int) -> int:
    """Refuse `max_tokens` over `limit` (max_model_len), or a prompt over it, in vLLM's
    words; return `prompt`. A prompt that fits with less room than `max_tokens` is
    served: vLLM 0.32 cuts the answer where the context ends (the fake's are short)."""
    if max_tokens > limit:
        raise ApiError(
            400,
            (
                f"max_tokens={max_tokens} cannot be greater than max_model_len={limit}. Please "
                f"request fewer output tokens. (parameter=max_tokens, value={max_tokens})"
            ),
            "max_tokens",
        )
    if prompt > limit:
        raise ApiError(
            400,
            (
                f"This model's maximum context length is {limit} tokens. However, your prompt "
                f"contains {prompt} input tokens, which exceeds this limit even without any output "
                f"tokens. Please reduce the length of the input prompt. (parameter=input_tokens, "
                f"value={prompt})"
            ),
            "input_tokens",
        )
    return prompt


def echo_reply(body: dict) -> str:
    """The CLI's reply: it says it is the fake and what it received, to check what the app sent."""
    messages = body.get("messages") or []
    last_user = [m for m in messages if m.get("role") == "user"][-1:]
    question = " ".join(
        p.get("text", "") for p in content_parts(last_user) if p.get("type") == "text"
    )
    return (
        f"[fake vLLM] I received {count_images(messages)} image(s) in this request (history "
        f"included) and this question: {question!r}. I am a test server, not a model."
    )


# --- structured output (response_format) ---------------------------------------------

COLOURS = {
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "grey": (128, 128, 128),
}


def check_response_format(body: dict) -> None:
    """vLLM refuses a json_schema response_format without its schema (0.32's words)."""
    response_format = body.get("response_format")
    if (
        isinstance(response_format, dict)
        and response_format.get("type") == "json_schema"
        and response_format.get("json_schema") is None
    ):
        raise ApiError(
            400,
            "When response_format type is 'json_schema', the 'json_schema' field must be provided.",
            "response_format",
        )


def stream_interval_of(body: dict, floor: int) -> int:
    """Tokens per streamed event: the request's `stream_interval`, clamped up to the
    server's `--stream-interval` (`floor`), as vLLM 0.32 does. Its validation is
    pydantic's lax one: "4" and true pass (as 4 and 1); 0, -1 and 2.5 are refused."""
    asked = body.get("stream_interval")
    if asked is None:
        return floor
    try:
        value = int(asked) if not isinstance(asked, float) or asked.is_integer() else None
    except (TypeError, ValueError):  # a list or an object, or text that is no number
        value = None
    if value is None:
        raise ApiError(
            400,
            _refused("int_parsing", "Input should be a valid integer", asked),
            STREAM_INTERVAL_PARAM,
        )
    if value < 1:
        raise ApiError(
            400,
            _refused("greater_than_equal", "Input should be greater than or equal to 1", asked),
            STREAM_INTERVAL_PARAM,
        )
    return max(value, floor)


STREAM_INTERVAL_PARAM = "body.stream_interval"


def _refused(kind: str, message: str, value: object) -> str:
    """vLLM 0.32's words for a `stream_interval` pydantic refused."""
    detail = {"type": kind, "loc": STREAM_INTERVAL_PARAM, "msg": message, "input": str(value)}
    return f"1 validation error:\n  {detail}"


def json_schema_of(body: dict) -> dict | None:
    """The schema the answer must follow, if the request asks for one. `guided_json`
    is not looked at: vLLM 0.33 ignores it without an error."""
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema")
    return None


def count_reply(body: dict) -> str:
    """A count of the app's schema, derived from what was received: for image n of the
    last user message, n objects named for its colour, on that image."""
    messages = body.get("messages") or []
    last_user = [m for m in messages if m.get("role") == "user"][-1:]
    urls = [
        (p.get("image_url") or {}).get("url") or ""
        for p in content_parts(last_user)
        if p.get("type") == "image_url"
    ]
    objects = [{"name": colour_of(url), "count": n, "image": n} for n, url in enumerate(urls, 1)]
    reply = {
        "objects": objects,
        "total": sum(o["count"] for o in objects),
        "uncertain": ["the fake vLLM counts images, not what is in them"],
    }
    return json.dumps(reply, ensure_ascii=False)


def colour_of(url: str) -> str:
    """The palette colour nearest an image's mean colour."""
    data = base64.b64decode(url.partition(",")[2])
    with Image.open(io.BytesIO(data)) as image:
        mean = image.convert("RGB").resize((1, 1)).getpixel((0, 0))
    return min(COLOURS, key=lambda name: sum((a - b) ** 2 for a, b in zip(COLOURS[name], mean)))
