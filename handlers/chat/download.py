"""A chat as a zip to download: `chat.md` and the images it links as `images/…`.

`chat.md` holds the person's questions and the answers in order, each with its
time, and the notices and errors shown between them (a refused file, an answer
cut at the length limit, frames sent from a video) as quotes. Images are the
person's original uploads where history kept them (`data/files/`), else the
prepared copies the model saw (`data/prepared/`). A video or PDF goes in as the
frames or pages the model saw, not as the file: one original may be 200 MB
(`MAX_MEDIA_MB`), which alone would fill the download, and the answers speak
about those frames ("at 01:23"), not about the rest of the file.

Bounded: the zip is written to a temporary file, an image at a time, straight
from disk, and holds at most `max_bytes`; the images past that are left out
and named in `chat.md` (the text alone past it is refused). File names inside
the zip are numbered and keep only letters, digits, `-` and `_` (Chinese
included), so they never collide or climb out of `images/`.

Knows nothing of Chainlit: it takes a persisted thread as the data layer
returns it (a `ThreadDict`); who may download it is the caller's check.
"""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from handlers.chat.history import PreparedStore, download_requests
from handlers.core.errors import RequestRefused
from handlers.core.i18n import translate
from handlers.core.message_kinds import ANSWER_KIND, DOWNLOAD_KIND

CHAT_FILE = "chat.md"
IMAGES_FOLDER = "images"
_ENTRY_OVERHEAD = 128  # a zip entry's local and central headers, besides its name (twice)
_MAX_NAME = 60
_EXTENSION = re.compile(r"^[A-Za-z0-9]{1,5}$")


@dataclass(frozen=True)
class Download:
    path: Path  # a temporary file: the caller removes it
    file_name: str  # what to call it for the person
    images: int
    left_out: int


@dataclass(frozen=True)
class _Picture:
    alt: str
    source: Path | None  # None: history did not keep it
    arcname: str | None = None  # its name in the zip, once it is known to fit
    left_out: bool = False


Block = str | _Picture


class ThreadSource(Protocol):
    """What is needed of Chainlit's data layer."""

    async def get_thread_author(self, thread_id: str) -> str: ...
    async def get_thread(self, thread_id: str) -> Any: ...


async def owned_thread(layer: ThreadSource, thread_id: str | None, identifier: str | None) -> dict:
    """The persisted thread, if the signed-in `identifier` is its author; else
    `RequestRefused` (not yours, or not in the history at all, look the same)."""
    try:
        author = await layer.get_thread_author(thread_id) if thread_id and identifier else None
    except ValueError:  # no such thread
        author = None
    thread = (
        await layer.get_thread(thread_id)
        if thread_id and author is not None and author == identifier
        else None
    )
    if not thread:
        raise RequestRefused("error.download_unavailable")
    return dict(thread)


def has_questions(thread: dict, skip: frozenset[str] = frozenset()) -> bool:
    steps = thread.get("steps") or []
    skip = skip | download_requests(steps)
    return any(_is_question(step, skip) for step in steps)


def build_download(
    thread: dict,
    store: PreparedStore,
    original_path: Callable[[str], Path],
    *,
    language: str,
    max_bytes: int,
    skip: frozenset[str] = frozenset(),
    now: datetime | None = None,
) -> Download:
    """Write the zip of `thread` to a temporary file (blocking: use a thread).
    `skip` names steps to leave out (the request for this download, in case its
    mark has not reached the database yet). Raises `RequestRefused` when even
    `chat.md` alone is over `max_bytes`."""
    blocks = _blocks(thread, store, original_path, language, skip)
    header = _header(thread, language, now or datetime.now(UTC))
    # The text as if every image fitted, plus room for a "left out" line in place of each link.
    links = sum(1 for block in blocks if isinstance(block, _Picture))
    text_size = (
        len(_render(header, _fit(blocks, max_bytes), language, max_bytes).encode()) + 200 * links
    )
    if text_size > max_bytes:
        raise RequestRefused("error.download_too_big", limit=_megabytes(max_bytes))
    blocks = _fit(blocks, max_bytes - text_size)
    markdown = _render(header, blocks, language, max_bytes)
    # A picture given an arcname is one whose source fitted (`_fit`).
    pictures = [
        (block.source, block.arcname)
        for block in blocks
        if isinstance(block, _Picture) and block.arcname and block.source
    ]
    path = _write_zip(markdown, pictures)
    left_out = sum(1 for block in blocks if isinstance(block, _Picture) and block.left_out)
    return Download(path, _zip_name(thread, now), len(pictures), left_out)


