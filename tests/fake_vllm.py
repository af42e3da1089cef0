"""A fake vLLM 0.33 OpenAI-compatible server on loopback, for tests and manual runs.

Owns the wire behaviour the app depends on: the routes, the API-key check, vLLM's
error bodies and messages, its image-count and context-length refusals, and SSE
streaming, plus switches that make it fail. It owns no model behaviour: the reply
is a fixed string or a function of the request.

It is a real `ThreadingHTTPServer` speaking HTTP/1.1 with chunked transfer
encoding. Chunked is what lets httpx (under the openai client) hand over each
event as soon as it is written *and* tell a dropped connection (no terminating
chunk) from a finished one; with `Connection: close` a drop would look like a
normal end of stream.

Run it by hand with `python -m tests.fake_vllm --port 8000`.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple

from PIL import Image

log = logging.getLogger(__name__)

DEFAULT_MODEL = "mistralai/Pixtral-12B-2409"
DEFAULT_REPLY = "This is the fake vLLM server answering, one word at a time."
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


class _Fault(NamedTuple):
    kind: str  # "drop" or "error"
    after: int  # content chunks written before it strikes
    message: str = ""


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


def _parts(messages: list[dict]) -> Iterator[dict]:
    """Every content part of every message; a plain-string content is one text part."""
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            yield {"type": "text", "text": content}
        elif isinstance(content, list):
            yield from content


def count_images(messages: list[dict]) -> int:
    """Images in the whole request: vLLM's limit counts the history too."""
    return sum(part.get("type") == "image_url" for part in _parts(messages))


def prompt_tokens(messages: list[dict]) -> int:
    """A deterministic estimate (text: len // 3 + 1 per part) with Pixtral's exact image costs.

    It decodes every image, so a bad one raises ApiError here, as it would in vLLM.
    """
    total = TOKENS_PER_MESSAGE * len(messages)
    for part in _parts(messages):
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


def echo_reply(body: dict) -> str:
    """The CLI's reply: it says it is the fake and what it received, to check what the app sent."""
    messages = body.get("messages") or []
    last_user = [m for m in messages if m.get("role") == "user"][-1:]
    question = " ".join(p.get("text", "") for p in _parts(last_user) if p.get("type") == "text")
    return (
        f"[fake vLLM] I received {count_images(messages)} image(s) in this request (history "
        f"included) and this question: {question!r}. I am a test server, not a model."
    )


class FakeVLLM:
    """One fake server. Settings and switches may be changed while it runs.

    Counters change on the server's threads just after a stream's last write, so
    tests poll them. `streams_completed` counts streams written to the end (an
    error event included); `streams_aborted` those whose connection broke while
    being written (the client went away, or `go_down`/`stop` cut it); a
    `drop_after` drop counts in neither. `requests` holds every chat request body
    that parsed as JSON, refused ones included.
    """

    def __init__(
        self, *, model: str = DEFAULT_MODEL, api_key: str | None = None,
        max_model_len: int = 65536, max_images: int = 4,
        reply: str | Callable[[dict], str] = DEFAULT_REPLY,
        ttft: float = 0.0, token_delay: float = 0.0, port: int = 0,
    ) -> None:
        self.model, self.api_key = model, api_key
        self.max_model_len, self.max_images = max_model_len, max_images
        self.reply, self.ttft, self.token_delay = reply, ttft, token_delay
        self.port, self.base_url = port, ""
        self.requests: list[dict] = []
        self.open_streams = self.streams_completed = self.streams_aborted = 0
        self._lock = threading.Lock()
        self._failures: list[ApiError] = []
        self._fault: _Fault | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeVLLM:
        """Listen on 127.0.0.1; port 0 lets the OS pick, and later starts reuse that port."""
        self._server = _Server(self.port, self)
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
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
        """Cut the next stream's connection after `chunks` content chunks: no [DONE], no end."""
        self._fault = _Fault("drop", chunks)

    def error_event_after(self, chunks: int, message: str = "Engine failure (fake).") -> None:
        """Send vLLM's in-stream error event in the next stream after `chunks` content chunks."""
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
            raise ApiError(404, f"The model `{body.get('model')}` does not exist.", "model")
        messages = body.get("messages") or []
        if count_images(messages) > self.max_images:
            raise ApiError(
                400, f"At most {self.max_images} image(s) may be provided in one prompt.", "image"
            )
        return self._check_length(prompt_tokens(messages), _max_tokens(body) or 0)

    def _authorized(self, authorization: str | None) -> bool:
        return self.api_key is None or authorization == f"Bearer {self.api_key}"

    def _check_length(self, prompt: int, max_tokens: int) -> int:
        limit = self.max_model_len
        if prompt >= limit:
            raise ApiError(400, (
                f"This model's maximum context length is {limit} tokens. However, your request "
                f"has {prompt} input tokens. Please reduce the length of the input messages."))
        if prompt + max_tokens > limit:
            raise ApiError(400, (
                f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This model's "
                f"maximum context length is {limit} tokens and your request has {prompt} input "
                f"tokens ({max_tokens} > {limit} - {prompt})."), "max_tokens")
        return prompt

    def _reply_chunks(self, body: dict) -> tuple[list[str], str]:
        """The reply's chunks (one chunk is one token), and "length" if max_tokens cut it."""
        chunks = split_words(self.reply(body) if callable(self.reply) else self.reply)
        limit = _max_tokens(body)
        if limit is not None and len(chunks) > limit:
            return chunks[:limit], "length"
        return chunks, "stop"

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
            "id": f"modelperm-{uuid.uuid4().hex}", "object": "model_permission",
            "created": created, "allow_create_engine": False, "allow_sampling": True,
            "allow_logprobs": True, "allow_search_indices": False, "allow_view": True,
            "allow_fine_tuning": False, "organization": "*", "group": None, "is_blocking": False,
        }
        model = {
            "id": self.model, "object": "model", "created": created, "owned_by": "vllm",
            "root": self.model, "parent": None, "max_model_len": self.max_model_len,
            "permission": [permission],
        }
        return {"object": "list", "data": [model]}


