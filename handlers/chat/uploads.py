"""Photos prepared as soon as their upload arrives, while the person is still typing.

Why: preparing a photo (decode, resize, encode) takes longer the bigger it
arrives — least for what the browser uploads after shrinking it, more for a
whole 12 MP JPEG, most for a 12 MP HEIC, which browsers cannot shrink
(`handlers/media/heic.py`; docs/benchmarks.md, "Preparing a photo", "Preparing
a HEIC" and "Load"). Done when the question is sent, it delays the answer's
first word by as much; started when the upload arrives, it is usually finished
by then.

A JPEG is prepared from its first bytes on (`Arrival`): its decoder reads
the upload while it arrives (`handlers.core.arriving`), so the photo is mostly
decoded when the upload ends — the whole 12 MP photos of phones and upload
clients, which the page script does not shrink. Other files, and JPEGs that
find no free thread (`workers.run_as_it_arrives`), start when they have arrived.

Only images are prepared ahead: what a video or PDF becomes depends on the
question (the pages asked for, the images left in the budget), so those wait
for the message. A preparation nobody asks for (an attachment removed before
sending) is dropped after `TTL_SECONDS`, or when `CAPACITY` newer ones arrive.

Knows nothing of Chainlit: `chainlit_routes` tells it about uploads (each
piece as it arrives, then where it was stored), and
`attachments.prepare_uploads` asks it for their results.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from pathlib import Path

from handlers.core.arriving import ArrivingBytes
from handlers.core.workers import run_as_it_arrives
from handlers.media.images import PreparedImage, prepare_arriving, prepare_file
from handlers.media.sniff import Kind, kind_of

# Bounds the memory that prepared photos waiting for their question hold (one
# photo's size: docs/benchmarks.md, "Preparing a photo", the payload table).
CAPACITY = 256
TTL_SECONDS = 600.0
JPEG_START = b"\xff\xd8\xff"  # every JPEG's first bytes (SOI, then a marker)
Preparation = asyncio.Task[PreparedImage | None]


class Arrival:
    """One upload as it arrives: if it starts as a JPEG and a thread is free, it
    is prepared while the rest comes (`prepare_arriving`); otherwise nothing is
    done until it has arrived. Fed and ended on the event loop."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._bytes: ArrivingBytes | None = None
        self._declined = False
        self.task: Preparation | None = None

    def feed(self, name: str, piece: bytes) -> None:
        if self._bytes is None and not self._declined:
            self._declined = not (piece.startswith(JPEG_START) and self._begin(name))
        if self._bytes is not None:
            self._bytes.append(piece)

    def finish(self) -> None:
        """The whole upload has arrived."""
        if self._bytes is not None:
            self._bytes.finish()

    def abandon(self) -> None:
        """The upload stopped short, or was refused: its preparation ends with
        None (or, if whole already, is let go) and nobody is to take it."""
        if self._bytes is not None:
            self._bytes.abandon()
        if self.task is not None:
            self.task.cancel()

    def _begin(self, name: str) -> bool:
        arriving = ArrivingBytes(self._max_bytes)
        future = run_as_it_arrives(prepare_arriving, name, arriving, max_bytes=self._max_bytes)
        if future is None:
            return False
        self._bytes, self.task = arriving, asyncio.ensure_future(_awaited(future))
        return True


async def _awaited(future: asyncio.Future[PreparedImage | None]) -> PreparedImage | None:
    """A task around the thread's future, like every other preparation here."""
    return await future


class EarlyPreparations:
    def __init__(
        self, max_bytes: int, *, capacity: int = CAPACITY, ttl_s: float = TTL_SECONDS
    ) -> None:
        self._max_bytes, self._capacity, self._ttl_s = max_bytes, capacity, ttl_s
        self._started: OrderedDict[Path, tuple[float, Preparation]] = OrderedDict()

    def follow(self) -> Arrival:
        """An upload is arriving: feed it to what this returns, then `stored`."""
        return Arrival(self._max_bytes)

    def stored(self, arrival: Arrival, name: str, path: Path) -> None:
        """The upload `arrival` followed is whole, at `path`: what began preparing
        it is what `take(path)` gives; if nothing did, preparing begins now."""
        arrival.finish()
        if arrival.task is None:
            self.start(name, path)
        else:
            self._keep(path, arrival.task)

    def start(self, name: str, path: Path) -> None:
        """Begin preparing the upload at `path` in the background."""
        self._keep(
            path, asyncio.create_task(self._prepare(name, path), name=f"prepare {path.name}")
        )

    def take(self, path: Path) -> Preparation | None:
        """The preparation started for `path`, once: it yields the prepared image,
        None when the upload is not an image, or raises what preparing it raised.
        Whoever takes it awaits or cancels it (cancelling also keeps asyncio from
        reporting a failure nobody looked at), as `_drop_stale` and `close` do."""
        started = self._started.pop(path, None)
        return started[1] if started else None

    def pending(self) -> int:
        """Preparations started and not yet claimed or dropped."""
        return len(self._started)

    def _keep(self, path: Path, task: Preparation) -> None:
        self._drop_stale()
        self._started[path] = (time.monotonic(), task)

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
