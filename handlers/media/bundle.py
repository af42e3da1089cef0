"""What a video, PDF or link becomes: a few labelled images and a note.

Owns only the shared result type, so `handlers.media.video`, `handlers.media.documents`
and `handlers.media.links` hand the conversation the same shape and the app can say
what was sampled (in the person's language, through `note_key`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from handlers.media.images import PreparedImage


@dataclass(frozen=True)
class LabelledImage:
    """An image and the text shown to the model just before it ("01:23", "page 3")."""

    label: str | None
    image: PreparedImage


@dataclass(frozen=True)
class MediaBundle:
    """The images one source was turned into, and a translation key saying how."""

    source_name: str
    kind: str  # "video" | "pdf" | "link"
    images: tuple[LabelledImage, ...]
    note_key: str
    note_params: dict[str, Any]
