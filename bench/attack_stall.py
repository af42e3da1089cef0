"""Does one colleague's hostile message hold up everyone else? A bounded measurement.

    .venv/bin/python bench/attack_stall.py [--attack pages|links] [--repeat 3]
        [--max-message-chars N]

Not a test (no stopwatch assertions): it prints numbers for docs/security.md.
Everything runs in one process on 127.0.0.1 and stops by itself: the app's
callbacks in a real Chainlit websocket context (tests/chainlit_harness.py),
against the fake vLLM server (tests/fake_vllm.py) answering after 50 ms.

Per repetition: person B asks a text question alone (baseline first token),
then person A sends the attack and B asks the same question 20 ms later, and
every 100 ms after, at least three times and for as long as A's message is
being handled; a delay counts from when B meant to send.
Printed: B's worst first-token delay with the attack minus without, the longest
event-loop stall seen by a 5 ms ticker, and the process's peak RSS growth.

- `pages`: "please read pages 1-1000, 1-1000, …" ×80 000 (640 KB), the
  attack review's message. `--max-message-chars 1000000000` switches the
  length cap off, to see what the page-range parser alone costs.
- `links`: a message with an image link to a loopback server answering
  `Content-Encoding: gzip, gzip` (591 bytes → 256 MiB); the link guard is
  told to allow loopback for this run only.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gzip
import inspect
import os
import resource
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("CHAINLIT_APP_ROOT", str(Path(__file__).resolve().parent.parent))

PAGES_BOMB = "please read pages 1-1000, " + "1-1000, " * 80_000
QUESTIONS_DURING = 3
GZIP_BOMB = gzip.compress(gzip.compress(b"\0" * 256 * 2**20, 9), 9)


class Bomb(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Encoding", "gzip, gzip")
        self.send_header("Content-Length", str(len(GZIP_BOMB)))
        self.end_headers()
        self.wfile.write(GZIP_BOMB)

    def log_message(self, *_: object) -> None:
        pass


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Ticker:
    """The longest gap between 5 ms ticks: how long the event loop was blocked."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            self.worst = max(self.worst, now - last - 0.005)
            last = now

    def __enter__(self) -> Ticker:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        self._task.cancel()


async def first_token(chat, text: str, planned: float) -> float:
    """Seconds from `planned` (when the person pressed Enter, by the wall clock)
    to the first streamed token (or the reply): a blocked event loop that makes
    the send itself late counts too."""
    seen = len(chat.events)
    chat.enter()
    task = asyncio.create_task(chat.send(text))
    while not any(e in ("stream_token", "new_message") for e, _ in chat.events[seen:]):
        if task.done():
            break
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - planned
    await task
    return elapsed


async def questions_until(chat, done: asyncio.Task, start: float, every: float = 0.1) -> float:
    """B asks every `every` s from `start` (planned times) until `done` has
    ended, at least three times; the worst first-token delay."""
    worst, ended = 0.0, []
    done.add_done_callback(lambda _: ended.append(time.perf_counter()))
    for n in range(10_000):
        planned = start + n * every
        if n >= QUESTIONS_DURING and ended and planned > ended[0]:
            return worst
        await asyncio.sleep(max(0.0, planned - time.perf_counter()))
        worst = max(worst, await first_token(chat, "What is this?", planned))
    return worst


async def one_round(attack_text: str) -> tuple[float, float, float, str]:
    from tests.chainlit_harness import ChatHarness

    a, b = ChatHarness(), ChatHarness()
    await a.start()
    await b.start()
    baseline = await first_token(b, "What is this?", time.perf_counter())
    with Ticker() as ticker:
        a.enter()
        start = time.perf_counter() + 0.02
        attack = asyncio.create_task(a.send(attack_text))
        during = await questions_until(b, attack, start)
        await attack
    return baseline, during, ticker.worst, " | ".join(t[:90] for t in a.texts()[-2:])


async def main(args: argparse.Namespace) -> None:
    import chainlit_app
    from handlers.chat import attachments
    from handlers.media import links
    from tests.fake_vllm import FakeVLLM

    fake = FakeVLLM(reply="Fine.", ttft=0.05)
    fake.start()
    data = tempfile.mkdtemp(prefix="attack-stall-")
    os.environ.update(VLLM_BASE_URL=fake.base_url, DATA_DIR=data, VLLM_CONNECT_RETRIES="1")
    if args.max_message_chars:
        os.environ["MAX_MESSAGE_CHARS"] = str(args.max_message_chars)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Bomb)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    if args.attack == "links":
        port = server.server_address[1]
        reach = {"allow": frozenset({"127.0.0.1"})}
        if "ports" in inspect.signature(links.fetch_link).parameters:  # not before the port check
            reach["ports"] = links.ALLOWED_PORTS | {port}
        attachments.fetch_link = functools.partial(links.fetch_link, **reach)
        text = f"what is in http://127.0.0.1:{port}/bomb.png"
    else:
        text = PAGES_BOMB
    await chainlit_app.on_app_startup()
    try:
        before = rss_peak_mb()
        print(
            f"attack: {args.attack} ({len(text):,} characters); RSS peak at start {before:.0f} MB"
        )
        for n in range(args.repeat):
            baseline, during, stall, said = await one_round(text)
            print(
                f"round {n + 1}: B's first token {baseline * 1000:.0f} ms alone, "
                f"{during * 1000:.0f} ms during the attack (+{(during - baseline) * 1000:.0f} ms); "
                f"longest event-loop stall {stall * 1000:.0f} ms; "
                f"RSS peak +{rss_peak_mb() - before:.0f} MB"
            )
        print(f"A was told: {said!r}")
    finally:
        await chainlit_app.on_app_shutdown()
        server.shutdown()
        fake.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attack", choices=("pages", "links"), default="pages")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-message-chars", type=int, default=0)
    asyncio.run(main(parser.parse_args()))
