"""CPU-heavy work — decoding photos, rendering PDF pages, sampling video — on
one pool with a thread per core.

Why not `asyncio.to_thread`: its default pool has cores + 4 threads, so on a
2-core server six photos decode at once and every one of them finishes late
(the load benchmark measured 70 ms alone, 170 ms in a burst). Queued work
instead finishes in arrival order, one per core. Light blocking calls (a file
write, a password hash) stay on `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache, partial
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="cpu")


async def run_cpu(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), partial(function, *args, **kwargs))
