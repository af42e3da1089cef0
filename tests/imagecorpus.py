"""Test images, generated on demand: nothing binary is committed.

Each function returns the bytes of a file as someone might upload it. The big
photo is shared with bench/prepare_image.py, so the benchmark and the tests
measure the same kind of picture.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib

import numpy as np
import pillow_heif
from PIL import ExifTags, Image, ImageDraw, ImageFont

pillow_heif.register_heif_opener()  # encode(…, "HEIF"): iPhone-style photos

RED, GREEN, BLUE, WHITE = (230, 20, 20), (20, 200, 20), (20, 20, 230), (255, 255, 255)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def exif(orientation: int = 1) -> bytes:
    """Camera-style EXIF: make, model and the orientation tag."""
    tags = Image.Exif()
    tags[ExifTags.Base.Make] = "Imagecorpus"
    tags[ExifTags.Base.Model] = "Synthetic 12MP"
    tags[ExifTags.Base.Orientation] = orientation
    return tags.tobytes()


def photo(width: int = 4000, height: int = 3000, seed: int = 1) -> Image.Image:
    """Something that compresses like a phone photo: luminance detail at every
    scale from noise octaves (natural images have a ~1/f spectrum), blobs for
    hard edges, and smooth low-resolution chroma. At 4000×3000, q92 gives ~4.7 MB."""
    rng = np.random.default_rng(seed)
    detail = [(800, 50), (200, 30), (50, 20), (12, 14), (3, 12), (1, 12)]  # (cell px, amplitude)
    luma = _octaves(rng, width, height, detail)
    luma += (np.asarray(_blobs(rng, width, height), np.int16) - 128) // 2
    chroma = [
        _to_l(_octaves(rng, width // 4, height // 4, [(200, 30), (50, 15), (12, 8)])).resize(
            (width, height), Image.Resampling.BILINEAR
        )
        for _ in range(2)
    ]
    return Image.merge("YCbCr", (_to_l(luma), *chroma)).convert("RGB")


def _octaves(rng, width, height, octaves) -> np.ndarray:
    """Sum of uniform noise, each octave drawn on a grid of `cell` px and upscaled."""
    total = np.full((height, width), 128, np.int16)
    for cell, amplitude in octaves:
        shape = (max(height // cell, 2), max(width // cell, 2))
        grid = rng.integers(128 - amplitude, 128 + amplitude + 1, shape, np.uint8)
        layer = Image.fromarray(grid, "L").resize((width, height), Image.Resampling.BICUBIC)
        total += np.asarray(layer, np.int16) - 128
    return total


def _blobs(rng, width, height) -> Image.Image:
    shapes = Image.new("L", (width, height), 128)
    draw = ImageDraw.Draw(shapes)
    for _ in range(40):
        x, y = rng.integers(-200, width), rng.integers(-200, height)
        w, h = rng.integers(width // 50, width // 3, 2)
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x, y, x + w, y + h), fill=int(rng.integers(0, 256)))
    return shapes


def _to_l(values: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), "L")


@functools.cache
def photo_jpeg(width: int = 4000, height: int = 3000, orientation: int = 1) -> bytes:
    """The 12 MP phone photo as a q92 JPEG with EXIF (cached: ~0.7 s to make)."""
    return encode(photo(width, height), "JPEG", quality=92, exif=exif(orientation))


def quadrants(width: int, height: int) -> Image.Image:
    """Red top-left, green top-right, blue bottom-left, white bottom-right:
    any wrong rotation or flip moves a colour to the wrong corner."""
    image = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width // 2 - 1, height // 2 - 1), fill=RED)
    draw.rectangle((width // 2, 0, width, height // 2 - 1), fill=GREEN)
    draw.rectangle((0, height // 2, width // 2 - 1, height), fill=BLUE)
    return image


# How a camera stores an upright picture for each EXIF orientation we test.
_STORED_AS = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}


def rotated(orientation: int, width: int = 3000, height: int = 2000, fmt: str = "JPEG") -> bytes:
    """`quadrants(width, height)` as seen upright, stored turned with the EXIF
    orientation that tells viewers how to turn it back."""
    stored = quadrants(width, height).transpose(_STORED_AS[orientation])
    return encode(stored, fmt, exif=exif(orientation), **({"quality": 90} if fmt == "JPEG" else {}))


def screenshot(width: int = 2560, height: int = 1440) -> Image.Image:
    """A UI screenshot: flat panels and lots of anti-aliased text."""
    image = Image.new("RGB", (width, height), (250, 250, 252))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, 60), fill=(40, 44, 52))
    draw.rectangle((0, 60, 300, height), fill=(235, 237, 240))
    small, large = ImageFont.load_default(size=22), ImageFont.load_default(size=34)
    draw.text((340, 80), "Quarterly report: revenue by region", fill=(10, 10, 10), font=large)
    for row in range(40):
        draw.text((20, 80 + row * 40), f"Sidebar item {row}", fill=(60, 60, 60), font=small)
        line = f"Row {row}: Lorem ipsum dolor sit amet, consectetur adipiscing {row * 37 % 101}%"
        draw.text((340, 140 + row * 32), line, fill=(30, 30, 30), font=small)
    return image


def transparent_png() -> bytes:
    """Left half opaque red, right half fully transparent black: flattening
    onto black instead of white would make the right half black."""
    image = Image.new("RGBA", (64, 32), (0, 0, 0, 0))
    image.paste(RED + (255,), (0, 0, 32, 32))
    return encode(image, "PNG")


def keyed_png(mode: str) -> bytes:
    """Left half blue, right half the colour a tRNS chunk declares transparent
    (black): the way palette, greyscale and RGB PNGs do transparency."""
    if mode == "P":
        image = Image.new("P", (64, 32), 0)
        image.putpalette([0, 0, 0, *BLUE])
        image.paste(1, (0, 0, 32, 32))
        return encode(image, "PNG", transparency=0)
    image = Image.new("RGB", (64, 32), (0, 0, 0))
    image.paste(BLUE, (0, 0, 32, 32))
    image = image.convert(mode)
    return encode(image, "PNG", transparency=0 if mode == "L" else (0, 0, 0))


def grey_alpha_png() -> bytes:
    """LA: left half opaque black, right half transparent black."""
    image = Image.new("LA", (64, 32), (0, 0))
    image.paste((0, 255), (0, 0, 32, 32))
    return encode(image, "PNG")


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (64, 32), (255, 0, 0, 0)), "JPEG", quality=95)  # cyan


def png_16bit() -> bytes:
    """16-bit greyscale at 50%: clipping (Pillow's plain convert) would give white."""
    return encode(Image.new("I;16", (64, 32), 32896), "PNG")


def one_bit_png() -> bytes:
    image = Image.new("1", (64, 32), 1)
    image.paste(0, (0, 0, 32, 32))
    return encode(image, "PNG")


def animated_gif() -> bytes:
    """First frame red, second blue: only the first should be used."""
    frames = [Image.new("RGB", (32, 32), colour) for colour in (RED, BLUE)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def mpo() -> bytes:
    """A multi-picture JPEG (how phones attach depth/HDR maps); Pillow calls it MPO."""
    frames = [Image.new("RGB", (64, 48), colour) for colour in (GREEN, BLUE)]
    return encode(frames[0], "MPO", save_all=True, append_images=frames[1:])


def simple(fmt: str, size: tuple[int, int] = (64, 48), **options) -> bytes:
    return encode(Image.new("RGB", size, GREEN), fmt, **options)


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG header declaring `width`×`height` 1-bit pixels, then the
    start of an unfinished zlib stream: what a bomb looks like before decoding
    (a whole 20000×20000 1-bit PNG is only ~50 KB), cut off like a download."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    stream = zlib.compressobj()
    scrap = stream.compress(bytes(1 + (width + 7) // 8)) + stream.flush(
        zlib.Z_SYNC_FLUSH
    )  # one black row
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", scrap) + chunk(b"IEND", b"")
    )


HTML = b"<!DOCTYPE html>\n<html><head><title>Not a photo</title></head><body>hi</body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="9"/></svg>'
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)


def random_bytes(size: int = 4096, seed: int = 7) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, np.uint8).tobytes()


