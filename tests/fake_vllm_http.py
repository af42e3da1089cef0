"""The fake vLLM's HTTP side: a real HTTP/1.1 server on loopback, its routes and SSE streams.

Owns: the routes (/health, /v1/models, /v1/chat/completions), the JSON and
SSE shapes vLLM answers with, chunked streaming with the delays and faults the
fake asks for, and tracking connections so that stopping can cut them.

Does not own: what to accept, refuse or reply, the switches and counters
(`tests.fake_vllm.FakeVLLM`, reached as `server.fake`), nor vLLM's request
rules (`tests.vllm_rules`).

It is a real `ThreadingHTTPServer` speaking HTTP/1.1 with chunked transfer
encoding. Chunked is what lets httpx (under the openai client) hand over each
event as soon as it is written *and* tell a dropped connection (no terminating
chunk) from a finished one; with `Connection: close` a drop would look like a
normal end of stream.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from tests.vllm_rules import ApiError, stream_interval_of

if TYPE_CHECKING:
    from tests.fake_vllm import FakeVLLM

log = logging.getLogger(__name__)


def _usage(prompt: int, completion: int) -> dict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _dumps(obj: object) -> bytes:
    """Compact JSON, as FastAPI and pydantic write it."""
    return json.dumps(obj, separators=(",", ":")).encode()


class LoopbackServer(ThreadingHTTPServer):
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
    server: LoopbackServer

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
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": finish,
            "stop_reason": None,
        }
        self._send_json(
            200,
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": fake.model,
                "choices": [choice],
                "usage": _usage(prompt, len(chunks)),
            },
        )

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
            return {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": fake.model,
                "choices": [choice],
            }

        wait(fake.ttft)
        self._send(chunk({"role": "assistant", "content": ""}))
        written = len(chunks) if fault is None else min(fault.after, len(chunks))
        interval = stream_interval_of(body, fake.stream_interval)
        for i, group in token_groups(chunks[:written], interval):
            if i:
                wait(fake.token_delay * len(group))
            self._send(chunk({"content": "".join(group)}))
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


def token_groups(tokens: list[str], interval: int) -> list[tuple[int, list[str]]]:
    """The tokens as vLLM's `--stream-interval` sends them: the first alone (the first
    token is never held back), then `interval` at a time, what is left at the end;
    each with the index of its first token."""
    starts = [0, *range(1, len(tokens), interval)] if tokens else []
    return [(i, tokens[i : i + (interval if i else 1)]) for i in starts]
