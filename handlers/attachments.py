"""Every file attached to a message, turned into images the model can see.

Owns: dispatching each upload by its content (never its name or the browser's
MIME type), preparing all of them concurrently in worker threads, and keeping
one bad file from spoiling the rest of the message: each refusal comes back as
an `InvalidAttachment` beside the images that worked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from handlers.conversation import ImagePart
from handlers.errors import InvalidAttachment
from handlers.images import prepare_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Upload:
    key: str  # Chainlit's element id: unique, and stable across an edit
    name: str  # as the person named it; shown in messages, never trusted
    path: Path


@dataclass(frozen=True)
class Prepared:
    parts: tuple[ImagePart, ...]
    refused: tuple[InvalidAttachment, ...]


async def prepare_uploads(uploads: Sequence[Upload], *, max_bytes: int) -> Prepared:
    """Prepare every upload at once, keeping the person's order."""
    results = await asyncio.gather(*(_prepare_one(u, max_bytes) for u in uploads))
    parts = tuple(part for result in results for part in result if isinstance(part, ImagePart))
    refused = tuple(r for result in results for r in result if isinstance(r, InvalidAttachment))
    return Prepared(parts, refused)


async def _prepare_one(upload: Upload, max_bytes: int) -> list[ImagePart | InvalidAttachment]:
    try:
        image = await prepare_file(upload.name, upload.path, max_bytes=max_bytes)
    except InvalidAttachment as refusal:
        return [refusal]
    except OSError:
        log.exception("could not read upload %s", upload.path)
        return [InvalidAttachment("attachment.unreadable", name=upload.name)]
    return [ImagePart(upload.key, image)]
