"""Waiting for something to happen in a test: poll a condition against a deadline.

Why not `sleep(0.5)`: a fixed sleep is a guess at how long the thing takes —
too short on a busy machine (the test fails by chance), too long everywhere
else (the suite gets slower), and it never says what it was waiting for. A
poll returns as soon as the condition holds and, past its deadline, fails
naming what never happened. The deadlines are generous on purpose: they only
matter when something is wrong.

`Watched` makes work on other threads observable: how many calls of a function
are running, and how each one ended.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

POLL_S = 0.02


async def eventually(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Return once `condition()` is true; `what` says what it means, for the failure."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting until {what}")
        await asyncio.sleep(POLL_S)


def wait_until(condition: Callable[[], object], what: str, timeout: float = 15.0) -> None:
    """`eventually` for code with no event loop (threads, Playwright's sync API)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting until {what}")
        time.sleep(POLL_S)


class Watched:
    """A function wrapped to count its calls from any thread: `running` now, and
    how each finished call ended in `ended` ("returned" or the exception's name),
    so a test can wait for worker threads to stop instead of guessing how long."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self._function = function
        self._lock = threading.Lock()
        self.running = 0
        self.ended: list[str] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.running += 1
        outcome = "returned"
        try:
            return self._function(*args, **kwargs)
        except BaseException as error:
            outcome = type(error).__name__
            raise
        finally:
            with self._lock:
                self.running -= 1
                self.ended.append(outcome)
