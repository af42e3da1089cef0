"""Media files made by the tests themselves: small videos, audio, PDFs.

Videos are written with PyAV and paint each frame one flat colour chosen by
its time (`colour_at`), so a test can read back which moment a sampled frame
came from. PDFs are written by hand — a few objects and an xref table — which
also lets us produce the ones no library here writes: password-protected
(RC4, the standard security handler revision 2) and page-less documents.
"""

from __future__ import annotations

import hashlib
import io
import struct
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import pillow_heif
from PIL import Image

RGB = tuple[int, int, int]

# (container format, encoder, file suffix): one of each family prepare_video accepts.
VIDEO_KINDS = (
    ("mp4", "libx264", ".mp4"),
    ("mov", "libx264", ".mov"),
    ("matroska", "libx264", ".mkv"),
    ("webm", "libvpx-vp9", ".webm"),
    ("webm", "libvpx", ".webm"),
    ("avi", "mpeg4", ".avi"),
)
PALETTE: tuple[RGB, ...] = (
    (230, 25, 25),
    (25, 200, 40),
    (30, 60, 230),
    (240, 220, 20),
    (200, 30, 200),
    (20, 210, 220),
    (250, 140, 10),
    (120, 120, 120),
    (255, 255, 255),
    (10, 10, 10),
)


