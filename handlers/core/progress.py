"""How far long work has got, told from worker threads to the event loop — and
the stop button told back to them.

Owns: the `Progress` item `handlers.chat.turn` yields beside `Notice`s and text, the
`Meter` a worker thread moves as it samples frames or renders pages, and the
`Board` that carries a meter's news safely onto the event loop, throttled, and
stops every meter when the work it follows is cancelled. Does not own what the
work is (`handlers.media.video`, `handlers.media.documents`, `handlers.media.links`) or how
progress looks (`handlers.web.answer_view`).

Why a flag: a cancelled `asyncio` future does not stop the thread running its
work; a worker that checks `Meter.advance`/`check` between frames or pages
stops at the next one (`WorkCancelled`), so stopping frees the cores at once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

MIN_INTERVAL_S = 0.3  # between two updates of one piece of work: a few a second at most


class WorkCancelled(Exception):
    """Raised in a worker thread at its next check once its work was stopped."""


@dataclass(frozen=True)
class Progress:
    """One piece of work's status: `id` names it (an upload's or a link's key),
    `key` and `params` are what to say (a translation key). A `final` one
    says how the work ended; otherwise a `Notice` whose `about` is `id` does,
    or, for work that failed, its refusal."""

    id: str
    key: str
    params: dict[str, Any] = field(default_factory=dict)
    final: bool = False


class Meter:
    """A worker thread's handle on one piece of work. Thread-safe: a video's
    two halves are sampled on two threads and move the same meter."""

    def __init__(self, board: Board | None, work_id: str, key: str, params: dict[str, Any]) -> None:
        self._board, self._id, self._key, self._params = board, work_id, key, params
        self._lock = threading.Lock()
        self._done = self._total = 0
        self._last_sent: float | None = None

    def start(self, total: int) -> None:
        """Begin (or begin again) counting to `total`; always told."""
        with self._lock:
            self._done, self._total = 0, total
            self._last_sent = None
        self.advance(0)

    def advance(self, steps: int = 1) -> None:
        """`steps` more done. Told unless the last update was under
        `MIN_INTERVAL_S` ago (the first and the last always are). Raises
        `WorkCancelled` once the work was stopped."""
        self.check()
        if self._board is None:
            return
        with self._lock:
            self._done = min(self._total, self._done + steps)
            now = self._board.clock()
            due = (
                self._last_sent is None
                or self._done == self._total
                or now - self._last_sent >= MIN_INTERVAL_S
            )
            if not due:
                return
            self._last_sent = now
            params = {**self._params, "done": self._done, "total": self._total}
        self._board.post(Progress(self._id, self._key, params))

    def check(self) -> None:
        if self._board is not None and self._board.stopped.is_set():
            raise WorkCancelled


SILENT = Meter(None, "", "", {})  # for work nobody follows (a resume, a test)


class Board:
    """Progress of one message's work, from any thread to the loop that made it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.stopped = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Progress] = asyncio.Queue()

    def meter(self, work_id: str, key: str, **params: Any) -> Meter:
        return Meter(self, work_id, key, params)

    def post(self, item: Progress) -> None:
        """Safe from any thread, and from the loop itself."""
        if self.stopped.is_set():
            return
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop closed (the app is shutting down)
            self.stopped.set()

    async def follow(self, work: Awaitable[T], result: list[T]) -> AsyncIterator[Progress]:
        """Yield progress while `work` runs, then put its result in `result`.
        If the consumer is cancelled (the stop button), or stops early, the
        work is cancelled and every meter stops at its next check."""
        task = asyncio.ensure_future(work)
        getter: asyncio.Future | None = None
        try:
            while not task.done():
                getter = asyncio.ensure_future(self._queue.get())
                await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
            while not self._queue.empty():
                yield self._queue.get_nowait()
            result.append(task.result())
        finally:
            if getter is not None and not getter.done():
                getter.cancel()
            if not task.done():
                self.stopped.set()
                task.cancel()