def safe_file_name(name: str, fallback: str = "image") -> str:
    """`name` with only letters, digits, '-' and '_' in its stem (any script) and a
    short alphanumeric extension; never empty, never a path."""
    stem, dot, extension = name.rpartition(".")
    if not dot or not _EXTENSION.match(extension):
        stem, extension = name, ""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in stem)
    cleaned = re.sub(r"_+", "_", cleaned).strip("_-")[:_MAX_NAME] or fallback
    return f"{cleaned}.{extension.lower()}" if extension else cleaned


def _is_question(step: dict, skip: frozenset[str]) -> bool:
    kind = (step.get("metadata") or {}).get("kind")
    return (
        step.get("type") == "user_message" and kind != DOWNLOAD_KIND and step.get("id") not in skip
    )


def _blocks(
    thread: dict,
    store: PreparedStore,
    original_path: Callable[[str], Path],
    language: str,
    skip: frozenset[str],
) -> list[Block]:
    """The chat in order: headings and texts as Markdown, pictures to place."""
    by_step: dict[str, list[dict]] = defaultdict(list)
    for element in thread.get("elements") or []:
        by_step[element.get("forId") or ""].append(element)
    blocks: list[Block] = []
    steps = thread.get("steps") or []
    skip = skip | download_requests(steps)
    for step in sorted(steps, key=lambda s: s.get("createdAt") or ""):
        kind = (step.get("metadata") or {}).get("kind")
        text = (step.get("output") or "").strip()
        if kind == DOWNLOAD_KIND or step.get("id") in skip:
            continue
        if _is_question(step, skip):
            blocks.append(_heading("download.question", step, language))
            if text:  # typed as plain text: its line breaks are kept as such
                blocks.append("  \n".join(text.splitlines()))
            kept = store.kept_files(thread.get("id") or "", step.get("id") or "")
            blocks.extend(
                _turn_pictures(by_step[step.get("id") or ""], kept, original_path, language)
            )
        elif step.get("type") == "assistant_message" and kind == ANSWER_KIND:
            blocks.extend([_heading("download.answer", step, language), text])
        elif step.get("type") == "assistant_message" and text:  # notices, errors, "stopped"
            blocks.append(_quote(text))
    return blocks


def _turn_pictures(
    elements: list[dict],
    kept: list[tuple[dict, Path]],
    original_path: Callable[[str], Path],
    language: str,
) -> list[Block]:
    """A question's images: each uploaded image as the person sent it (else as
    prepared), a video's or PDF's frames or pages as the model saw them, then
    the images fetched from links in the message. What an upload was is told
    by what the app prepared from it (one image under its own key, or frames
    under `key#n`), not by the type the browser claimed; an upload with nothing
    prepared (refused, or past a limit) is only named."""
    prepared: dict[str, list[tuple[dict, Path]]] = defaultdict(list)
    for entry, path in kept:
        prepared[str(entry.get("key", "")).split("#", 1)[0]].append((entry, path))
    blocks: list[Block] = []
    for element in elements:
        name = element.get("name") or "file"
        copies = prepared.pop(element.get("id") or "", [])
        if not copies:
            blocks.append(translate("download.not_sent", language, name=name))
        elif len(copies) == 1 and copies[0][0].get("key") == element.get("id"):
            source = _original(element, original_path) or copies[0][1]
            blocks.append(_Picture(name, source if source.is_file() else None))
        else:
            blocks.append(translate("download.attached", language, name=name, count=len(copies)))
            blocks.extend(_prepared_picture(entry, path) for entry, path in copies)
    for copies in prepared.values():  # image links: fetched by the app, kept as prepared
        blocks.extend(_prepared_picture(entry, path) for entry, path in copies)
    return blocks


