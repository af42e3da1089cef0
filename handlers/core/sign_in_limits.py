"""How often anyone may try a password: LOGIN_ATTEMPTS_PER_MINUTE per client
address and per user name, in any sliding minute.

Why: every attempt costs an argon2 hash (64 MiB, three passes, four lanes) on
purpose, which also makes a flood of attempts a way to take the server's cores.
An attempt over the limit is refused before anything is hashed. Counting per
name as well stops one person guessing another's password from many addresses;
per address stops one client trying many names.

Attempts within the limits still queue for the one thread that checks
passwords (`handlers/storage/users.py`); at most LOGIN_MAX_WAITING may wait at once,
and more are refused unhashed too. A flood from addresses the limits cannot
tell apart (a local process forging X-Real-IP) then costs one core's worth of
hashing at most, and a real person is told to retry in seconds instead of
queueing behind it for half a minute.

Memory stays bounded: keys whose attempts are all older than a minute are
dropped, and each key holds at most `per_minute` times.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager

WINDOW_SECONDS = 60.0
_PRUNE_EVERY = 1024  # attempts between sweeps of keys that went quiet


class AttemptLimiter:
    def __init__(
        self, per_minute: int, max_waiting: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._per_minute = per_minute
        self._max_waiting = max_waiting
        self._clock = clock
        self._attempts: dict[Hashable, deque[float]] = {}
        self._since_prune = 0
        self._waiting = 0

    @contextmanager
    def waiting(self) -> Iterator[bool]:
        """Yields False when LOGIN_MAX_WAITING attempts are already in progress
        (the caller refuses this one); True, counted until the block ends, otherwise."""
        if self._waiting >= self._max_waiting:
            yield False
            return
        self._waiting += 1
        try:
            yield True
        finally:
            self._waiting -= 1

    def try_attempt(self, *keys: Hashable) -> float:
        """0 and the attempt counted for every key; else the seconds until the
        busiest key has room again, and nothing counted."""
        now = self._clock()
        self._prune(now)
        wait = max((self._wait(key, now) for key in keys), default=0.0)
        if wait > 0:
            return wait
        for key in keys:
            self._attempts.setdefault(key, deque()).append(now)
        return 0.0

    def _wait(self, key: Hashable, now: float) -> float:
        times = self._attempts.get(key)
        if times is None:
            return 0.0
        while times and times[0] <= now - WINDOW_SECONDS:
            times.popleft()
        if len(times) < self._per_minute:
            return 0.0
        return times[0] + WINDOW_SECONDS - now

    def _prune(self, now: float) -> None:
        self._since_prune += 1
        if self._since_prune < _PRUNE_EVERY:
            return
        self._since_prune = 0
        cutoff = now - WINDOW_SECONDS
        for key in [k for k, times in self._attempts.items() if not times or times[-1] <= cutoff]:
            del self._attempts[key]