def colour_at(seconds: float, every: float = 1.0) -> RGB:
    """The flat colour of the frame shown at `seconds`: a new one each `every` seconds."""
    return PALETTE[int(seconds // every) % len(PALETTE)]


def nearest_colour_index(rgb: Sequence[float]) -> int:
    def distance(index: int) -> float:
        return sum((a - b) ** 2 for a, b in zip(PALETTE[index], rgb))

    return min(range(len(PALETTE)), key=distance)


def write_video(
    path: Path,
    *,
    container: str = "mp4",
    codec: str = "libx264",
    size: tuple[int, int] = (64, 36),
    times: Sequence[float] | None = None,
    seconds: float = 3.0,
    fps: int = 10,
    gop: int | None = None,
    rotation: int | None = None,
    paint: Callable[[float], RGB] = colour_at,
    options: dict[str, str] | None = None,
) -> Path:
    """A clip whose frame at t seconds is `paint(t)`; `times` gives a variable frame rate."""
    times = list(times) if times is not None else [i / fps for i in range(round(seconds * fps))]
    with av.open(str(path), "w", format=container, options=options or {}) as output:
        stream = output.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.gop_size = gop or fps
        if codec == "libx264":
            stream.options = {"preset": "ultrafast"}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for at in times:
            frame = av.VideoFrame.from_image(Image.new("RGB", size, paint(at)))
            frame.pts, frame.time_base = round(at * 1000), Fraction(1, 1000)
            output.mux(stream.encode(frame.reformat(format="yuv420p")))
        output.mux(stream.encode())
    return path


def write_marked_video(path: Path, *, rotation: int, size: tuple[int, int] = (64, 32)) -> Path:
    """Blue frames with a red top-left quarter, stored sideways with `rotation`."""
    marked = Image.new("RGB", size, (0, 0, 255))
    marked.paste((255, 0, 0), (0, 0, size[0] // 2, size[1] // 2))
    with av.open(str(path), "w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"preset": "ultrafast"}
        stream.set_display_rotation(rotation)
        for index in range(5):
            frame = av.VideoFrame.from_image(marked).reformat(format="yuv420p")
            frame.pts = index
            output.mux(stream.encode(frame))
        output.mux(stream.encode())
    return path


def write_audio(path: Path, *, container: str, codec: str, seconds: float = 1.0) -> Path:
    """A silent audio-only file."""
    rate = 44100 if codec != "libopus" else 48000
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame_size = stream.codec_context.frame_size or 1024
        sample_format = stream.codec_context.format.name
        for index in range(int(seconds * rate / frame_size) + 1):
            frame = av.AudioFrame(format=sample_format, layout="mono", samples=frame_size)
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            frame.rate, frame.pts = rate, index * frame_size
            output.mux(stream.encode(frame))
        output.mux(stream.encode())
    return path


def write_empty_video(path: Path, *, container: str, codec: str) -> Path:
    """A container with a video stream declared but not one frame in it."""
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 36, "yuv420p"
        output.start_encoding()
    return path


def write_subtitles_only(path: Path) -> Path:
    """A Matroska file whose one stream is a subtitle line: streams, but no picture."""
    with av.open(str(path), "w", format="matroska") as output:
        stream = output.add_mux_stream("subrip")
        stream.time_base = Fraction(1, 1000)
        output.start_encoding()
        packet = av.Packet(b"hello")
        packet.stream, packet.time_base = stream, Fraction(1, 1000)
        packet.pts = packet.dts = 0
        packet.duration = 1000
        output.mux(packet)
    return path


def image_bytes(format: str, size: tuple[int, int] = (40, 30)) -> bytes:
    """A small red picture in Pillow's `format` (HEIF through pillow-heif)."""
    pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buffer, format)
    return buffer.getvalue()


# --- PDFs -------------------------------------------------------------------

A4 = (595.0, 842.0)
_PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")


def fill(rgb: RGB, box: tuple[float, float, float, float]) -> bytes:
    """Content-stream operators painting `box` (x, y, w, h, origin bottom-left) in `rgb`."""
    r, g, b = (c / 255 for c in rgb)
    x, y, w, h = box
    return f"{r:.3f} {g:.3f} {b:.3f} rg {x} {y} {w} {h} re f\n".encode()


def flat_page(rgb: RGB, size: tuple[float, float] = A4) -> tuple[tuple[float, float], bytes]:
    return size, fill(rgb, (0, 0, *size))


def split_page(first: RGB, second: RGB, size: tuple[float, float] = A4):
    """Top half `first`, bottom half `second` (left/right for a landscape page)."""
    w, h = size
    if h >= w:
        return size, fill(first, (0, h / 2, w, h / 2)) + fill(second, (0, 0, w, h / 2))
    return size, fill(first, (0, 0, w / 2, h)) + fill(second, (w / 2, 0, w / 2, h))


def write_pdf(
    path: Path,
    pages: Sequence[tuple[tuple[float, float], bytes]],
    *,
    user_password: str | None = None,
    owner_password: str = "owner",
) -> Path:
    """A PDF of `pages` ((width, height) in points, content stream); with
    `user_password` (may be "") it is RC4-encrypted, revision 2."""
    count = len(pages)
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (b" ".join(b"%d 0 R" % (3 + 2 * i) for i in range(count)), count),
    ]
    file_id = hashlib.md5(str(path).encode()).digest()
    security = None
    if user_password is not None:
        security = _security(user_password, owner_password, file_id)
    for index, ((width, height), content) in enumerate(pages):
        content_number = 4 + 2 * index
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %g %g] /Contents %d 0 R >>"
            % (width, height, content_number)
        )
        if security:
            content = _rc4(_object_key(security[0], content_number), content)
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
    trailer_extra = b""
    if security:
        key, owner_hash, user_hash = security
        objects.append(
            b"<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P -4 >>"
            % (owner_hash.hex().encode(), user_hash.hex().encode())
        )
        trailer_extra = b" /Encrypt %d 0 R" % len(objects)
    path.write_bytes(_assemble(objects, trailer_extra, file_id))
    return path


def _assemble(objects: list[bytes], trailer_extra: bytes, file_id: bytes) -> bytes:
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /ID [<%s> <%s>]%s >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        file_id.hex().encode(),
        file_id.hex().encode(),
        trailer_extra,
        xref,
    )
    return bytes(out)


def _security(user: str, owner: str, file_id: bytes) -> tuple[bytes, bytes, bytes]:
    """(file key, /O, /U) per PDF 1.7 §7.6.3.3, algorithms 2-4, 40-bit RC4."""
    padded_user = (user.encode("latin-1") + _PAD)[:32]
    owner_key = hashlib.md5((owner.encode("latin-1") + _PAD)[:32]).digest()[:5]
    owner_hash = _rc4(owner_key, padded_user)
    key = hashlib.md5(padded_user + owner_hash + struct.pack("<i", -4) + file_id).digest()[:5]
    return key, owner_hash, _rc4(key, _PAD)


def _object_key(key: bytes, number: int) -> bytes:
    return hashlib.md5(key + struct.pack("<I", number)[:3] + b"\x00\x00").digest()[:10]


def _rc4(key: bytes, data: bytes) -> bytes:
    state = list(range(256))
    j = 0
    for i in range(256):
        j = (j + state[i] + key[i % len(key)]) % 256
        state[i], state[j] = state[j], state[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + state[i]) % 256
        state[i], state[j] = state[j], state[i]
        out.append(byte ^ state[(state[i] + state[j]) % 256])
    return bytes(out)