def _original(element: dict, original_path: Callable[[str], Path]) -> Path | None:
    if not element.get("objectKey"):
        return None
    try:
        path = original_path(element["objectKey"])
    except ValueError:  # a key not in safe form: not ours to read
        return None
    return path if path.is_file() else None


def _prepared_picture(entry: dict, path: Path) -> _Picture:
    alt = entry.get("label") or entry.get("name") or "image"
    return _Picture(str(alt), path if path.is_file() else None)


def _fit(blocks: list[Block], room: int) -> list[Block]:
    """Number the pictures and keep them, in order, while they fit in `room` bytes."""
    fitted: list[Block] = []
    number = 0
    for block in blocks:
        if not isinstance(block, _Picture) or block.source is None:
            fitted.append(block)
            continue
        number += 1
        arcname = f"{IMAGES_FOLDER}/{number:03d}-{_picture_file_name(block)}"
        try:
            cost = block.source.stat().st_size + _ENTRY_OVERHEAD + 2 * len(arcname.encode())
        except OSError:  # gone since it was found (its chat deleted meanwhile)
            fitted.append(replace(block, source=None))
            continue
        if cost <= room:
            room -= cost
            fitted.append(replace(block, arcname=arcname))
        else:
            room = -1  # later, smaller images would break the order: leave them all out
            fitted.append(replace(block, left_out=True))
    return fitted


def _picture_file_name(picture: _Picture) -> str:
    """Named for what the person called it, with the extension of the file that
    goes in (a prepared copy is a JPEG or PNG, whatever the upload was)."""
    name = safe_file_name(picture.alt)
    suffix = picture.source.suffix[1:] if picture.source is not None else ""
    if not _EXTENSION.match(suffix):
        return name
    stem, dot, extension = name.rpartition(".")
    return f"{stem if dot and _EXTENSION.match(extension) else name}.{suffix.lower()}"


def _render(header: str, blocks: list[Block], language: str, max_bytes: int) -> str:
    parts = [header]
    for block in blocks:
        if not isinstance(block, _Picture):
            parts.append(block)
        elif block.arcname:
            parts.append(f"![{_alt(block.alt)}]({quote(block.arcname)})")
        elif block.left_out:
            parts.append(
                f"*{translate('download.left_out', language, name=_alt(block.alt), limit=_megabytes(max_bytes))}*"
            )
        else:
            parts.append(f"*{translate('download.not_kept', language, name=_alt(block.alt))}*")
    return "\n\n".join(parts) + "\n"


def _header(thread: dict, language: str, now: datetime) -> str:
    title = " ".join((thread.get("name") or "").split()) or translate("download.title", language)
    return f"# {title}\n\n{translate('download.taken', language, time=_format_time(now))}\n\n---"


def _heading(key: str, step: dict, language: str) -> str:
    when = _parse_time(step.get("createdAt"))
    label = translate(key, language)
    return f"## {label} · {_format_time(when)}" if when else f"## {label}"


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def _alt(text: str) -> str:
    return " ".join(text.replace("[", "(").replace("]", ")").split())


def _parse_time(value: str | None) -> datetime | None:
    try:
        parsed = datetime.fromisoformat((value or "").replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _format_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _megabytes(size: int) -> int:
    return max(1, size // (1024 * 1024))


def _zip_name(thread: dict, now: datetime | None) -> str:
    day = (now or datetime.now(UTC)).strftime("%Y-%m-%d")
    title = safe_file_name(thread.get("name") or "", fallback="")[:40].rstrip("._-")
    return f"chat-{day}-{title}.zip" if title else f"chat-{day}.zip"


def _write_zip(markdown: str, pictures: list[tuple[Path, str]]) -> Path:
    """The zip on disk; images are stored as they are (already compressed)."""
    fd, name = tempfile.mkstemp(prefix="chat-download-", suffix=".zip")
    os.close(fd)
    path = Path(name)
    try:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(CHAT_FILE, markdown.encode(), compress_type=zipfile.ZIP_DEFLATED)
            for source, arcname in pictures:
                archive.write(source, arcname, compress_type=zipfile.ZIP_STORED)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path
