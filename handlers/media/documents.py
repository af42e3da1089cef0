"""PDFs turned into page images, because Pixtral sees only stills.

Owns: recognising a PDF, reading which pages the person asked for ("page 3",
"pp. 2-4", "第2到4页"), rendering those pages — or the first ones that fit
the image budget — with the longest side at 1024 px, and splitting pages of
small print into tiles rendered at a higher resolution. Does not own image
encoding or token cost (`handlers.media.images`).

PDFium is not thread-safe, not even across documents, so every call into it
happens under `_PDFIUM`, one lock for the process: renders queue, they do not
run in parallel. Documents and pages are closed explicitly under the lock so
no finaliser calls into PDFium later from another thread.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pypdfium2 as pdfium
from PIL import Image

from handlers.core.errors import InvalidAttachment, RequestRefused
from handlers.core.progress import SILENT, Meter
from handlers.core.workers import run_cpu
from handlers.media.bundle import ImagePart, MediaBundle
from handlers.media.images import prepare_pil
from handlers.media.pixtral import MAX_SIDE

TILE_OVERLAP = 48  # px shared by neighbouring tiles, so a line cut by the split is whole in one
MAX_TILES_PER_PAGE = 4
MAX_REQUESTED_PAGES = 1000  # "pages 1-99999" is not a reason to build a huge list

_PDFIUM = threading.Lock()
_PAGE_TREE = re.compile(rb"/Type\s*/Pages\b")
_PAGE = re.compile(rb"/Type\s*/Page\b")

_NUMBERS = r"\d+(?:\s*(?:-|–|—|~|to|到|至)\s*\d+)?"
_LIST = rf"{_NUMBERS}(?:\s*(?:,|，|、|&|and|和)\s*{_NUMBERS})*"
_PART = re.compile(_NUMBERS)
_REQUESTS = (
    re.compile(rf"(?<![a-z])(?:pages?|pp?\.)\s*({_LIST})", re.IGNORECASE),
    re.compile(rf"第\s*({_LIST})\s*页"),
)
# "第十二页", "第二到四页": Chinese numerals inside 第…页 are read as digits first.
_CHINESE_PAGES = re.compile(r"第[^第页]{1,30}页")
_CHINESE_NUMBER = re.compile(r"[零〇一二两三四五六七八九十百千]+")
_CHINESE_DIGITS = dict(zip("零〇一二两三四五六七八九", (0, 0, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9)))
_CHINESE_UNITS = {"十": 10, "百": 100, "千": 1000}


def parse_page_request(text: str, *, max_ranges: int) -> list[int] | None:
    """The 1-based pages a message asks for, in the order asked, without repeats;
    None when it names no pages. Understands "page 3", "pages 2-4", "p. 2, 5",
    "pp. 3 to 5", "第2页", "第2-4页", "第2到4页", "第2、5页",
    "第十二页", "第二至四页".

    Linear and small whatever the text: it stops at `MAX_REQUESTED_PAGES` pages,
    and a message naming more than `max_ranges` pages or ranges ("pages 1-1000,
    1-1000, …" pasted 80 000 times) is refused as `error.too_many_page_ranges`.
    """
    text = _CHINESE_PAGES.sub(lambda m: _CHINESE_NUMBER.sub(_arabic, m.group(0)), text)
    pages: dict[int, None] = {}
    for count, part in enumerate(_named_parts(text), start=1):
        if count > max_ranges:
            raise RequestRefused("error.too_many_page_ranges", limit=max_ranges)
        for page in _expand(part):
            if len(pages) >= MAX_REQUESTED_PAGES:
                return list(pages)
            if page > 0:
                pages[page] = None
    return list(pages) or None


def _named_parts(text: str) -> Iterator[str]:
    """Each page or range named ("3", "2-4"), one at a time, in the order written."""
    for pattern in _REQUESTS:
        for match in pattern.finditer(text):
            for part in _PART.finditer(match.group(1)):
                yield part.group()


def _arabic(match: re.Match) -> str:
    """ "十二" → "12", "二十" → "20", "一百零五" → "105", "两" → "2"."""
    total = digit = 0
    for character in match.group(0):
        if character in _CHINESE_UNITS:
            total += (digit or 1) * _CHINESE_UNITS[character]
            digit = 0
        else:
            digit = _CHINESE_DIGITS[character]
    return str(total + digit)


def _expand(part: str) -> range:
    ends = [int(n) for n in re.findall(r"\d+", part)]
    low, high = min(ends), max(ends)
    return range(low, min(high, low + MAX_REQUESTED_PAGES - 1) + 1)


async def prepare_pdf(
    name: str,
    path: str | os.PathLike,
    *,
    pages: list[int] | None,
    max_images: int,
    tile: bool,
    max_bytes: int,
    meter: Meter = SILENT,
) -> MediaBundle:
    """Render the requested `pages` (default: from the first) into at most
    `max_images` images; with `tile`, each page becomes 2-4 sharper tiles.

    Runs in a worker thread; `meter` counts the pages rendered, and stops the
    thread between pages once the work is cancelled (`WorkCancelled`). Refuses, as
    `InvalidAttachment`: `pdf.too_large`, `pdf.encrypted`, `pdf.corrupt`, `pdf.empty`,
    `pdf.pages_out_of_range`.
    """
    return await run_cpu(_prepare, name, Path(path), pages, max_images, tile, max_bytes, meter)


def _prepare(
    name: str,
    path: Path,
    pages: list[int] | None,
    max_images: int,
    tile: bool,
    max_bytes: int,
    meter: Meter = SILENT,
) -> MediaBundle:
    if path.stat().st_size > max_bytes:
        raise InvalidAttachment("pdf.too_large", name=name, limit_mb=max_bytes // 2**20)
    with _PDFIUM, _open(name, path) as document:
        total = len(document)
        wanted, missing = _choose(name, pages, total)
        rendered = _render_within_budget(name, document, wanted, max_images, tile, meter)
    images = tuple(
        ImagePart(image=prepare_pil(name, image, source_format="PDF"), label=label)
        for _, label, image in rendered
    )
    sent = list(dict.fromkeys(number for number, _, _ in rendered))
    note = {"name": name, "pages": describe_pages(sent), "count": len(sent), "total": total}
    if missing:
        return MediaBundle(
            name,
            "pdf",
            images,
            "pdf.sent_pages_missing",
            {**note, "missing": describe_pages(missing)},
        )
    return MediaBundle(name, "pdf", images, "pdf.sent_pages", note)


@contextmanager
def _open(name: str, path: Path) -> Iterator[pdfium.PdfDocument]:
    try:
        document = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError:
        raise InvalidAttachment(_why_unopenable(path), name=name) from None
    try:
        yield document
    finally:
        document.close()


def _why_unopenable(path: Path) -> str:
    """The refusal for a file PDFium would not open. PDFium also refuses
    documents without pages, and then reports whatever error came last (even
    another file's), so the file itself is looked at instead of its error code."""
    data = path.read_bytes()
    if b"/Encrypt" in data:
        return "pdf.encrypted"
    if _PAGE_TREE.search(data) and not _PAGE.search(data):
        return "pdf.empty"
    return "pdf.corrupt"


def _choose(name: str, pages: list[int] | None, total: int) -> tuple[list[int], list[int]]:
    """(pages to render, requested pages past the end)."""
    if pages is None:
        return list(range(1, total + 1)), []
    present = [page for page in pages if 1 <= page <= total]
    missing = [page for page in pages if page > total]
    if not present:
        raise InvalidAttachment(
            "pdf.pages_out_of_range", name=name, pages=describe_pages(missing), total=total
        )
    return present, missing


def _render_within_budget(
    name, document, numbers: list[int], max_images: int, tile: bool, meter: Meter
):
    """(page number, label, image) for pages in order until `max_images` images."""
    rendered: list[tuple[int, str, Image.Image]] = []
    meter.start(
        min(len(numbers), math.ceil(max_images / 2) if tile else max_images)
    )  # tiles: ≥ 2 a page
    for number in numbers:
        if len(rendered) >= max_images:
            break
        meter.check()
        images = _render_page(name, document, number, tile)
        meter.advance()
        for part, image in enumerate(images, start=1):
            label = f"page {number}, part {part}/{len(images)}" if tile else f"page {number}"
            rendered.append((number, label, image))
    return rendered[:max_images]


def _render_page(name: str, document, number: int, tile: bool) -> list[Image.Image]:
    try:
        page = document[number - 1]
    except pdfium.PdfiumError:
        raise InvalidAttachment("pdf.corrupt", name=name) from None
    try:
        width, height = page.get_size()
        if width <= 0 or height <= 0:
            raise InvalidAttachment("pdf.corrupt", name=name)
        parts = _tile_count(width, height) if tile else 1
        bitmap = page.render(scale=_scale(width, height, parts))
        try:
            image = bitmap.to_pil().convert("RGB")
        finally:
            bitmap.close()
    finally:
        page.close()
    return _split(image, parts) if parts > 1 else [image]


def _tile_count(width: float, height: float) -> int:
    """Two tiles for an A4 or Letter page; more (up to four) for long, narrow ones."""
    return min(MAX_TILES_PER_PAGE, max(2, math.ceil(max(width, height) / min(width, height))))


def _scale(width: float, height: float, parts: int) -> float:
    """Pixels per point so each of `parts` tiles (with overlap) fits MAX_SIDE."""
    long, short = max(width, height), min(width, height)
    if parts == 1:
        return MAX_SIDE / long
    return min(MAX_SIDE / short, (MAX_SIDE * parts - TILE_OVERLAP * (parts - 1)) / long)


def _split(image: Image.Image, parts: int) -> list[Image.Image]:
    """Cut along the long side into `parts` overlapping tiles, top to bottom or left to right."""
    vertical = image.height >= image.width
    length = image.height if vertical else image.width
    tile = math.ceil((length + TILE_OVERLAP * (parts - 1)) / parts)
    tiles = []
    for index in range(parts):
        start = min(index * (tile - TILE_OVERLAP), length - tile)
        if vertical:
            tiles.append(image.crop((0, start, image.width, start + tile)))
        else:
            tiles.append(image.crop((start, 0, start + tile, image.height)))
    return tiles


def describe_pages(pages: list[int]) -> str:
    """ "1-3, 7" for [1, 2, 3, 7]: runs of consecutive pages as ranges, order kept."""
    runs: list[list[int]] = []
    for page in pages:
        if runs and page == runs[-1][-1] + 1:
            runs[-1].append(page)
        else:
            runs.append([page])
    return ", ".join(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]) for run in runs)
