"""The simulated people of the load benchmark, and what each one measured.

Owns two kinds of user, each one chat long:

- `ChainlitUser` does what the browser does (read from Chainlit 2.12's
  frontend bundle): POST `/set-session-cookie`, connect socket.io at
  `/ws/socket.io` (polling, then upgrade to websocket, as socket.io-client
  does by default) with the `auth` payload `{clientType, sessionId, threadId,
  userEnv, chatProfile}`, emit `connection_successful` and `fetch_favorites`,
  upload the photo to `POST /project/file?session_id=…` as multipart form
  field `file`, then emit `client_message` with `fileReferences: [{id}]`.
- `direct_user` calls the model server with `AsyncOpenAI`, no app between:
  the baseline for the app's own overhead.

Time to first token is measured from sending the question to the first
answer text. In Chainlit 2.12 the first token does not come as
`stream_token`: `Message.stream_token` sends it inside `stream_start` (as the
step's `output`), and only the later ones as `stream_token`.

Does not own: starting servers, arrival times, statistics (bench/load.py).
"""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field

import aiohttp
import openai
import socketio
from PIL import Image, ImageOps

SOCKET_PATH = "/ws/socket.io"
# The app signs people in by password, or by a header a trusted proxy sets
# (AUTH_TRUSTED_HEADER). The benchmark starts it with this header, as behind an
# SSO proxy, so that each user is a distinct signed-in person without accounts.
AUTH_HEADER = "X-Load-Bench-User"
# What the proxy adds to prove the header is its own (AUTH_PROXY_SECRET); one per run.
PROXY_SECRET = secrets.token_hex(32)
PROXY_SECRET_HEADER = "X-Auth-Proxy-Secret"
CONNECT_TIMEOUT = 30.0  # seconds; a loaded 2-core box can be slow to answer the handshake


@dataclass
class UserResult:
    """One person's chat. Times are seconds; `ttft` and `total` count from the question being sent."""

    ttft: float | None = None
    total: float | None = None
    tokens: int = 0
    tokens_per_s: float | None = None
    upload_s: float | None = None
    sent_at: float | None = (
        None  # wall clock (time.time), comparable with the fake's arrival stamps
    )
    to_model_s: float | None = (
        None  # from sending the question to the request reaching the model server
    )
    error: str | None = None

    def finish(
        self, sent: float, token_times: list[float], pieces: list[str], expected: str
    ) -> None:
        if not token_times:
            self.error = self.error or "no answer text"
            return
        text, first_piece = "".join(pieces), pieces[0]
        self.ttft = token_times[0] - sent
        # The fake's tokens are words; an event may carry several (`--stream-interval`).
        self.tokens = len(text.split())
        span = token_times[-1] - token_times[0]
        if len(token_times) > 1 and span > 0:
            self.tokens_per_s = (self.tokens - len(first_piece.split())) / span
        if text != expected and not self.error:
            self.error = f"answer differs from the model's ({len(text)} vs {len(expected)} chars)"


@dataclass
class Photo:
    name: str
    mime: str
    data: bytes = field(repr=False)


BROWSER_MAX_SIDE = 2048  # public/shrink-photos.js


def as_the_browser_uploads(photo: Photo) -> Photo:
    """What Chromium uploads for this photo with the app's page script
    (public/shrink-photos.js): a JPEG over 2048 px is turned upright and redrawn
    at 2048 px, quality 0.92. Pillow's BICUBIC at quality 92 comes within 1 % of
    Chromium's size for the benchmark photo (982 against 978 KB, measured once by
    a Playwright probe like tests/e2e/test_uploads.py); the browser's work is done
    here once, before the run, as each person's own computer would do it."""
    with Image.open(io.BytesIO(photo.data)) as image:
        upright = ImageOps.exif_transpose(image)
        scale = BROWSER_MAX_SIDE / max(upright.size)
        if photo.mime != "image/jpeg" or scale >= 1:
            return photo
        size = (round(upright.width * scale), round(upright.height * scale))
        out = io.BytesIO()
        upright.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(out, "JPEG", quality=92)
    return Photo(photo.name, photo.mime, out.getvalue())