def _max_tokens(body: dict) -> int | None:
    return body.get("max_completion_tokens") or body.get("max_tokens")


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _dumps(obj: object) -> bytes:
    """Compact JSON, as FastAPI and pydantic write it."""
    return json.dumps(obj, separators=(",", ":")).encode()


class _Server(ThreadingHTTPServer):
    """Tracks its connections so stopping can cut them; quiet about clients that went away."""

    daemon_threads = False  # so that server_close() joins them: counters are final after stop()

    def __init__(self, port: int, fake: FakeVLLM) -> None:
        self.fake, self.closing, self.connections = fake, threading.Event(), set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def process_request(self, request: socket.socket, client_address: object) -> None:
        with self._connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        with self._connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            for connection in self.connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # the client closed it first
            self.connections.clear()

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streaming, as uvicorn does
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        log.info("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        fake = self.server.fake
        if self.path == "/health":
            self._send_json(200, None)
        elif self.path != "/v1/models":
            self._send_json(404, {"detail": "Not Found"})
        elif not fake._authorized(self.headers.get("Authorization")):
            self._send_json(401, ApiError(401, "Unauthorized").body())
        else:
            self._send_json(200, fake._models())

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/v1/chat/completions":
            return self._send_json(404, {"detail": "Not Found"})
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("the body is not a JSON object")
            prompt = self.server.fake._accept(body, self.headers.get("Authorization"))
        except ApiError as error:
            return self._send_json(error.status, error.body())
        except ValueError as exc:
            return self._send_json(400, ApiError(400, f"Invalid JSON body: {exc}").body())
        (self._stream if body.get("stream") else self._complete)(body, prompt)

    def _send_json(self, status: int, obj: object) -> None:
        data = b"" if obj is None else _dumps(obj)
        self.send_response(status)
        if obj is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _complete(self, body: dict, prompt: int) -> None:
        fake = self.server.fake
        chunks, finish = fake._reply_chunks(body)
        self.server.closing.wait(fake.ttft + fake.token_delay * len(chunks))
        message = {"role": "assistant", "content": "".join(chunks), "tool_calls": []}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish,
                  "stop_reason": None}
        self._send_json(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
            "created": int(time.time()), "model": fake.model, "choices": [choice],
            "usage": _usage(prompt, len(chunks)),
        })

    def _stream(self, body: dict, prompt: int) -> None:
        fake = self.server.fake
        fake._count_stream(+1)
        outcome: str | None = "aborted"
        try:
            outcome = self._write_stream(body, prompt)
        except ConnectionError:
            self.close_connection = True
        finally:
            fake._count_stream(-1, outcome)

    def _write_stream(self, body: dict, prompt: int) -> str | None:
        """Write one SSE stream; returns "completed", or None after a deliberate drop."""
        fake, wait = self.server.fake, self.server.closing.wait
        chunks, finish = fake._reply_chunks(body)
        fault = fake._take_fault()
        self.send_response(200)  # at once, as vLLM does; the first token waits for the ttft
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(delta: dict, finish_reason: str | None = None) -> dict:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return {"id": ident, "object": "chat.completion.chunk", "created": created,
                    "model": fake.model, "choices": [choice]}

        wait(fake.ttft)
        self._send(chunk({"role": "assistant", "content": ""}))
        written = len(chunks) if fault is None else min(fault.after, len(chunks))
        for i, text in enumerate(chunks[:written]):
            if i:
                wait(fake.token_delay)
            self._send(chunk({"content": text}))
        if fault and fault.kind == "drop":
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return None
        if fault:
            tail = [ApiError(500, fault.message).body()]
        else:
            tail = [chunk({"content": ""}, finish)]
            if (body.get("stream_options") or {}).get("include_usage"):
                tail.append({**chunk({}), "choices": [], "usage": _usage(prompt, len(chunks))})
        # One write for the whole end: the client stops reading at an error event, and a
        # later write could then fail and make a finished stream look aborted.
        self._send(*tail, "[DONE]", last=True)
        return "completed"

    def _send(self, *events: object, last: bool = False) -> None:
        """Write SSE events as one HTTP chunk; `last` adds the terminator that ends the body."""
        data = b"".join(
            b"data: %s\n\n" % (event.encode() if isinstance(event, str) else _dumps(event))
            for event in events
        )
        end = b"0\r\n\r\n" if last else b""
        self.wfile.write(b"%x\r\n%s\r\n%s" % (len(data), data, end))


def main(argv: list[str] | None = None) -> None:
    """Serve on 127.0.0.1 until Ctrl-C, replying with what each request contained."""
    parser = argparse.ArgumentParser(prog="python -m tests.fake_vllm", description=main.__doc__)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--ttft", type=float, default=0.3, help="seconds before the first token")
    parser.add_argument("--token-delay", type=float, default=0.02, help="seconds between tokens")
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1 routes")
    parser.add_argument("--max-images", type=int, default=4)
    parser.add_argument("--max-model-len", type=int, default=65536)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    fake = FakeVLLM(
        port=args.port, ttft=args.ttft, token_delay=args.token_delay, api_key=args.api_key,
        max_images=args.max_images, max_model_len=args.max_model_len, reply=echo_reply,
    )
    try:
        with fake:
            print(f"Fake vLLM serving {fake.model} at {fake.base_url} (Ctrl-C to stop)", flush=True)
            threading.Event().wait()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
