"""CPU-heavy work — decoding photos, rendering PDF pages, sampling video — on
one pool with a thread per core.

Why not `asyncio.to_thread`: its default pool has cores + 4 threads, so on a
2-core server six photos decode at once and every one of them finishes late
(a photo's time alone and in such a burst: docs/benchmarks.md, "Load",
"Reading"). Queued work instead finishes in arrival order, one per core. Light
blocking calls (a file write, a password hash) stay on `asyncio.to_thread`.

The threads run at a lower priority (`NICENESS`): when photos keep both cores
busy, the event loop — other people's streaming answers and text questions —
still gets a core when it needs one, and the photos take what is left.

One job may split itself (`run_split`: a HEIC's tiles) over a second, helper
pool of cores − 1 threads, so that one photo uses every core while these two
pools stay bounded: at most 2 × cores − 1 busy threads, whatever arrives.

A photo decoded while its upload arrives (`run_as_it_arrives`) waits for its
bytes most of the time, so it gets a thread of its own from a third pool of
`ARRIVING_THREADS`, niced too; its CPU goes as fast as the upload comes. When
every one of them is taken the job is not queued: the caller prepares the
photo once it has arrived, as any other (a slow upload cannot hold the photos
behind it). With it, at most 4 × cores − 1 threads decode at once.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache, partial
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


NICENESS = 5  # Linux: the event loop gets ~3/4 of a core it shares with one of these threads
ARRIVING_THREADS = 2 * (os.cpu_count() or 1)  # uploads decoded as they arrive, at once


def _lower_priority() -> None:
    """Linux sets niceness per thread (the id is the thread's own), and a thread
    inherits its creator's: counted from the main thread's, so always NICENESS
    below it. Elsewhere this does nothing."""
    try:
        below = os.getpriority(os.PRIO_PROCESS, os.getpid()) + NICENESS
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), below)
    except (AttributeError, OSError):
        pass


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(
        max_workers=os.cpu_count() or 1, thread_name_prefix="cpu", initializer=_lower_priority
    )


@cache
def _helpers() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(
        max_workers=max((os.cpu_count() or 1) - 1, 1),
        thread_name_prefix="cpu-helper",
        initializer=_lower_priority,
    )


def run_split(parts: Sequence[Callable[[], T]]) -> list[T]:
    """Run `parts` side by side, from inside a CPU job: the first on the calling
    thread, the others on the helper pool; their results in order. Blocking."""
    if len(parts) <= 1 or (os.cpu_count() or 1) < 2:
        return [part() for part in parts]
    others = [_helpers().submit(part) for part in parts[1:]]
    try:
        first = parts[0]()
    finally:
        results = [future.result() for future in others]  # waits for them even if the first failed
    return [first, *results]


@cache
def _arriving() -> tuple[ThreadPoolExecutor, threading.Semaphore]:
    pool = ThreadPoolExecutor(
        max_workers=ARRIVING_THREADS, thread_name_prefix="arriving", initializer=_lower_priority
    )
    return pool, threading.Semaphore(ARRIVING_THREADS)


def run_as_it_arrives(
    function: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> asyncio.Future[T] | None:
    """`function` on a thread of its own, or None when all `ARRIVING_THREADS`
    are taken. A thread counts as taken until `function` returns, even if the
    future was cancelled: cancelling cannot stop a thread."""
    pool, free = _arriving()
    if not free.acquire(blocking=False):
        return None
    job = pool.submit(function, *args, **kwargs)
    job.add_done_callback(lambda _: free.release())
    return asyncio.wrap_future(job)


async def run_cpu(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), partial(function, *args, **kwargs))