# Display P3 (an iPhone's colour space) as an ICC v2 matrix/TRC profile: its
# colorants adapted to D50 (Bradford), as in Apple's profile, and the sRGB curve.
_P3_COLORANTS = (
    (0.51512, 0.24120, -0.00105),
    (0.29198, 0.69225, 0.04189),
    (0.15710, 0.06657, 0.78407),
)
_D50 = (0.96420, 1.0, 0.82491)


def display_p3_icc() -> bytes:
    def fixed(*values: float) -> bytes:
        return b"".join(struct.pack(">i", round(v * 65536)) for v in values)

    text = b"Display P3 (imagecorpus)"
    curve = (
        b"para\0\0\0\0"
        + struct.pack(">HH", 3, 0)
        + fixed(2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)
    )
    tags = [
        (
            b"desc",
            b"desc\0\0\0\0"
            + struct.pack(">I", len(text) + 1)
            + text
            + b"\0"
            + bytes(4 + 4 + 2 + 1 + 67),
        ),
        (b"wtpt", b"XYZ \0\0\0\0" + fixed(*_D50)),
        *(
            (tag, b"XYZ \0\0\0\0" + fixed(*xyz))
            for tag, xyz in zip((b"rXYZ", b"gXYZ", b"bXYZ"), _P3_COLORANTS)
        ),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
        (b"cprt", b"text\0\0\0\0public domain\0"),
    ]
    offset, table, body = 128 + 4 + 12 * len(tags), b"", b""
    for signature, data in tags:
        data += bytes(-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (
        struct.pack(">I4sI", size, b"\0\0\0\0", 0x02100000)
        + b"mntrRGB XYZ "
        + bytes(12)
        + b"acsp"
        + bytes(4 + 4 + 4 + 4 + 8)
        + struct.pack(">I", 0)
        + fixed(*_D50)
        + bytes(4 + 16 + 28)
    )
    return header + struct.pack(">I", len(tags)) + table + body


def heic_grid(
    image: Image.Image,
    *,
    tile: int = 256,
    quality: int = 80,
    orientation: int = 1,
    icc: bytes | None = None,
) -> bytes:
    """A HEIC shaped like an iPhone's: a grid of `tile`-px HEVC tiles (the
    iPhone's are 512), the EXIF orientation stored as `irot`, and an ICC profile."""
    options = {"icc_profile": icc} if icc else {}
    return encode(image, "HEIF", quality=quality, tile_size=tile, exif=exif(orientation), **options)