class ChainlitUser:
    """One browser tab: connect, optionally upload a photo, ask once, stay connected until `close`."""

    def __init__(
        self,
        base_url: str,
        identity: str,
        question: str,
        photo: Photo | None,
        expected: str,
        typing_s: float = 0.0,
    ) -> None:
        self.base_url, self.identity = base_url, identity
        self.question, self.photo, self.expected = question, photo, expected
        self.typing_s = typing_s  # between the upload finishing and the question being sent
        self.session_id = str(uuid.uuid4())
        self.result = UserResult()
        self._http: aiohttp.ClientSession | None = None
        self._sio: socketio.AsyncClient | None = None
        self._message_id = str(uuid.uuid4())
        self._sent: float | None = None
        self._answered = False
        self._token_times: list[float] = []
        self._text: list[str] = []
        self._done = asyncio.Event()

    async def chat(self) -> UserResult:
        """Connect, upload, ask, and wait until the app is done with the question.

        Done is the `task_end` that follows the end of the `on_message` run step
        (an update of the step whose parent is our message): `task_end` alone
        also comes when `on_chat_start` ends, which may be after we asked."""
        self._http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True)
        )  # unsafe: allows 127.0.0.1
        await self._sign_in()
        await self._post_json("/set-session-cookie", {"session_id": self.session_id})
        await self._connect()
        references = [{"id": await self._upload()}] if self.photo else []
        await asyncio.sleep(self.typing_s if self.photo else 0)
        self._sent, self.result.sent_at = time.perf_counter(), time.time()
        await self._sio.emit(
            "client_message", {"message": self._message(), "fileReferences": references}
        )
        await self._done.wait()
        self.result.total = time.perf_counter() - self._sent
        self.result.finish(self._sent, self._token_times, self._text, self.expected)
        return self.result

    async def close(self) -> None:
        """Close the tab: disconnect without `clear_session`, as a browser tab does."""
        try:
            if self._sio is not None and self._sio.connected:
                await asyncio.wait_for(self._sio.disconnect(), 10)
        except (TimeoutError, socketio.exceptions.SocketIOError):
            pass  # the server may already have dropped us; nothing left to measure
        finally:
            if self._http is not None:
                await self._http.close()

    async def _sign_in(self) -> None:
        """As the login page does when the app offers header sign-in: the access-token cookie it sets
        then goes with the socket.io handshake and the upload."""
        config = await self._get_json("/auth/config")
        if not config.get("requireLogin"):
            return
        if not config.get("headerAuth"):
            raise RuntimeError(
                f"the app requires sign-in but not by header; start it with AUTH_TRUSTED_HEADER={AUTH_HEADER}"
            )
        await self._post_json(
            "/auth/header",
            {},
            headers={AUTH_HEADER: self.identity, PROXY_SECRET_HEADER: PROXY_SECRET},
        )

    async def _connect(self) -> None:
        self._sio = socketio.AsyncClient(reconnection=False, http_session=self._http)
        self._sio.on("*", self._on_event)
        auth = {
            "clientType": "webapp",
            "sessionId": self.session_id,
            "threadId": "",
            "userEnv": json.dumps({}),
            "chatProfile": "",
        }
        await self._sio.connect(
            self.base_url, socketio_path=SOCKET_PATH, auth=auth, wait_timeout=CONNECT_TIMEOUT
        )
        await self._sio.emit("connection_successful")
        await self._sio.emit("fetch_favorites")

    async def _upload(self) -> str:
        form = aiohttp.FormData()
        form.add_field(
            "file", self.photo.data, filename=self.photo.name, content_type=self.photo.mime
        )
        started = time.perf_counter()
        async with self._http.post(
            f"{self.base_url}/project/file", params={"session_id": self.session_id}, data=form
        ) as response:
            if response.status != 200:
                raise RuntimeError(
                    f"upload refused: HTTP {response.status} {await response.text()}"
                )
            reference = await response.json()
        self.result.upload_s = time.perf_counter() - started
        return reference["id"]

    def _message(self) -> dict:
        return {
            "threadId": "",
            "id": self._message_id,
            "name": "User",
            "type": "user_message",
            "output": self.question,
            "createdAt": _now_iso(),
            "metadata": {"location": f"{self.base_url}/"},
        }

    def _on_event(self, event: str, data: object = None) -> None:
        """Every server event, in arrival order. Synchronous on purpose: socket.io
        runs each event's handler in its own task, and one with no await keeps them in order."""
        now = time.perf_counter()
        if self._sent is None or not isinstance(data, dict):
            return
        if (
            event == "update_message"
            and data.get("type") == "run"
            and data.get("parentId") == self._message_id
        ):
            self._answered = data.get("end") is not None  # the run step around on_message has ended
        elif event == "task_end" and self._answered:
            self._done.set()
        elif event in ("stream_start", "stream_token") and data.get("id") != self._message_id:
            token = data.get("output" if event == "stream_start" else "token") or ""
            if token:
                self._token_times.append(now)
                self._text.append(token)
        elif event == "new_message" and data.get("isError"):
            self.result.error = f"error message: {str(data.get('output'))[:120]}"

    async def _get_json(self, path: str) -> dict:
        async with self._http.get(f"{self.base_url}{path}") as response:
            response.raise_for_status()
            return await response.json()

    async def _post_json(
        self, path: str, body: dict, headers: dict[str, str] | None = None
    ) -> None:
        async with self._http.post(
            f"{self.base_url}{path}", json=body, headers=headers
        ) as response:
            response.raise_for_status()


async def direct_user(client: openai.AsyncOpenAI, body: dict, expected: str) -> UserResult:
    """The same request the app sent, straight to the model server."""
    result = UserResult()
    token_times: list[float] = []
    text: list[str] = []
    known = inspect.signature(client.chat.completions.create).parameters
    options = {key: value for key, value in body.items() if key in known}
    extra = {key: value for key, value in body.items() if key not in known}  # vLLM's own
    sent, result.sent_at = time.perf_counter(), time.time()
    stream = await client.chat.completions.create(**options, extra_body=extra)
    try:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                token_times.append(time.perf_counter())
                text.append(chunk.choices[0].delta.content)
    finally:
        await stream.close()
    result.total = time.perf_counter() - sent
    result.finish(sent, token_times, text, expected)
    return result


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
