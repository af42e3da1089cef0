"""Pictures the browser cannot show — HEIC, TIFF — served as the app prepared them,
and uploads the browser could not name shown as the pictures they are.

Why: an iPhone's photos are HEIC, which Chrome and Firefox cannot display, so
the person's own message showed a broken image where their photo was (the model
got it fine). The files stay as uploaded; only what the chat page is served
changes: the picture as the model sees it (upright, ≤ 1024 px, JPEG or PNG,
`images.prepare_image`), which is plenty for a chat bubble.

Renditions are made on first view, in a worker thread (a 12 MP HEIC is the
slowest to prepare: docs/benchmarks.md, "Preparing a HEIC"), so the latest
`CACHE_ENTRIES` are kept in memory, keyed by the file's path, size and
modification time, rather than made again each time the chat is scrolled.

Chainlit draws an upload as a picture only when the browser called it `image/…`.
A browser that cannot name the type (an upper-case `.HEIC` in Chromium, a HEIC
on Windows without HEIF support) says `application/octet-stream`, and the
person's photo showed as a file chip though the model got it. `displayed_type`
names such an upload by its bytes.

Knows nothing of Chainlit or HTTP: `file_routes` (history) and
`chainlit_routes` (a live chat's uploads) ask `rendition_for`, and
`chainlit_routes` asks `displayed_type` as each upload arrives.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import filetype

from handlers.core.errors import InvalidAttachment
from handlers.core.workers import run_cpu
from handlers.media.images import PreparedImage, prepare_image

# Bounds the cache's memory (one prepared photo's size: docs/benchmarks.md,
# "Preparing a photo", the payload table).
CACHE_ENTRIES = 64
NOT_SHOWN_BY_BROWSERS = frozenset({"image/heic", "image/heif", "image/tiff"})
SHOWN_AS_IS = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"})
MAX_BYTES = 1 << 30  # the upload limits were applied when the file arrived

_cache: OrderedDict[tuple[str, int, int], PreparedImage] = OrderedDict()
_lock = threading.Lock()


async def rendition_for(path: Path) -> PreparedImage | None:
    """What to show in place of the picture at `path`; None when browsers show it
    as it is, or it is not a picture, or it cannot be decoded."""
    return await run_cpu(_rendition, path)


def displayed_type(path: Path, claimed: str) -> str:
    """The type to show the upload at `path` as: what the browser `claimed`,
    unless it claimed no picture and the bytes are one the chat page can show
    (as it is, or as a rendition). A claimed `image/…` stands even when wrong:
    the routes serving the file sniff it again. Reads the file's head."""
    if claimed.startswith("image/"):
        return claimed
    try:
        sniffed = filetype.guess_mime(str(path))
    except OSError:
        return claimed
    return sniffed if sniffed in SHOWN_AS_IS | NOT_SHOWN_BY_BROWSERS else claimed


def _rendition(path: Path) -> PreparedImage | None:
    try:
        stat = os.stat(path)
        if filetype.guess_mime(str(path)) not in NOT_SHOWN_BY_BROWSERS:
            return None
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with _lock:
            if key in _cache:
                _cache.move_to_end(key)
                return _cache[key]
        image = prepare_image(path.name, path.read_bytes(), max_bytes=MAX_BYTES)
    except (OSError, InvalidAttachment):
        return None  # served as it is; the chat has said what is wrong with it
    with _lock:
        _cache[key] = image
        while len(_cache) > CACHE_ENTRIES:
            _cache.popitem(last=False)
    return image
