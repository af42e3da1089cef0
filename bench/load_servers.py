"""The processes the load benchmark talks to: the fake vLLM server and a Chainlit app.

Owns starting them on 127.0.0.1, waiting until they answer, stopping them, and
the app's resident memory (RSS) over time.

The fake runs in a child process, not a thread of the benchmark: for the
naive client it parses ~6 MB JSON bodies and decodes 12 MP photos, and under
the benchmark's GIL that would stall the clients' clocks. Its recorded request
bodies are summarised over a pipe.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.hermetic import app_environment as clean_environment  # none of this machine's settings

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 90.0  # seconds for `chainlit run` to import, load the tokenizer and listen
STOP_TIMEOUT = 20.0  # seconds after SIGTERM before SIGKILL
RECEIVED_AT = (
    "_bench_received_at"  # stamped into recorded bodies by the fake, removed before leaving it
)


def summarize(body: dict) -> dict:
    """A request's size on the wire, each image's data-URL length (bytes of base64
    sent), when it arrived (wall clock) and the text of its last user message."""
    received_at = body.pop(RECEIVED_AT, None)
    messages = body.get("messages") or []
    parts = [
        part
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
    ]
    users = [message for message in messages if message.get("role") == "user"]
    last = users[-1].get("content") if users else ""
    text = (
        last
        if isinstance(last, str)
        else " ".join(p.get("text", "") for p in last if p.get("type") == "text")
    )
    return {
        "body_bytes": len(json.dumps(body, separators=(",", ":"))),
        "image_bytes": [
            len((p.get("image_url") or {}).get("url") or "")
            for p in parts
            if p.get("type") == "image_url"
        ],
        "received_at": received_at,
        "text": text,
    }


def _timed_fake_class():
    """FakeVLLM stamping each chat request with its arrival time, before any of its own work
    (it decodes every image), so send-to-arrival is the client's share of the time to first token."""
    from tests.fake_vllm import FakeVLLM

    class TimedFake(FakeVLLM):
        def _accept(self, body: dict, authorization: str | None) -> int:
            body[RECEIVED_AT] = time.time()
            return super()._accept(body, authorization)

    return TimedFake


def _serve_fake(connection, ttft: float, token_delay: float, reply: str) -> None:
    """The child process: serve until told to stop, answering requests for what was recorded."""
    sys.path.insert(0, str(ROOT))
    fake = _timed_fake_class()(ttft=ttft, token_delay=token_delay, reply=reply).start()
    connection.send(fake.base_url)
    try:
        while (command := connection.recv()) != "stop":
            count = len(fake.requests)
            taken = fake.requests[:count]
            del fake.requests[:count]
            summaries = [summarize(body) for body in taken]  # also removes the arrival stamps
            connection.send(taken if command == "bodies" else summaries)
    except (EOFError, KeyboardInterrupt):
        pass  # the benchmark went away: stop serving
    finally:
        fake.stop()


