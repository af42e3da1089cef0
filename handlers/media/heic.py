"""iPhone-style HEIC photos decoded fast: FFmpeg's HEVC decoder, tiles on two cores, at 1024 px.

Why: a 12 MP iPhone HEIC is a grid of 48 HEVC tiles of 512×512. libheif
(pillow-heif) decodes it with libde265 and converts it to full-size RGB.
FFmpeg's decoder (PyAV, already here for videos) takes less CPU for the same
tiles (docs/benchmarks.md, "Preparing a HEIC"), and each tile is converted by
`swscale` straight to RGB at its share of the 1024 px result (area-averaged),
so neither a full-size nor a half-size picture is ever made (~2.4 MB of pixels
instead of 36 MB); the tiles are split over the CPU pool's helper thread
(`workers.run_split`). The turn (`irot`) is left to the caller as an EXIF
orientation, which turns the small result.

Owns only the common shape: a `grid` primary item of 8-bit 4:2:0 HEVC tiles,
turned by `irot` at most. Anything else — no grid, alpha, a mirror or crop,
10-bit, AVIF, a bitstream FFmpeg complains about — returns None, and the
caller decodes it with pillow-heif as before, which also keeps refusing
damaged files the way it did. Limits (size, pixels) are checked by the caller
before this runs.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import av
from PIL import ExifTags, Image

from handlers.core.workers import run_split

# irot (quarter turns anticlockwise) → the EXIF orientation asking for the same turn.
_ORIENTATIONS = {1: 8, 2: 3, 3: 6}
# nclx matrix_coefficients (ITU-T H.273) → swscale's colour space; others go to pillow-heif.
_MATRICES = {1: "ITU709", 5: "ITU601", 6: "ITU601"}
_ALPHA_URNS = (b"urn:mpeg:hevc:2015:auxid:1", b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha")
_PIXEL_FORMATS = frozenset({"yuvj420p", "yuv420p"})
# The meta box's children by kind, each as its body's span.
_Boxes = dict[bytes, tuple[int, int]]


class _Unusual(Exception):
    """Not the shape this module handles: the caller uses pillow-heif."""


@dataclass(frozen=True)
class Grid:
    tiles: tuple[int, ...]  # item ids, row by row
    rows: int
    columns: int
    width: int  # the grid's output size, before rotation
    height: int
    rotation: int  # irot: quarter turns anticlockwise
    icc: bytes | None
    matrix: str | None  # from an nclx colour box, if any


def decode_reduced(data: bytes, fit: Callable[[int, int], tuple[int, int]]) -> Image.Image | None:
    """The primary picture as RGB, already at `fit(width, height)` (each tile scaled
    by swscale to its share of that size, so no full-size picture is ever made),
    not yet turned: its `irot` comes back as the EXIF orientation, for the caller
    to turn the small result. None when this is not a tiled 8-bit HEIC that
    FFmpeg decodes without complaint."""
    try:
        grid = read_grid(data)
        return _decode(data, grid, fit(grid.width, grid.height))
    except (_Unusual, struct.error, av.error.FFmpegError, ValueError, IndexError, KeyError):
        return None


def read_grid(data: bytes) -> Grid:
    meta = _child(data, 0, len(data), b"meta", full=True)
    boxes = {kind: (start, end) for kind, start, end in _boxes(data, *meta)}
    primary = _primary(data, *boxes[b"pitm"])
    types = _item_types(data, *boxes[b"iinf"])
    if types.get(primary) != b"grid":
        raise _Unusual
    refs = _references(data, *boxes[b"iref"]) if b"iref" in boxes else []
    tiles = next((to for kind, source, to in refs if kind == b"dimg" and source == primary), ())
    pictures = {primary, *tiles}  # alpha may hang off the grid or off each tile
    if any(
        kind == b"auxl" and pictures & set(to) and _is_alpha(data, boxes, source)
        for kind, source, to in refs
    ):
        raise _Unusual
    properties = _properties(data, boxes, primary)
    if (
        b"imir" in properties
        or b"clap" in properties
        or any(types.get(t) != b"hvc1" for t in tiles)
    ):
        raise _Unusual
    payload = _item_data(data, boxes, primary)
    rows, columns = payload[2] + 1, payload[3] + 1
    width, height = struct.unpack_from(">II" if payload[1] & 1 else ">HH", payload, 4)
    if len(tiles) != rows * columns:
        raise _Unusual
    icc, matrix = _colour(data, properties.get(b"colr", []))
    rotation = data[properties[b"irot"][0][0]] & 3 if b"irot" in properties else 0
    return Grid(tuple(tiles), rows, columns, width, height, rotation, icc, matrix)


def _decode(data: bytes, grid: Grid, size: tuple[int, int]) -> Image.Image:
    canvas = Image.new("RGB", size)
    scale = (size[0] / grid.width, size[1] / grid.height)
    halves = [grid.tiles[n::2] for n in range(2)]
    counts = run_split(
        [partial(_decode_tiles, data, grid, ids, canvas, scale) for ids in halves if ids]
    )
    if sum(counts) != len(grid.tiles):
        raise _Unusual  # a tile that decoded to nothing
    if grid.rotation:
        orientation = Image.Exif()
        orientation[ExifTags.Base.Orientation] = _ORIENTATIONS[grid.rotation]
        canvas.info["exif"] = orientation.tobytes()
    if grid.icc:
        canvas.info["icc_profile"] = grid.icc
    return canvas


def _decode_tiles(
    data: bytes, grid: Grid, items: tuple[int, ...], canvas: Image.Image, scale: tuple[float, float]
) -> int:
    """Decode `items` and paste each, scaled, into its cell of `canvas` (the
    halves write disjoint cells). Returns how many tiles were pasted."""
    cells = {item: divmod(n, grid.columns) for n, item in enumerate(grid.tiles) if item in items}
    pasted = 0
    with av.open(io.BytesIO(data), "r", format="mov") as container:
        streams = tuple(s for s in container.streams.video if s.id in cells)
        if len(streams) != len(cells):
            raise _Unusual
        for stream in streams:
            stream.codec_context.thread_count = 1  # one tile at a time; the halves run side by side
            stream.codec_context.options = {"err_detect": "explode"}
        for packet in container.demux(streams):
            for frame in packet.decode():
                row, column = cells[packet.stream.id]
                left, right = (
                    round(column * frame.width * scale[0]),
                    round((column + 1) * frame.width * scale[0]),
                )
                top, bottom = (
                    round(row * frame.height * scale[1]),
                    round((row + 1) * frame.height * scale[1]),
                )
                canvas.paste(_to_rgb(frame, grid.matrix, (right - left, bottom - top)), (left, top))
                pasted += 1
    return pasted


def _to_rgb(frame: av.VideoFrame, matrix: str | None, size: tuple[int, int]) -> Image.Image:
    if frame.format.name not in _PIXEL_FORMATS or min(size) < 1:
        raise _Unusual
    # src_colorspace=None is the frame's own, as when it is left out
    return frame.reformat(*size, "rgb24", src_colorspace=matrix, interpolation="AREA").to_image()


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    while start + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, start)
        header = 8
        if size == 1:
            size, header = struct.unpack_from(">Q", data, start + 8)[0], 16
        elif size == 0:
            size = end - start
        if size < header or start + size > end:
            raise _Unusual
        yield kind, start + header, start + size
        start += size


def _child(
    data: bytes, start: int, end: int, kind: bytes, *, full: bool = False
) -> tuple[int, int]:
    for found, body, stop in _boxes(data, start, end):
        if found == kind:
            return body + (4 if full else 0), stop
    raise _Unusual


def _primary(data: bytes, start: int, end: int) -> int:
    return struct.unpack_from(">H" if data[start] == 0 else ">I", data, start + 4)[0]


def _item_types(data: bytes, start: int, end: int) -> dict[int, bytes]:
    first = start + (6 if data[start] == 0 else 8)
    types = {}
    for kind, body, _ in _boxes(data, first, end):
        if kind == b"infe" and data[body] >= 2:
            wide = data[body] >= 3
            item = struct.unpack_from(">I" if wide else ">H", data, body + 4)[0]
            types[item] = data[body + (10 if wide else 8) : body + (14 if wide else 12)]
    return types


def _references(data: bytes, start: int, end: int) -> list[tuple[bytes, int, tuple[int, ...]]]:
    fmt = ">H" if data[start] == 0 else ">I"
    width = struct.calcsize(fmt)
    refs = []
    for kind, body, _ in _boxes(data, start + 4, end):
        source = struct.unpack_from(fmt, data, body)[0]
        count = struct.unpack_from(">H", data, body + width)[0]
        to = struct.unpack_from(">" + fmt[1] * count, data, body + width + 2)
        refs.append((kind, source, to))
    return refs


def _properties(data: bytes, boxes: _Boxes, item: int) -> dict[bytes, list[tuple[int, int]]]:
    """The item's properties by kind (a picture may have two colour boxes), each as its body's span."""
    iprp = boxes[b"iprp"]
    ipco = list(_boxes(data, *_child(data, *iprp, b"ipco")))
    start, end = _child(data, *iprp, b"ipma")
    version, flags = data[start], int.from_bytes(data[start + 1 : start + 4], "big")
    pos, count = start + 8, struct.unpack_from(">I", data, start + 4)[0]
    for _ in range(count):
        entry = struct.unpack_from(">H" if version < 1 else ">I", data, pos)[0]
        pos += 2 if version < 1 else 4
        associations, pos = data[pos], pos + 1
        indexes = []
        for _ in range(associations):
            if flags & 1:
                indexes.append(struct.unpack_from(">H", data, pos)[0] & 0x7FFF)
                pos += 2
            else:
                indexes.append(data[pos] & 0x7F)
                pos += 1
        if entry == item:
            found: dict[bytes, list[tuple[int, int]]] = {}
            for i in indexes:
                if i:
                    found.setdefault(ipco[i - 1][0], []).append(ipco[i - 1][1:])
            return found
    raise _Unusual


def _item_data(data: bytes, boxes: _Boxes, item: int) -> bytes:
    start, end = boxes[b"iloc"]
    version = data[start]
    sizes = data[start + 4], data[start + 5]
    offset_size, length_size, base_size = sizes[0] >> 4, sizes[0] & 15, sizes[1] >> 4
    index_size = sizes[1] & 15 if version in (1, 2) else 0
    pos = start + 6
    count = struct.unpack_from(">H" if version < 2 else ">I", data, pos)[0]
    pos += 2 if version < 2 else 4

    def number(size: int) -> int:
        nonlocal pos
        value = int.from_bytes(data[pos : pos + size], "big")
        pos += size
        return value

    for _ in range(count):
        entry = number(2 if version < 2 else 4)
        method = number(2) & 15 if version in (1, 2) else 0
        number(2)  # data_reference_index
        base = number(base_size)
        extents = []
        for _ in range(number(2)):
            number(index_size)
            extents.append((base + number(offset_size), number(length_size)))
        if entry != item:
            continue
        if method == 1:
            source = boxes[b"idat"][0]
            return b"".join(data[source + o : source + o + n] for o, n in extents)
        if method == 0:
            return b"".join(data[o : o + n] for o, n in extents)
        raise _Unusual
    raise _Unusual


def _colour(data: bytes, boxes: list[tuple[int, int]]) -> tuple[bytes | None, str | None]:
    """The ICC profile and the nclx matrix, from the picture's colour boxes."""
    icc = matrix = None
    for start, end in boxes:
        kind = data[start : start + 4]
        if kind in (b"prof", b"rICC"):
            icc = data[start + 4 : end]
        elif kind == b"nclx":
            coefficients = struct.unpack_from(">H", data, start + 8)[0]
            if coefficients not in _MATRICES:
                raise _Unusual
            matrix = _MATRICES[coefficients]
    return icc, matrix


def _is_alpha(data: bytes, boxes: _Boxes, item: int) -> bool:
    try:
        auxc = _properties(data, boxes, item).get(b"auxC")
    except _Unusual:
        return True  # cannot tell: let pillow-heif decide
    return not auxc or any(urn in data[start:end] for start, end in auxc for urn in _ALPHA_URNS)
