"""The app served for real on a loopback port, and browser tabs that attack it.

`live_app` starts the app's services (as `on_app_startup` does) and Chainlit's
ASGI app under uvicorn on 127.0.0.1, port 0, in the test's event loop
(Chainlit's lifespan is off: its shutdown ends the process). A `Tab` is what a
signed-in person's browser does, spoken by hand: the access-token cookie, the
socket.io connection (python-socketio's client, as bench/load_clients.py), the
upload route, and whatever the person cares to put in the messages.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import chainlit.data
import pytest
import socketio
import uvicorn
from chainlit.auth import create_jwt
from chainlit.server import app as chainlit_server
from chainlit.server import sio
from chainlit.user import User

from tests.waiting import eventually

SOCKET_PATH = "/ws/socket.io"
WAIT_S = 30  # a guard against hanging, not a timing claim


@dataclass
class LiveApp:
    base_url: str

    @property
    def layer(self):
        return chainlit.data.get_data_layer()

    async def sql(self, query: str, **params) -> list[dict]:
        rows = await self.layer.execute_sql(query, params)
        return rows if isinstance(rows, list) else []

    async def rows(self, query: str, **params) -> list[dict]:
        """Once there are some: Chainlit saves steps in tasks of their own."""
        deadline = time.monotonic() + WAIT_S
        while not (found := await self.sql(query, **params)) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return found


@pytest.fixture
async def live_app(start_app, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """Environment for the app from `@pytest.mark.app_env(NAME=value)`, if any."""
    marker = request.node.get_closest_marker("app_env")
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "security-tests-secret-" + "x" * 32)
    await start_app(**(marker.kwargs if marker else {}))
    monkeypatch.setattr(
        sio.eio, "ping_interval", 1
    )  # a closed socket's ping task ends within 1 s, not 25
    server = uvicorn.Server(
        uvicorn.Config(
            chainlit_server, host="127.0.0.1", port=0, lifespan="off", log_level="warning"
        )
    )
    serving = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, "uvicorn is serving")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveApp(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        await serving
        if (
            sio.eio.service_task_handle is not None
        ):  # engine.io's ping monitor, started by a connection
            await sio.shutdown()
            sio.eio.service_task_event, sio.eio.start_service_task = (
                None,
                True,
            )  # the next one restarts it


def cookie_for(identifier: str) -> str:
    return f"access_token={create_jwt(User(identifier=identifier))}"


class Tab:
    """One person's browser tab; `events` are what the server sent, in order."""

    def __init__(self, app: LiveApp, identifier: str) -> None:
        self.app, self.identifier = app, identifier
        self.session_id = str(uuid.uuid4())
        self.events: list[tuple[str, object]] = []
        self.headers = {"Cookie": cookie_for(identifier)}
        self.http = aiohttp.ClientSession(headers=self.headers)
        self.sio = socketio.AsyncClient(reconnection=False, http_session=self.http)
        self.sio.on("*", lambda event, data=None: self.events.append((event, data)))

    async def connect(self, origin: str | None = None, thread_id: str = "") -> None:
        auth = {
            "clientType": "webapp",
            "sessionId": self.session_id,
            "threadId": thread_id,
            "userEnv": json.dumps({}),
            "chatProfile": "",
        }
        headers = {**self.headers, **({"Origin": origin} if origin else {})}
        await self.sio.connect(
            self.app.base_url,
            socketio_path=SOCKET_PATH,
            auth=auth,
            headers=headers,
            transports=["websocket"],
            wait_timeout=WAIT_S,
        )
        await self.sio.emit("connection_successful")

    async def close(self) -> None:
        """As a tab whose chat is over: Chainlit forgets the session at once, not in an hour."""
        if self.sio.connected:
            await self.sio.call("clear_session", timeout=WAIT_S)  # answered once handled
            await self.sio.disconnect()
        await self.http.close()

    async def upload(self, name: str, data: bytes, mime: str) -> str:
        form = aiohttp.FormData()
        form.add_field("file", data, filename=name, content_type=mime)
        async with self.http.post(
            f"{self.app.base_url}/project/file", params={"session_id": self.session_id}, data=form
        ) as response:
            assert response.status == 200, await response.text()
            return (await response.json())["id"]

    async def send(self, text: str, file_ids=(), **fields) -> str:
        """A message as the page sends it; `fields` replace what the page would put in it."""
        message = {
            "threadId": "",
            "id": str(uuid.uuid4()),
            "name": "User",
            "type": "user_message",
            "output": text,
            "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "metadata": {"location": f"{self.app.base_url}/"},
            **fields,
        }
        await self.sio.emit(
            "client_message", {"message": message, "fileReferences": [{"id": i} for i in file_ids]}
        )
        return message["id"]

    async def answered(self, message_id: str) -> None:
        """Until the app is done with `message_id` (the run step around on_message ends)."""
        await self.wait_for(
            lambda e, d: (
                e == "update_message"
                and isinstance(d, dict)
                and d.get("type") == "run"
                and d.get("parentId") == message_id
                and d.get("end")
            )
        )

    async def wait_for(self, happened: Callable[[str, object], bool]) -> tuple[str, object]:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            for event, data in list(self.events):
                if happened(event, data):
                    return event, data
            await asyncio.sleep(0.02)
        raise AssertionError(f"not seen; events: {[e for e, _ in self.events]}")

    def said(self) -> list[str]:
        """The texts of the messages the app sent (new or streamed), in order."""
        return [
            d.get("output", "")
            for e, d in self.events
            if e in ("new_message", "stream_start")
            and isinstance(d, dict)
            and d.get("type") != "user_message"
        ]


@pytest.fixture
async def tabs(live_app: LiveApp):
    """`await tabs("alice")`: a connected tab of a signed-in person; all closed afterwards."""
    opened: list[Tab] = []

    async def open_tab(identifier: str, **connect) -> Tab:
        tab = Tab(live_app, identifier)
        opened.append(tab)
        await tab.connect(**connect)
        return tab

    yield open_tab
    for tab in opened:
        await tab.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "app_env(**variables): environment for live_app")
