"""A conversation's images across app restarts, and rebuilding it on resume.

Chainlit persists messages and the original uploads, but on resume it hands
back `message.elements` empty and nothing of what the model actually saw. So
each user turn's text as sent (a preset's instruction included) and its
prepared images (with their labels, e.g. a video frame's time) are kept under
`DATA_DIR/prepared/<thread>/<turn>/`, and `rebuild` turns a persisted thread
back into a `Conversation` that sends the model byte for byte what it was sent
before (so vLLM's prefix cache still holds it). When a prepared copy is missing
(e.g. data from before it existed), the original upload is prepared again.
These files are never served over HTTP; only the model sees them, and they go
when their chat is deleted (`forget_thread`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from handlers.chat.conversation import Conversation, Turn
from handlers.core.errors import InvalidAttachment
from handlers.core.message_kinds import ANSWER_KIND, DOWNLOAD_KIND
from handlers.media.bundle import ImagePart
from handlers.media.images import PreparedImage, prepare_file

log = logging.getLogger(__name__)

MANIFEST = "images.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png"}


class PreparedStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def save(self, thread_id: str, turn_id: str, text: str, parts: Sequence[ImagePart]) -> None:
        """Write a turn's text as sent, its prepared images and a manifest (blocking:
        use a thread). A write that fails (a full disk) is logged, not raised: it
        costs a later resume only the preparing again from the originals (`load`
        finds no manifest), never the answer or the resume at hand."""
        folder = self._folder(thread_id, turn_id)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            entries = []
            for index, part in enumerate(parts):
                file_name = f"{index}.{_EXTENSIONS.get(part.image.mime, 'bin')}"
                (folder / file_name).write_bytes(part.image.data)
                entries.append(_entry(part, file_name))
            manifest = {"text": text, "images": entries}
            (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
        except OSError:
            log.warning("could not keep the prepared images of turn %s", turn_id, exc_info=True)

    def load(self, thread_id: str, turn_id: str) -> tuple[str | None, tuple[ImagePart, ...]] | None:
        """The turn's text as sent (None if not kept) and its images, or None if
        nothing was kept."""
        folder = self._folder(thread_id, turn_id)
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            if isinstance(manifest, list):  # written before the text was kept
                manifest = {"text": None, "images": manifest}
            parts = tuple(_part(e, (folder / e["file"]).read_bytes()) for e in manifest["images"])
            return manifest["text"], parts
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def kept_files(self, thread_id: str, turn_id: str) -> list[tuple[dict, Path]]:
        """The manifest entries of a turn's prepared images with their paths, without
        reading the images (for the chat download); empty if nothing was kept."""
        folder = self._folder(thread_id, turn_id)
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            entries = manifest["images"] if isinstance(manifest, dict) else manifest
            return [(entry, folder / Path(entry["file"]).name) for entry in entries]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    async def forget_thread(self, thread_id: str) -> None:
        """Delete a thread's prepared images (its chat was deleted)."""
        if not thread_id:  # would name the root itself
            return
        await asyncio.to_thread(shutil.rmtree, self._thread_folder(thread_id), ignore_errors=True)

    def _folder(self, thread_id: str, turn_id: str) -> Path:
        return self._thread_folder(thread_id) / _UNSAFE.sub("_", turn_id)

    def _thread_folder(self, thread_id: str) -> Path:
        return self.root / _UNSAFE.sub("_", thread_id)


async def rebuild(
    thread: Mapping[str, Any],
    store: PreparedStore,
    original_path: Callable[[str], Path],
    *,
    max_bytes: int,
) -> Conversation:
    """The conversation of a persisted Chainlit thread: the person's messages with
    their images, and the answers (notices and error messages are left out)."""
    conversation = Conversation()
    elements = thread.get("elements") or []
    steps = thread.get("steps") or []
    skipped = download_requests(steps) | _empty_messages(steps, elements)
    for step in sorted(steps, key=lambda s: s.get("createdAt") or ""):
        if step.get("type") == "user_message" and step.get("id") not in skipped:
            kept = await asyncio.to_thread(store.load, thread["id"], step["id"])
            text, parts = kept or (None, None)
            text = (step.get("output") or "") if text is None else text
            if parts is None:  # kept from now on: the next resume does not prepare them again
                parts = await _prepare_originals(step["id"], elements, original_path, max_bytes)
                await asyncio.to_thread(store.save, thread["id"], step["id"], text, parts)
            conversation.turns.append(Turn(step["id"], "user", text, parts))
        elif _is_answer(step):
            conversation.add_assistant(step["id"], step.get("output") or "")
    return conversation


def download_requests(steps: Iterable[dict]) -> frozenset[str]:
    """The ids of the person's `/download` messages: marked as such by the app, or
    named by the reply. The mark is an update of Chainlit's own write of the
    message, and the two can land in either order; the reply's `reply_to` is
    written once, with the reply."""
    marked, named = set(), set()
    for step in steps:
        metadata = step.get("metadata") or {}
        if metadata.get("kind") != DOWNLOAD_KIND:
            continue
        if step.get("type") == "user_message":
            marked.add(step["id"])
        elif metadata.get("reply_to"):
            named.add(metadata["reply_to"])
    return frozenset(marked | named)


def _empty_messages(steps: Iterable[dict], elements: list[dict]) -> frozenset[str]:
    """Messages with neither words nor files: never a question (`respond` sends
    nothing for them), so not replayed either."""
    with_files = {element.get("forId") for element in elements}
    return frozenset(
        step["id"]
        for step in steps
        if step.get("type") == "user_message"
        and not (step.get("output") or "").strip()
        and step.get("id") not in with_files
    )


def _is_answer(step: dict) -> bool:
    metadata = step.get("metadata") or {}
    return step.get("type") == "assistant_message" and metadata.get("kind") == ANSWER_KIND


async def _prepare_originals(
    step_id: str, elements: list[dict], original_path: Callable[[str], Path], max_bytes: int
) -> tuple[ImagePart, ...]:
    parts = []
    for element in elements:
        if element.get("forId") != step_id or not element.get("objectKey"):
            continue
        try:
            path = original_path(element["objectKey"])
            image = await prepare_file(element.get("name") or "image", path, max_bytes=max_bytes)
        except (InvalidAttachment, OSError, ValueError):
            log.warning("could not restore element %s of step %s", element.get("id"), step_id)
            continue
        parts.append(ImagePart(key=element["id"], image=image))
    return tuple(parts)


def _entry(part: ImagePart, file_name: str) -> dict:
    image = part.image
    return {
        "key": part.key,
        "label": part.label,
        "file": file_name,
        "name": image.name,
        "source_format": image.source_format,
        "width": image.width,
        "height": image.height,
        "mime": image.mime,
        "tokens": image.tokens,
    }


def _part(entry: dict, data: bytes) -> ImagePart:
    image = PreparedImage(
        name=entry["name"],
        source_format=entry["source_format"],
        width=entry["width"],
        height=entry["height"],
        mime=entry["mime"],
        data=data,
        tokens=entry["tokens"],
    )
    return ImagePart(key=entry["key"], image=image, label=entry["label"])
