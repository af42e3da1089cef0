"""Turn an uploaded picture into what Pixtral is sent.

Owns: deciding whether bytes are an image we accept (by decoding them, never
by file name or browser MIME type), refusing the rest with an
`InvalidAttachment` that names the file, and preparing accepted images —
EXIF orientation, 8-bit sRGB on white (a Display P3 or other RGB profile
converted), longest side ≤ Pixtral's 1024 px (`handlers.media.pixtral`), re-encoded compactly — into a `PreparedImage` whose facts (size, token cost, payload)
are worked out once, here.

Does not own: how many images a message may carry or how history is trimmed
(conversation), PDFs and video (they hand their pages and frames to
`prepare_pil`), or showing errors (chainlit_app). iPhone-shaped HEICs are
decoded by `handlers/media/heic.py` when it can, by pillow-heif otherwise.

Importing this module configures Pillow for untrusted uploads, process-wide:
it registers the HEIF opener and hands bomb detection to `MAX_PIXELS`.
"""

from __future__ import annotations

import base64
import io
import math
import os
from dataclasses import dataclass, field
from typing import IO, cast

import pillow_heif
from PIL import ExifTags, Image, UnidentifiedImageError

from handlers.core.arriving import Abandoned, ArrivingBytes
from handlers.core.errors import InvalidAttachment
from handlers.core.workers import run_cpu
from handlers.media import heic
from handlers.media.colour import in_srgb
from handlers.media.pixtral import MAX_SIDE, PATCH
from handlers.media.sniff import HEAD_BYTES, looks_like_heif, looks_like_pdf

# Pillow format names we decode. Pillow's JPEG opener reports multi-picture
# JPEGs (many phone photos carry a depth or HDR map) as "MPO"; they are JPEGs.
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF"})

# Refuse images above this many pixels before decoding them. Covers 64 MP phone
# sensors (9248×6936 = 64.1 MP) and 61 MP cameras; a bigger picture is most
# likely a bomb (a few KB of PNG can declare 20000×20000), and decoding a
# 70 MP PNG already takes ~280 MB.
MAX_PIXELS = 70_000_000

# No visible loss at 1024 px, at a fraction of the original's bytes
# (docs/benchmarks.md, "Preparing a photo", the payload table).
JPEG_QUALITY = 88
# Fewer distinct colours than this means a screenshot, chart or scan (UI text
# with anti-aliasing has ~1-2k); a photo passes it within its first rows.
_FLAT_COLOURS = 4096
# A flat image goes out as PNG, keeping glyph edges crisp for OCR, unless that
# costs more than this many times the JPEG (downscaled screenshots are ~2×).
_PNG_MAX_RATIO = 2.5
# zlib-ng's level 3 beat the default 6 on screenshots, smaller and faster
# (docs/benchmarks.md, "Smaller measurements").
_PNG_LEVEL = 3
# Photos are resampled with HAMMING: after the draft's decode, it is the one
# filter that keeps a 12 MP photo within its time budget (docs/benchmarks.md,
# "Preparing a photo"; the PSNR of each is there too). Flat images get
# LANCZOS: crisp text is their point, and they have no budget.
_PHOTO_RESAMPLE = Image.Resampling.HAMMING
_FLAT_RESAMPLE = Image.Resampling.LANCZOS
_REDUCING_GAP = 3.0  # box-reduce huge sources first; Pillow: indistinguishable at 3
# A JPEG whose ½, ¼ or ⅛ scale falls short of 1024 px by no more than this goes
# at that scale, with no resize: a 4000×3000 photo as 1000×750 (3 008 tokens
# instead of 3 120), ~20 ms sooner; the decoder's own scaling is as faithful as
# the resize it saves (docs/benchmarks.md, "Preparing a photo", "Just short of 1024 px").
_DRAFT_SHORTFALL = 0.03

# EXIF orientation → the turn that shows the picture upright, as in
# ImageOps.exif_transpose. We turn the 1024 px result instead of the decoded
# image, a fraction of the pixels (docs/benchmarks.md, "Preparing a photo",
# "Orientation last"), and read the orientation before conversion, which would
# drop a TIFF's tags.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_DISPLAY_NAMES = {"WEBP": "WebP", "HEIF": "HEIC"}
_FORMATS_TEXT = ", ".join(sorted(_DISPLAY_NAMES.get(f, f) for f in ALLOWED_FORMATS))
_OPENERS = tuple(sorted(ALLOWED_FORMATS))
_MB = 1024 * 1024  # as Chainlit's max_size_mb counts

_RGB_MODES = frozenset(
    {"RGB", "RGBA", "RGBX", "P", "PA", "YCbCr"}
)  # pictures an RGB profile can describe

