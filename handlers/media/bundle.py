"""An image as the model is shown it, and what a video, PDF or link becomes.

Owns the shared shapes: `ImagePart`, the one type for an image in a message (an
upload, a video frame, a PDF page), which `handlers.chat` keys and keeps; and
`MediaBundle`, so `handlers.media.video`, `handlers.media.documents` and
`handlers.media.links` hand the conversation the same result and the app can say
what was sampled (in the person's language, through `note_key`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from handlers.media.images import PreparedImage


@dataclass(frozen=True, kw_only=True)
class ImagePart:
    """An image and the text said to the model just before it ("01:23", "page 3").

    `key` tells it apart from the chat's other images (the Chainlit element id;
    `<upload key>#<n>` for a video's frames): media leaves it empty, the chat sets
    it when it takes the image (`handlers.chat.attachments`)."""

    image: PreparedImage
    label: str | None = None
    key: str = ""


@dataclass(frozen=True)
class MediaBundle:
    """The images one source was turned into, and a translation key saying how."""

    source_name: str
    kind: str  # "video" | "pdf" | "link"
    images: tuple[ImagePart, ...]
    note_key: str
    note_params: dict[str, Any]