class FakeServer:
    """tests.fake_vllm.FakeVLLM in a child process; `take` empties its record of requests."""

    def __init__(self, *, ttft: float, token_delay: float, reply: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(
            target=_serve_fake, args=(child, ttft, token_delay, reply), daemon=True
        )
        self.base_url = ""

    def start(self) -> FakeServer:
        self._process.start()
        if not self._pipe.poll(READY_TIMEOUT):
            raise RuntimeError("the fake vLLM server did not start")
        self.base_url = self._pipe.recv()
        return self

    def take(self, *, bodies: bool = False) -> list[dict]:
        """The requests received since the last call: summaries, or the full bodies."""
        self._pipe.send("bodies" if bodies else "summaries")
        return self._pipe.recv()

    def stop(self) -> None:
        if self._process.is_alive():
            self._pipe.send("stop")
            self._process.join(STOP_TIMEOUT)
        if self._process.is_alive():
            self._process.kill()


@dataclass
class AppProcess:
    """A Chainlit app started with `chainlit run SCRIPT --headless` from the project root,
    the command scripts/start.sh ends with (start.sh itself runs pip first)."""

    script: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None

    def start(self) -> AppProcess:
        command = [
            str(ROOT / ".venv/bin/chainlit"),
            "run",
            self.script,
            "--headless",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_ready()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss(self) -> int:
        """Resident bytes of the app and any children it started."""
        process = psutil.Process(self.process.pid)
        return process.memory_info().rss + sum(
            c.memory_info().rss for c in process.children(recursive=True)
        )

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        """SIGTERM lets Chainlit run its shutdown, which deletes `.files/` (the uploads)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.script} exited with {self.process.returncode}; see {self.log_path}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/auth/config", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"{self.script} did not answer within {READY_TIMEOUT:.0f} s; see {self.log_path}"
        )


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process and its children so far."""
    process = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in (process, *process.children(recursive=True)))


class CpuMeter:
    """CPU seconds spent while it was open: by the app, and by every process on
    the machine outside the benchmark's own process tree (the noise of a shared box)."""

    def __init__(self, app_pid: int | None = None) -> None:
        self.app_pid = app_pid
        self.app = self.others = 0.0

    def __enter__(self) -> CpuMeter:
        self._start = self._read()
        return self

    def __exit__(self, *exc_info: object) -> None:
        busy, app, ours = (end - start for end, start in zip(self._read(), self._start))
        self.app, self.others = app, max(busy - ours, 0.0)

    def _read(self) -> tuple[float, float, float]:
        times = psutil.cpu_times()
        busy = sum(times) - times.idle - getattr(times, "iowait", 0.0)
        app = cpu_seconds(self.app_pid) if self.app_pid else 0.0
        return (
            busy,
            app,
            cpu_seconds(os.getpid()),
        )  # the benchmark, the fake and the app are all in its tree


def app_environment(vllm_base_url: str, extra: dict[str, str]) -> dict[str, str]:
    """The caller's environment without its settings (`tests.hermetic`), pointed at the fake;
    `extra` (from --app-env) goes on top, e.g. to try an allocator setting."""
    env = clean_environment(PYTHONUNBUFFERED="1")
    env.pop("CI", None)  # with CI set, `chainlit run` rewrites OPENAI_API_KEY
    env.update(VLLM_BASE_URL=vllm_base_url, **extra)
    return env


class Profiler:
    """py-spy recording the app while open (`--profile`): raw collapsed stacks, one
    line per distinct stack with its sample count, for flamegraph.pl or `top`."""

    def __init__(self, pid: int, path: Path, rate: int = 100) -> None:
        self.path, self.rate = path, rate
        self._command = [
            str(ROOT / ".venv/bin/py-spy"),
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(path),
        ]
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> Profiler:
        self._process = subprocess.Popen(
            self._command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(0.5)  # attached before the first user arrives
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            self._process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def breakdown(self) -> list[tuple[str, float]]:
        """Seconds of busy samples per part of the app, busiest first. A sample goes to
        the first rule that matches a frame, reading from the innermost frame out."""
        if not self.path.exists():
            raise RuntimeError("py-spy wrote no profile: it needs ptrace (root, or CAP_SYS_PTRACE)")
        seconds: dict[str, float] = {}
        for line in self.path.read_text().splitlines():
            stack, _, samples = line.rpartition(" ")
            frames = stack.split(";")
            if any(idle in frames[-1] for idle in _IDLE):
                continue
            part = next(
                (
                    label
                    for frame in reversed(frames)
                    for marks, label in _PARTS
                    if any(mark in frame for mark in marks)
                ),
                "other",
            )
            seconds[part] = seconds.get(part, 0.0) + int(samples) / self.rate
        return sorted(seconds.items(), key=lambda item: -item[1])


# Innermost frames of a thread that is waiting, not working (py-spy cannot tell
# for waits inside C, such as SimpleQueue.get).
_IDLE = (
    "EpollSelector.select",
    "Condition.wait",
    "concurrent/futures/thread.py:81)",
    "aiosqlite/core.py:59)",
    "Event.wait",
    "Thread.join",
)
_PARTS = (
    (("handlers/media/images.py", "PIL/"), "image preparation (handlers/media/images.py, Pillow)"),
    (("handlers/chat/tokens.py", "mistral_common/"), "prompt token counting (mistral_common)"),
    (
        ("handlers/storage/files.py", "handlers/chat/history.py"),
        "files: storage copy, prepared-image store",
    ),
    (
        ("aiosqlite/", "sqlalchemy/", "chainlit/data/"),
        "history: Chainlit data layer (SQLAlchemy, SQLite)",
    ),
    (
        (
            "upload_file",
            "multipart/",
            "starlette/datastructures.py",
            "starlette/formparsers.py",
            "tempfile.py",
        ),
        "upload endpoint (multipart, temp file)",
    ),
    (("openai/", "httpx", "httpcore"), "model client (openai, httpx)"),
    (("jwt/", "chainlit/auth/", "argon2"), "sign-in (JWT)"),
    (
        ("socketio/", "engineio/", "wsproto/", "chainlit/emitter.py", "stream_token"),
        "socket.io: events and tokens to browsers",
    ),
    (("uvicorn/", "starlette/", "fastapi/"), "HTTP server (uvicorn, Starlette)"),
    (("run_chainlit",), "event loop: callbacks, socket reads and writes"),
    (("chainlit/", "chainlit_app.py", "handlers/"), "Chainlit and app, other"),
)


class RssSampler:
    """Samples an app's RSS in the background; `peak` is the largest sample."""

    def __init__(self, app: AppProcess, interval: float = 0.05) -> None:
        self.app, self.interval, self.peak = app, interval, 0
        self._task: asyncio.Task | None = None

    def __enter__(self) -> RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._task.cancel()
        self.peak = max(self.peak, self.app.rss())

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.app.rss())
            await asyncio.sleep(self.interval)
