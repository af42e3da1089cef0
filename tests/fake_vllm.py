"""A fake vLLM 0.33 OpenAI-compatible server on loopback, for tests and manual runs.

Owns the server's state and what it decides: its settings (model, key, limits,
reply, delays), the API-key check, which requests it refuses and why, the
switches that make it fail, the record of requests and the stream counters, and
starting and stopping it; plus the command line. It owns no model behaviour: the
reply is a fixed string or a function of the request.

Does not own: vLLM's request rules, error bodies and messages
(`tests.vllm_rules`), nor the HTTP/1.1 side: the routes, the completion and
chunk shapes, chunked SSE streaming (`tests.fake_vllm_http`). The names tests
import from here (`count_images`, `echo_reply`, ...) are re-exported, so
importers need not know about the split.

Run it by hand with `python -m tests.fake_vllm --port 8000`.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import NamedTuple

from tests.fake_vllm_http import LoopbackServer
from tests.vllm_rules import (
    ApiError,
    check_continuation,
    check_image_count,
    check_length,
    check_response_format,
    count_images,
    count_reply,
    echo_reply,
    image_tokens,
    json_schema_of,
    max_tokens_of,
    prompt_tokens,
    split_words,
    stream_interval_of,
)

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_REPLY",
    "ApiError",
    "FakeVLLM",
    "count_images",
    "echo_reply",
    "image_tokens",
    "main",
    "prompt_tokens",
    "split_words",
]

DEFAULT_MODEL = "mistralai/Pixtral-12B-2409"
DEFAULT_REPLY = "This is the fake vLLM server answering, one word at a time."
STRUCTURED_MODES = ("honour", "ignore", "invalid")


class _Fault(NamedTuple):
    kind: str  # "drop" or "error"
    after: int  # tokens of content written before it strikes
    message: str = ""


class FakeVLLM:
    """One fake server. Settings and switches may be changed while it runs.

    Counters change on the server's threads just after a stream's last write, so
    tests poll them. `streams_completed` counts streams written to the end (an
    error event included); `streams_aborted` those whose connection broke while
    being written (the client went away, or `go_down`/`stop` cut it); a
    `drop_after` drop counts in neither. `requests` holds every chat request body
    that parsed as JSON, refused ones included.

    A request with a `response_format` JSON schema gets, by `structured`:
    "honour" JSON of the app's count schema (`count_reply`), streamed in pieces and
    cut at max_tokens like any reply; "ignore" the usual reply, as a server without
    structured output would; "invalid" the JSON broken off half way, yet ending
    with "stop", as a model that ignored the schema might.
    """

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        api_key: str | None = None,
        max_model_len: int = 65536,
        max_images: int = 4,
        reply: str | Callable[[dict], str] = DEFAULT_REPLY,
        ttft: float = 0.0,
        token_delay: float = 0.0,
        stream_interval: int = 1,
        port: int = 0,
        structured: str = "honour",
    ) -> None:
        if structured not in STRUCTURED_MODES:
            raise ValueError(f"structured must be one of {STRUCTURED_MODES}")
        self.structured = structured
        self.model, self.api_key = model, api_key
        self.max_model_len, self.max_images = max_model_len, max_images
        self.reply, self.ttft, self.token_delay = reply, ttft, token_delay
        if stream_interval < 1:
            raise ValueError("stream_interval must be at least 1")
        self.stream_interval = stream_interval  # vLLM's --stream-interval: a request may raise it
        self.port, self.base_url = port, ""
        self.requests: list[dict] = []
        self.open_streams = self.streams_completed = self.streams_aborted = 0
        self._lock = threading.Lock()
        self._failures: list[ApiError] = []
        self._fault: _Fault | None = None
        self._server: LoopbackServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeVLLM:
        """Listen on 127.0.0.1; port 0 lets the OS pick, and later starts reuse that port."""
        self._server = LoopbackServer(self.port, self)
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-vllm-{self.port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every connection, streams in flight included; join the threads."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.closing.set()  # only now wake handlers waiting out a delay: their writes must fail
        server.server_close()
        self._thread.join()

    go_down = stop  # connections are refused until come_up()
    come_up = start  # the same port, the same recorded requests and counters

    def __enter__(self) -> FakeVLLM:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def fail_next(self, status: int, *, times: int = 1, message: str | None = None) -> None:
        """Answer the next `times` chat requests with this HTTP error, whatever they contain."""
        error = ApiError(status, message or HTTPStatus(status).phrase)
        with self._lock:
            self._failures.extend([error] * times)

    def drop_after(self, chunks: int) -> None:
        """Cut the next stream's connection after `chunks` tokens of content: no [DONE], no end."""
        self._fault = _Fault("drop", chunks)

    def error_event_after(self, chunks: int, message: str = "Engine failure (fake).") -> None:
        """Send vLLM's in-stream error event in the next stream after `chunks` tokens of content."""
        self._fault = _Fault("error", chunks, message)

    def _accept(self, body: dict, authorization: str | None) -> int:
        """Record the request, then refuse it as vLLM would, or return its prompt tokens."""
        with self._lock:
            self.requests.append(body)
            failure = self._failures.pop(0) if self._failures else None
        if failure:
            raise failure
        if not self._authorized(authorization):
            raise ApiError(401, "Unauthorized")
        if body.get("model") != self.model:
            raise ApiError(
                404,
                f"The model `{body.get('model')}` does not exist. Valid aliases: {self.model}.",
                "model",
            )
        messages = body.get("messages") or []
        check_continuation(body)
        check_response_format(body)
        stream_interval_of(body, self.stream_interval)
        check_image_count(messages, self.max_images)
        return check_length(prompt_tokens(messages), max_tokens_of(body) or 0, self.max_model_len)

    def _authorized(self, authorization: str | None) -> bool:
        return self.api_key is None or authorization == f"Bearer {self.api_key}"

    def _reply_chunks(self, body: dict) -> tuple[list[str], str]:
        """The reply's chunks (one chunk is one token), and "length" if max_tokens cut it."""
        chunks = split_words(self._reply_text(body))
        limit = max_tokens_of(body)
        if limit is not None and len(chunks) > limit:
            return chunks[:limit], "length"
        return chunks, "stop"

    def _reply_text(self, body: dict) -> str:
        if json_schema_of(body) is not None and self.structured != "ignore":
            text = count_reply(body)
            return text[: len(text) // 2] if self.structured == "invalid" else text
        return self.reply(body) if callable(self.reply) else self.reply

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            fault, self._fault = self._fault, None
        return fault

    def _count_stream(self, opened: int, outcome: str | None = None) -> None:
        with self._lock:
            self.open_streams += opened
            self.streams_completed += outcome == "completed"
            self.streams_aborted += outcome == "aborted"

    def _models(self) -> dict:
        created = int(time.time())
        permission = {
            "id": f"modelperm-{uuid.uuid4().hex}",
            "object": "model_permission",
            "created": created,
            "allow_create_engine": False,
            "allow_sampling": True,
            "allow_logprobs": True,
            "allow_search_indices": False,
            "allow_view": True,
            "allow_fine_tuning": False,
            "organization": "*",
            "group": None,
            "is_blocking": False,
        }
        model = {
            "id": self.model,
            "object": "model",
            "created": created,
            "owned_by": "vllm",
            "root": self.model,
            "parent": None,
            "max_model_len": self.max_model_len,
            "permission": [permission],
        }
        return {"object": "list", "data": [model]}


def main(argv: list[str] | None = None) -> None:
    """Serve on 127.0.0.1 until Ctrl-C, replying with what each request contained."""
    parser = argparse.ArgumentParser(prog="python -m tests.fake_vllm", description=main.__doc__)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--ttft", type=float, default=0.3, help="seconds before the first token")
    parser.add_argument("--token-delay", type=float, default=0.02, help="seconds between tokens")
    parser.add_argument(
        "--stream-interval",
        type=int,
        default=1,
        help="tokens per streamed event after the first, as vLLM's --stream-interval",
    )
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1 routes")
    parser.add_argument("--max-images", type=int, default=4)
    parser.add_argument("--max-model-len", type=int, default=65536)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    fake = FakeVLLM(
        port=args.port,
        ttft=args.ttft,
        token_delay=args.token_delay,
        stream_interval=args.stream_interval,
        api_key=args.api_key,
        max_images=args.max_images,
        max_model_len=args.max_model_len,
        reply=echo_reply,
    )
    try:
        with fake:
            print(f"Fake vLLM serving {fake.model} at {fake.base_url} (Ctrl-C to stop)", flush=True)
            threading.Event().wait()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