pillow_heif.register_heif_opener()
# Pillow's own guard runs inside Image.open, before we can see the size, and
# between 89 and 179 MP it only warns. _check_pixels is stricter and exact, so
# it takes the job over. This is Pillow's one, process-wide setting.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class PreparedImage:
    """An image ready to send: encoded, sized and costed once, at preparation."""

    name: str  # the file name as the person gave it, for messages and placeholders
    source_format: str  # Pillow's name for the original, e.g. "JPEG", "HEIF"
    width: int  # of `data`, ≤ MAX_SIDE each
    height: int
    mime: str  # "image/jpeg" or "image/png", of `data`
    data: bytes = field(repr=False)
    tokens: int  # what Pixtral charges for it: image_tokens(width, height)

    def data_url(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"

    def to_content_part(self) -> dict:
        """The OpenAI chat content part; the only place the wire format is built."""
        return {"type": "image_url", "image_url": {"url": self.data_url()}}


def image_tokens(width: int, height: int) -> int:
    """Pixtral's token cost for an image: one per 16 px patch, plus one per row
    (the row break / image end), after the server's own downscale to MAX_SIDE."""
    width, height = _fit(width, height)
    rows = math.ceil(height / PATCH)
    return math.ceil(width / PATCH) * rows + rows


def prepare_image(name: str, data: bytes, *, max_bytes: int) -> PreparedImage:
    """Validate and prepare an uploaded file's bytes. CPU-bound, more so for big
    PNGs than for photos (docs/benchmarks.md, "Preparing a photo"): call it off
    the event loop.

    Raises InvalidAttachment for anything we will not send: empty, over
    `max_bytes`, not an allowed format (a PDF gets its own key), over
    MAX_PIXELS, or damaged (a truncated file is refused, never padded grey).
    """
    _check_size(name, len(data), max_bytes)
    with _open(name, io.BytesIO(data)) as image:
        _check_pixels(name, image)
        if image.format == "HEIF" and (fast := heic.decode_reduced(data, _fit)) is not None:
            return prepare_pil(name, fast, source_format="HEIF")
        return _prepare_opened(name, image)


def prepare_arriving(name: str, arriving: ArrivingBytes, *, max_bytes: int) -> PreparedImage | None:
    """Prepare a JPEG as `prepare_image` would, reading it while its upload is
    still arriving (`handlers.core.arriving`), so that decoding it is mostly done
    when the upload is. None when the upload stopped short of whole or outgrew
    what `arriving` holds: then nobody can ask about it, or `prepare_file` will
    say it is too big. Blocking, and waits for the bytes: give it its own thread."""
    try:
        with _open(name, cast(IO[bytes], arriving)) as image:  # a file, to Pillow
            _check_pixels(name, image)
            prepared = _prepare_opened(name, image)
        _check_size(name, arriving.seek(0, io.SEEK_END), max_bytes)  # waits for the end
    except Abandoned:
        return None
    return prepared


def _prepare_opened(name: str, image: Image.Image) -> PreparedImage:
    """Decode an opened picture and prepare it. A JPEG decodes straight to ½, ¼
    or ⅛ scale; a square bound is symmetric, so the stored (unrotated) size gives
    the right box whatever the EXIF orientation."""
    image.draft("RGB", _draft_request(*image.size))
    _decode(name, image)
    assert image.format is not None, "Image.open names the format it recognised"
    return prepare_pil(name, image, source_format=image.format)


def prepare_pil(name: str, image: Image.Image, *, source_format: str) -> PreparedImage:
    """Prepare an already decoded image (a PDF page, a video frame): flatten
    to RGB, downscale, turn upright per its EXIF, encode. Does not modify `image`."""
    upright = _UPRIGHT.get(image.getexif().get(ExifTags.Base.Orientation, 1))
    rgb = _to_rgb(image)
    flat = rgb.getcolors(_FLAT_COLOURS) is not None
    size = _fit(*rgb.size)
    if rgb.size != size:
        resample = _FLAT_RESAMPLE if flat else _PHOTO_RESAMPLE
        rgb = rgb.resize(size, resample, reducing_gap=_REDUCING_GAP)
    if upright is not None:
        rgb = rgb.transpose(upright)
    rgb = _in_srgb(rgb, image)
    mime, data = _encode(rgb, flat)
    return PreparedImage(
        name=name,
        source_format=source_format,
        width=rgb.width,
        height=rgb.height,
        mime=mime,
        data=data,
        tokens=image_tokens(rgb.width, rgb.height),
    )


async def prepare_file(name: str, path: str | os.PathLike, *, max_bytes: int) -> PreparedImage:
    """Prepare an uploaded file from disk in a worker thread. An oversized
    file is refused from its size on disk, without reading it."""
    return await run_cpu(_prepare_path, name, path, max_bytes)


def _prepare_path(name: str, path: str | os.PathLike, max_bytes: int) -> PreparedImage:
    _check_size(name, os.stat(path).st_size, max_bytes)
    with open(path, "rb") as file:
        data = file.read(max_bytes + 1)  # if it grew since stat, prepare_image says so
    return prepare_image(name, data, max_bytes=max_bytes)


def _check_size(name: str, size: int, max_bytes: int) -> None:
    if size == 0:
        raise InvalidAttachment("attachment.empty", name=name)
    if size > max_bytes:
        raise InvalidAttachment(
            "attachment.too_big",
            name=name,
            size_mb=_megabytes(size, up=True),
            limit_mb=_megabytes(max_bytes),
        )


def _megabytes(size: int, *, up: bool = False) -> int | float:
    """MB to one decimal for people; sizes round up so a refused file never
    reads as no bigger than the limit."""
    tenths = math.ceil(size * 10 / _MB) if up else round(size * 10 / _MB)
    return tenths // 10 if tenths % 10 == 0 else tenths / 10


def _open(name: str, file: IO[bytes]) -> Image.Image:
    """Identify the format from the content and read the header only."""
    try:
        return Image.open(file, formats=_OPENERS)
    except UnidentifiedImageError:
        file.seek(0)
        raise _not_an_image(name, file.read(HEAD_BYTES)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidAttachment("attachment.corrupt", name=name) from exc


def _not_an_image(name: str, data: bytes) -> InvalidAttachment:
    if looks_like_pdf(data):
        return InvalidAttachment("attachment.pdf", name=name)
    if looks_like_heif(data):  # a HEIC cut off before its first picture
        return InvalidAttachment("attachment.corrupt", name=name)
    return InvalidAttachment("attachment.unsupported", name=name, formats=_FORMATS_TEXT)


def _check_pixels(name: str, image: Image.Image) -> None:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise InvalidAttachment(
            "attachment.too_many_pixels",
            name=name,
            width=width,
            height=height,
            limit_mp=MAX_PIXELS // 1_000_000,
        )


def _decode(name: str, image: Image.Image) -> None:
    """Decode the pixels; a truncated or damaged file fails here (Pillow's
    LOAD_TRUNCATED_IMAGES must stay False, or it would be padded grey)."""
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidAttachment("attachment.corrupt", name=name) from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB, which is all Pixtral reads. Transparency goes onto white
    (the default black would hide dark text on transparent screenshots);
    16-bit values are scaled down, where Pillow's convert would clip them."""
    if image.mode == "I" or image.mode.startswith("I;16"):
        image = image.point(lambda value: value / 257)
    if not image.has_transparency_data:
        return image if image.mode == "RGB" else image.convert("RGB")
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    canvas = Image.new("RGB", rgba.size, "white")
    canvas.paste(rgba, mask=rgba.getchannel("A"))
    return canvas


def _in_srgb(rgb: Image.Image, source: Image.Image) -> Image.Image:
    """`rgb` converted to sRGB from the RGB colour profile `source` carries
    (an iPhone's Display P3, Adobe RGB), as browsers show it. Done on the
    1024 px result, where it is cheap. Photos with no profile, or an sRGB one,
    are left as they are (assumed sRGB)."""
    icc = (source.info.get("icc_profile") or b"") if source.mode in _RGB_MODES else b""
    return in_srgb(rgb, icc)


def _fit(width: int, height: int) -> tuple[int, int]:
    """Scale into MAX_SIDE × MAX_SIDE keeping the aspect ratio, rounding as
    mistral_common's ImageEncoder does (never below 1 px), so the size we send
    is the size the server would have made and the token counts agree."""
    ratio = max(width, height) / MAX_SIDE
    if ratio <= 1:
        return width, height
    return max(round(width / ratio), 1), max(round(height / ratio), 1)


def _draft_request(width: int, height: int) -> tuple[int, int]:
    """What to ask `Image.draft` for: the DCT scale whose longest side is at most
    1024 px and short of it by at most `_DRAFT_SHORTFALL`, if there is one;
    otherwise the target, which Pillow meets with the smallest scale no smaller.
    Pillow picks the largest scale `s` with `width // request >= s` on both
    sides and rounds the result up, hence the floors here."""
    longest = max(width, height)
    for scale in (8, 4, 2):
        if (1 - _DRAFT_SHORTFALL) * MAX_SIDE <= -(-longest // scale) <= MAX_SIDE:
            return max(width // scale, 1), max(height // scale, 1)
    return _fit(width, height)


def _encode(image: Image.Image, flat: bool) -> tuple[str, bytes]:
    """JPEG for photos; PNG for flat images unless it is much larger. The
    payload carries no metadata (no GPS, no thumbnail)."""
    jpeg = _save(image, "JPEG", quality=JPEG_QUALITY)  # optimize=False: it costs time
    if not flat:
        return "image/jpeg", jpeg
    png = _save(image, "PNG", compress_level=_PNG_LEVEL)
    if len(png) <= _PNG_MAX_RATIO * len(jpeg):
        return "image/png", png
    return "image/jpeg", jpeg


def _save(image: Image.Image, fmt: str, **options: int) -> bytes:
    buffer = io.BytesIO()
    # Pillow's PNG writer copies a profile from `image.info`: the pixels are sRGB now.
    image.save(buffer, fmt, icc_profile=None, **options)
    return buffer.getvalue()
