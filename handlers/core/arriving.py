"""Bytes still arriving, read by a worker thread as they come.

Why: an upload reaches the app over tens to hundreds of milliseconds of the
event loop's time (docs/benchmarks.md, "Decoded as it arrives"); a photo's
decoder that waited for the whole file would start only then. `ArrivingBytes`
lets a thread read the part already here and block for the rest, while the
event loop keeps appending — so the decoding is done when the upload is.

It is a read-only, seekable binary file to its reader (what Pillow's `Image.open`
takes). The writer appends, then calls `finish` (the reader then sees the end of
the file) or `abandon` (the reader gets `Abandoned`, never a short file passed
off as whole). Holds what has arrived in memory, at most `limit` bytes: past
that it abandons itself and frees them.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable

# A reader waiting longer than this for more bytes gives up (`Abandoned`). The
# writer normally ends every arrival itself; this only bounds a stuck one.
WAIT_SECONDS = 60.0


class Abandoned(Exception):
    """The bytes stopped arriving before they were whole."""


class ArrivingBytes(io.RawIOBase):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self._limit = limit
        self._data = bytearray()
        self._position = 0
        self._finished = False
        self._abandoned = False
        self._changed = threading.Condition()

    # --- the writer's side (the event loop) ---

    def append(self, piece: bytes) -> None:
        """Add `piece`; past `limit` bytes in all, abandon instead."""
        with self._changed:
            if self._finished or self._abandoned:
                return
            if len(self._data) + len(piece) > self._limit:
                self._abandon()
                return
            self._data += piece
            self._changed.notify_all()

    def finish(self) -> None:
        """Everything has arrived: the reader reaches the end of the file."""
        with self._changed:
            self._finished = True
            self._changed.notify_all()

    def abandon(self) -> None:
        """Nothing more will arrive and what came is not the whole."""
        with self._changed:
            self._abandon()

    def _abandon(self) -> None:
        if not self._finished:
            self._abandoned, self._data = True, bytearray()
            self._changed.notify_all()

    # --- the reader's side (a worker thread) ---

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Seeking from the end waits for the end."""
        if whence == io.SEEK_END:
            with self._changed:
                self._wait_for(lambda: self._finished)
                offset += len(self._data)
        elif whence == io.SEEK_CUR:
            offset += self._position
        self._position = max(offset, 0)
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        """Up to `size` bytes (all, if negative), waiting until they have arrived
        or the file has ended; b"" at the end."""
        with self._changed:
            if size is None or size < 0:
                self._wait_for(lambda: self._finished)
                end = len(self._data)
            else:
                end = self._position + size
                self._wait_for(lambda: self._finished or len(self._data) >= end)
            piece = bytes(self._data[self._position : end])
        self._position += len(piece)
        return piece

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]  # Buffer in typeshed
        piece = self.read(len(buffer))
        buffer[: len(piece)] = piece
        return len(piece)

    def _wait_for(self, arrived: Callable[[], bool]) -> None:
        """Under the lock: until `arrived()` or the end; `Abandoned` if the bytes stopped."""
        if not self._changed.wait_for(lambda: self._abandoned or arrived(), WAIT_SECONDS):
            raise Abandoned("no more bytes arrived")
        if self._abandoned:
            raise Abandoned("the upload stopped before it was whole")
