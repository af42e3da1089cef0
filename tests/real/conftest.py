"""The real vLLM server (CPU build, tiny random Pixtral; `tests/real_vllm.py`),
once per test session, and the app started against it.

Every test here is marked `real_vllm`: `bash scripts/test.sh -m "not real_vllm"`
leaves them out on a machine where the 3.5 GB venv is unwelcome; CI runs them.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.real_vllm import RealVLLM

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.real_vllm)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def real_vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealVLLM]:
    """The unit's vLLM: image limit 4, context 65536, an API key."""
    server = RealVLLM(tmp_path_factory.mktemp("real-vllm"), port=free_port())
    server.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
async def real_app(start_app, real_vllm: RealVLLM):
    """Start (or restart) the app against the real server; keywords set variables."""

    async def start(**environ: str) -> None:
        # Short answers unless a test needs a long one: random weights say nothing worth waiting for.
        environ = {"MAX_TOKENS": "24", **environ}
        await start_app(VLLM_BASE_URL=real_vllm.base_url, VLLM_API_KEY=real_vllm.api_key, **environ)

    return start


@pytest.fixture
def running_requests(real_vllm: RealVLLM):
    """vLLM's own count of requests running, polled until it is `expected` (or time is up)."""

    async def poll(expected: float, timeout: float = 30.0) -> float:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            running = await asyncio.to_thread(real_vllm.metric, "vllm:num_requests_running")
            if running == expected or asyncio.get_running_loop().time() > deadline:
                return running
            await asyncio.sleep(0.1)

    return poll
