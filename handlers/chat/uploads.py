"""Photos prepared as soon as their upload arrives, while the person is still typing.

Why: preparing a photo (decode, resize, encode) takes longer the bigger it
arrives — least for what the browser uploads after shrinking it, more for a
whole 12 MP JPEG, most for a 12 MP HEIC, which browsers cannot shrink
(`handlers/media/heic.py`; docs/benchmarks.md, "Preparing a photo", "Preparing
a HEIC" and "Load"). Done when the question is sent, it delays the answer's
first word by as much; started when the upload arrives, it is usually finished
by then.

Only images are prepared ahead: what a video or PDF becomes depends on the
question (the pages asked for, the images left in the budget), so those wait
for the message. A preparation nobody asks for (an attachment removed before
sending) is dropped after `TTL_SECONDS`, or when `CAPACITY` newer ones arrive.

Knows nothing of Chainlit: `chainlit_routes` tells it about uploads, and
`attachments.prepare_uploads` asks it for their results.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from pathlib import Path

from handlers.media.images import PreparedImage, prepare_file
from handlers.media.sniff import Kind, kind_of

# Bounds the memory that prepared photos waiting for their question hold (one
# photo's size: docs/benchmarks.md, "Preparing a photo", the payload table).
CAPACITY = 256
TTL_SECONDS = 600.0


class EarlyPreparations:
    def __init__(
        self, max_bytes: int, *, capacity: int = CAPACITY, ttl_s: float = TTL_SECONDS
    ) -> None:
        self._max_bytes, self._capacity, self._ttl_s = max_bytes, capacity, ttl_s
        self._started: OrderedDict[Path, tuple[float, asyncio.Task]] = OrderedDict()

    def start(self, name: str, path: Path) -> None:
        """Begin preparing the upload at `path` in the background."""
        self._drop_stale()
        task = asyncio.create_task(self._prepare(name, path), name=f"prepare {path.name}")
        self._started[path] = (time.monotonic(), task)

    def take(self, path: Path) -> asyncio.Task[PreparedImage | None] | None:
        """The preparation started for `path`, once: it yields the prepared image,
        None when the upload is not an image, or raises what preparing it raised.
        Whoever takes it awaits or cancels it (cancelling also keeps asyncio from
        reporting a failure nobody looked at), as `_drop_stale` and `close` do."""
        started = self._started.pop(path, None)
        return started[1] if started else None

    def pending(self) -> int:
        """Preparations started and not yet claimed or dropped."""
        return len(self._started)

    async def _prepare(self, name: str, path: Path) -> PreparedImage | None:
        kind: Kind = await asyncio.to_thread(kind_of, path)
        if kind != "image":
            return None
        return await prepare_file(name, path, max_bytes=self._max_bytes)

    def _drop_stale(self) -> None:
        oldest_kept = time.monotonic() - self._ttl_s
        while self._started:
            path, (started_at, task) = next(iter(self._started.items()))
            if started_at >= oldest_kept and len(self._started) < self._capacity:
                break
            del self._started[path]
            task.cancel()

    def close(self) -> None:
        for _, task in self._started.values():
            task.cancel()
        self._started.clear()
