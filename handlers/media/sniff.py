"""What a file is, judged by its content alone — never its name or the browser's MIME type.

Chainlit trusts the MIME type the browser sends, and a file's name says what
its author called it. So every route that takes a file in asks this module:
`kind_of` sends it to the image, video or PDF path, and that path's own
decoder refuses it by name if it is not what its first bytes claimed.

Owns the signatures (the PDF header, the HEIF/AVIF brands that make an MP4-style
file a picture, the container headers of a truncated video) and the one way
FFmpeg may open an upload (`open_video`: named demuxers, a local file, a pixel
cap on every decoder, probing included — see `handlers.media.video`).
"""

from __future__ import annotations

import os
from typing import Literal

import av

from handlers.core.settings import Settings

Kind = Literal["image", "video", "pdf"]

# HEIC and AVIF photos are ISO-BMFF (MP4-style) files FFmpeg would open as video;
# their major brand says they are pictures, which `handlers.media.images` takes.
HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})
PICTURE_BRANDS = HEIF_BRANDS | {b"avif", b"avis"}

VIDEO_CONTAINERS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi"})
VIDEO_FORMAT_NAMES = "MP4, MOV, WebM, MKV, AVI"  # for the person: what VIDEO_CONTAINERS means
# Recognised only so they get a clear "audio only" refusal rather than "not an image".
AUDIO_CONTAINERS = frozenset({"wav", "mp3", "aac", "ogg", "flac"})
# FFmpeg's whitelist matches any of a demuxer's comma-separated names.
DEMUXERS = ",".join(sorted(VIDEO_CONTAINERS | AUDIO_CONTAINERS))
# Container headers, so a truncated upload is still called a broken video.
_VIDEO_SIGNATURES = (
    (4, b"ftyp"),
    (4, b"moov"),
    (4, b"mdat"),
    (0, b"\x1a\x45\xdf\xa3"),
    (8, b"AVI "),
)
HEAD_BYTES = 1024  # enough for every signature here
DEFAULT_MAX_PIXELS = Settings.max_video_pixels


def looks_like_pdf(head: bytes) -> bool:
    """Readers accept the `%PDF-` header anywhere in the first 1024 bytes, so do we."""
    return b"%PDF-" in head[:1024]


def brand(head: bytes) -> bytes | None:
    """The major brand of an ISO-BMFF file (MP4, MOV, HEIC, AVIF), or None."""
    return head[8:12] if head[4:8] == b"ftyp" else None


def looks_like_heif(head: bytes) -> bool:
    """A HEIC/HEIF photo's header — also when the file is cut off before its first picture."""
    return brand(head) in HEIF_BRANDS


def open_video(path: str | os.PathLike, max_pixels: int) -> av.container.InputContainer:
    """`path` opened as `handlers.media.video` says: named demuxers, local file
    only, no decoder (probing included) making a frame of more than `max_pixels`."""
    return av.open(
        os.fspath(path),
        options={"max_pixels": str(max_pixels)},
        container_options={"format_whitelist": DEMUXERS, "protocol_whitelist": "file"},
    )


def has_video_signature(head: bytes) -> bool:
    """A video container's header, as a truncated or damaged upload still has."""
    return any(head[at : at + len(magic)] == magic for at, magic in _VIDEO_SIGNATURES)


def looks_like_video(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> bool:
    """Whether `path` belongs to the video path, judged by content alone.

    True for the accepted video containers, and also for files that only
    resemble one — a truncated mp4, an audio-only track — so the video path
    can say what is wrong with them instead of the image path calling them
    "not an image". Cheap: reads the header and probes; decodes nothing.
    """
    with open(path, "rb") as file:
        head = file.read(12)
    if brand(head) in PICTURE_BRANDS:
        return False
    try:
        with open_video(path, max_pixels) as container:
            return container.format.name in VIDEO_CONTAINERS | AUDIO_CONTAINERS
    except av.FFmpegError:
        return has_video_signature(head)


def kind_of(path: str | os.PathLike, max_video_pixels: int = DEFAULT_MAX_PIXELS) -> Kind:
    """Which path prepares the file: an unreadable one goes to the image path,
    which fails on it the same way and says so by name."""
    try:
        with open(path, "rb") as file:
            head = file.read(HEAD_BYTES)
    except OSError:
        return "image"
    if looks_like_pdf(head):
        return "pdf"
    if looks_like_video(path, max_video_pixels):
        return "video"
    return "image"  # the image path refuses everything it cannot decode, naming the formats
