"""Memory of the app when one message names one big upload many times.

    .venv/bin/python bench/repeated_references.py [--mb 20] [--repeats 500] [--limit-gb 3]

Not a test: it prints the app process's resident memory before the attack and
its peak while the app handles it, and how many times Chainlit read and saved
the file (an `element` event each). The
app runs in this process (its services as at start-up, Chainlit's ASGI app
under uvicorn on 127.0.0.1) against the tests' fake vLLM; one signed-in tab
uploads a file of `--mb` MB and sends one message naming it `--repeats` times
(tests/security/conftest.py's Tab). Bounded: past `--limit-gb` the script
stops the process, so an app without handlers/web/message_guard.py cannot take
the machine down.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=500)
    parser.add_argument("--limit-gb", type=float, default=3.0)
    args = parser.parse_args()
    asyncio.run(attack(args.mb, args.repeats, int(args.limit_gb * 2**30)))


class PeakRss(threading.Thread):
    def __init__(self, limit: int) -> None:
        super().__init__(daemon=True)
        self.process, self.limit, self.peak, self.running = psutil.Process(), limit, 0, True

    def run(self) -> None:
        while self.running:
            rss = self.process.memory_info().rss
            self.peak = max(self.peak, rss)
            if rss > self.limit:
                print(f"stopped: {rss / 2**20:.0f} MB is past the limit", flush=True)
                os._exit(2)
            time.sleep(0.02)


async def attack(mb: int, repeats: int, limit: int) -> None:
    import uvicorn

    from tests.fake_vllm import FakeVLLM

    fake = FakeVLLM(reply="ok")
    fake.start()
    data = tempfile.mkdtemp(prefix="repeated-refs-")
    os.environ.update(
        VLLM_BASE_URL=fake.base_url,
        DATA_DIR=data,
        VLLM_CONNECT_RETRIES="1",
        CHAINLIT_AUTH_SECRET="bench-secret-" + "x" * 40,
        CHAINLIT_APP_ROOT=str(Path.cwd()),
    )
    from chainlit.server import app

    import chainlit_app
    from tests.security.conftest import LiveApp, Tab

    await chainlit_app.on_app_startup()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="error")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    live = LiveApp(f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}")
    tab = Tab(live, "mallory")
    await tab.connect()
    file_id = await tab.upload("big.jpg", os.urandom(mb * 2**20), "image/jpeg")
    watch = PeakRss(limit)
    before = watch.process.memory_info().rss
    watch.start()
    asked = await tab.send("What is this?", [file_id] * repeats)
    await tab.answered(asked)
    saved, count = [], -1
    while len(saved) != count:  # Chainlit saves elements in a task of its own: until it stops
        count = len(saved)
        await asyncio.sleep(1)
        saved = await live.sql('SELECT "id" FROM elements WHERE "forId" = :id', id=asked)
    watch.running = False
    sent = sum(1 for event, _ in tab.events if event == "element")
    print(
        f"{mb} MB file named {repeats} times: RSS before {before / 2**20:.0f} MB, "
        f"peak {watch.peak / 2**20:.0f} MB; file read and saved {sent} time(s)"
    )
    await tab.close()
    server.should_exit = True
    await serving
    await chainlit_app.on_app_shutdown()
    fake.stop()


if __name__ == "__main__":
    main()
