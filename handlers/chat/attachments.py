"""Everything attached to a message, turned into images the model can see.

Owns: recognising each upload by its content (never its name or the
browser's MIME type) — PDF, video or image — sharing the message's image
budget between them, fetching image links found in the text, and preparing
everything concurrently in worker threads. One bad file never spoils the
rest: each refusal comes back as an `InvalidAttachment` beside the images
that worked, and videos and PDFs come back with a note saying what was taken.

Budget: each image costs one of the message's `max_images`; videos and PDFs
share what is left (a video becomes frames or contact sheets, a PDF pages).
Files past the budget are not even opened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from handlers.core.errors import InvalidAttachment, RequestRefused
from handlers.core.progress import SILENT, Board, Meter, Progress
from handlers.core.workers import run_cpu
from handlers.media.bundle import ImagePart, MediaBundle
from handlers.media.documents import parse_page_request, prepare_pdf
from handlers.media.images import prepare_file, prepare_image
from handlers.media.links import fetch_link, link_name
from handlers.media.sniff import DEFAULT_MAX_PIXELS, Kind, kind_of
from handlers.media.video import prepare_video

if TYPE_CHECKING:
    from handlers.chat.uploads import EarlyPreparations

log = logging.getLogger(__name__)

LINK_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class Upload:
    key: str  # Chainlit's element id: unique, and stable across an edit
    name: str  # as the person named it; shown in messages, never trusted
    path: Path


@dataclass(frozen=True)
class Limits:
    max_images: int
    max_image_bytes: int
    max_media_bytes: int  # videos and PDFs
    max_video_seconds: float
    max_video_pixels: int = DEFAULT_MAX_PIXELS  # in one frame


@dataclass(frozen=True)
class Options:
    """What the person asked for beyond the files: PDF pages, tiling for OCR.

    `question` is read for pages ("pages 2-4") only when a PDF is attached, so a
    pasted table of contents without one is never refused for naming more than
    `max_page_ranges` pages.
    """

    question: str = ""
    max_page_ranges: int = 100
    tile: bool = False

    def pages(self) -> list[int] | None:
        return parse_page_request(self.question, max_ranges=self.max_page_ranges)


@dataclass(frozen=True)
class Sampled:
    """A video or PDF and the images it became (shown to the person too)."""

    bundle: MediaBundle
    parts: tuple[ImagePart, ...]


@dataclass
class Prepared:
    parts: list[ImagePart] = field(default_factory=list)
    refused: list[InvalidAttachment] = field(default_factory=list)
    sampled: list[Sampled] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # names past the budget


async def prepare_uploads(
    uploads: Sequence[Upload],
    limits: Limits,
    options: Options,
    early: EarlyPreparations | None = None,
    board: Board | None = None,
) -> Prepared:
    """Prepare every upload at once, keeping the person's order; photos whose
    preparation began when they were uploaded (`early`) are not prepared twice.
    Videos and PDFs report their progress on `board` (by upload key).
    Raises `RequestRefused` when the question names too many PDF pages."""
    ahead = [early.take(u.path) if early else None for u in uploads]
    considered, prepared = uploads[: limits.max_images], Prepared()
    prepared.left_out = [upload.name for upload in uploads[limits.max_images :]]
    kinds = await asyncio.gather(
        *(asyncio.to_thread(kind_of, u.path, limits.max_video_pixels) for u in considered)
    )
    for n, task in enumerate(ahead):  # only images use theirs; the rest are let go
        if task and (n >= len(kinds) or kinds[n] != "image"):
            task.cancel()
            ahead[n] = None
    shares = _media_shares(kinds, limits.max_images)
    try:
        pages = options.pages() if "pdf" in kinds else None
    except RequestRefused:  # the whole message is refused: nobody will await these
        for task in filter(None, ahead):
            task.cancel()
        raise
    results = await asyncio.gather(
        *(
            _prepare_one(*args, limits, options.tile, pages, _meter(board, args[0], args[1]))
            for args in zip(considered, kinds, shares, ahead)
        )
    )
    for result in results:
        _collect(prepared, result)
    return prepared


async def prepare_links(
    links: Sequence[str],
    key_prefix: str,
    *,
    budget: int,
    max_bytes: int,
    board: Board | None = None,
) -> Prepared:
    """Fetch image links (the app does, never vLLM) within the images left in the
    budget, saying on `board` which one is being fetched and which arrived."""
    prepared = Prepared(left_out=list(links[budget:]))
    results = await asyncio.gather(
        *(
            _fetch_one(f"{key_prefix}:link{n}", link, max_bytes, board)
            for n, link in enumerate(links[:budget])
        )
    )
    for result in results:
        _collect(prepared, result)
    return prepared


def _meter(board: Board | None, upload: Upload, kind: Kind) -> Meter:
    if board is None or kind == "image":
        return SILENT
    return board.meter(upload.key, f"progress.{kind}", name=upload.name)


def _media_shares(kinds: Sequence[Kind], max_images: int) -> list[int]:
    """Images take one each; videos and PDFs split the rest, earlier ones first."""
    media = [n for n, kind in enumerate(kinds) if kind != "image"]
    shares = [1] * len(kinds)
    left = max_images - (len(kinds) - len(media))
    for position, index in enumerate(media):
        shares[index] = left // len(media) + (1 if position < left % len(media) else 0)
    return shares


async def _prepare_one(
    upload: Upload,
    kind: Kind,
    share: int,
    ahead: asyncio.Task | None,
    limits: Limits,
    tile: bool,
    pages: list[int] | None,
    meter: Meter,
) -> ImagePart | Sampled | InvalidAttachment:
    try:
        if kind == "image":
            image = await ahead if ahead else None
            if image is None:
                image = await prepare_file(
                    upload.name, upload.path, max_bytes=limits.max_image_bytes
                )
            return ImagePart(key=upload.key, image=image)
        if share < 1:
            return InvalidAttachment(
                "attachment.no_room", name=upload.name, limit=limits.max_images
            )
        if kind == "video":
            bundle = await prepare_video(
                upload.name,
                upload.path,
                max_images=share,
                max_bytes=limits.max_media_bytes,
                max_duration_s=limits.max_video_seconds,
                max_pixels=limits.max_video_pixels,
                meter=meter,
            )
        else:
            bundle = await prepare_pdf(
                upload.name,
                upload.path,
                pages=pages,
                max_images=share,
                tile=tile,
                max_bytes=limits.max_media_bytes,
                meter=meter,
            )
        return Sampled(bundle, _bundle_parts(upload.key, bundle))
    except InvalidAttachment as refusal:
        return refusal
    except OSError:
        log.exception("could not read upload %s", upload.path)
        return InvalidAttachment("attachment.unreadable", name=upload.name)


async def _fetch_one(
    key: str, link: str, max_bytes: int, board: Board | None
) -> ImagePart | InvalidAttachment:
    if board:
        board.post(Progress(key, "progress.link", {"name": link_name(link)}))
    try:
        name, body = await fetch_link(link, max_bytes=max_bytes, timeout=LINK_TIMEOUT_SECONDS)
        image = await run_cpu(prepare_image, name, body, max_bytes=max_bytes)
    except InvalidAttachment as refusal:
        return refusal  # its notice says what went wrong
    if board:
        size = f"{image.width}×{image.height}"
        board.post(Progress(key, "progress.link_done", {"name": name, "size": size}, final=True))
    return ImagePart(key=key, image=image)


def source_key(part: ImagePart) -> str:
    """The upload a part came from: a video's frames share their file's key."""
    return part.key.split("#", 1)[0]


def _collect(prepared: Prepared, result: ImagePart | Sampled | InvalidAttachment) -> None:
    if isinstance(result, ImagePart):
        prepared.parts.append(result)
    elif isinstance(result, InvalidAttachment):
        prepared.refused.append(result)
    else:
        prepared.sampled.append(result)
        prepared.parts.extend(result.parts)


def _bundle_parts(upload_key: str, bundle: MediaBundle) -> tuple[ImagePart, ...]:
    """A video's frames or a PDF's pages, each said to the model with its source."""
    return tuple(
        replace(
            item,
            key=f"{upload_key}#{n}",
            label=f"{bundle.source_name}, {item.label}" if item.label else bundle.source_name,
        )
        for n, item in enumerate(bundle.images)
    )
