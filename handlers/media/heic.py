"""iPhone-style HEIC photos decoded fast: FFmpeg's HEVC decoder, tiles on two cores, at 1024 px.

Why: a 12 MP iPhone HEIC is a grid of 48 HEVC tiles of 512×512. libheif
(pillow-heif) decodes it with libde265 and converts it to full-size RGB.
FFmpeg's decoder (PyAV, already here for videos) takes less CPU for the same
tiles (docs/benchmarks.md, "Preparing a HEIC"). The tiles' data is read from
the file's own item table and fed to one decoder per core (opening one per
tile cost as much as converting it); each tile is converted by `swscale`
straight to RGB at its share of the 1024 px result (area-averaged) and from
its colour profile to sRGB, so neither a full-size nor a half-size picture is
ever made (~2.4 MB of pixels instead of 36 MB), and every step but the final
encode runs on both cores: the tiles are split over the CPU pool's helper
thread (`workers.run_split`). The turn (`irot`) is left to the caller as an
EXIF orientation, which turns the small result.

Owns only the common shape: a `grid` primary item of 8-bit 4:2:0 HEVC tiles,
turned by `irot` at most. Anything else — no grid, alpha, a mirror or crop,
10-bit, AVIF, a bitstream FFmpeg complains about — returns None, and the
caller decodes it with pillow-heif as before, which also keeps refusing
damaged files the way it did. Limits (size, pixels) are checked by the caller
before this runs.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import av
from av.video.reformatter import Colorspace, VideoReformatter
from PIL import ExifTags, Image

from handlers.core.workers import run_split
from handlers.media.colour import in_srgb

# irot (quarter turns anticlockwise) → the EXIF orientation asking for the same turn.
_ORIENTATIONS = {1: 8, 2: 3, 3: 6}
# nclx matrix_coefficients (ITU-T H.273) → swscale's colour space; others go to pillow-heif.
_MATRICES = {1: Colorspace.ITU709, 5: Colorspace.ITU601, 6: Colorspace.ITU601}
_ALPHA_URNS = (b"urn:mpeg:hevc:2015:auxid:1", b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha")
_PIXEL_FORMATS = frozenset({"yuvj420p", "yuv420p"})
# The meta box's children by kind, each as its body's span.
_Boxes = dict[bytes, tuple[int, int]]


class _Unusual(Exception):
    """Not the shape this module handles: the caller uses pillow-heif."""


@dataclass(frozen=True)
class Grid:
    tiles: tuple[memoryview, ...]  # each tile's HEVC data, row by row
    config: bytes  # the tiles' HEVC decoder configuration (hvcC), one for all
    rows: int
    columns: int
    width: int  # the grid's output size, before rotation
    height: int
    rotation: int  # irot: quarter turns anticlockwise
    icc: bytes | None
    matrix: Colorspace | None  # from an nclx colour box, if any


def decode_reduced(data: bytes, fit: Callable[[int, int], tuple[int, int]]) -> Image.Image | None:
    """The primary picture as sRGB, already at `fit(width, height)` (each tile
    scaled by swscale to its share of that size, so no full-size picture is ever
    made), with no colour profile left to apply, not yet turned: its `irot`
    comes back as the EXIF orientation, for the caller to turn the small result.
    None when this is not a tiled 8-bit HEIC that FFmpeg decodes without
    complaint."""
    try:
        grid = read_grid(data)
        return _decode(grid, fit(grid.width, grid.height))
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
    table = _property_table(data, boxes)
    pictures = {primary, *tiles}  # alpha may hang off the grid or off each tile
    if any(
        kind == b"auxl" and pictures & set(to) and _is_alpha(data, table, source)
        for kind, source, to in refs
    ):
        raise _Unusual
    properties = table[primary]
    if (
        b"imir" in properties
        or b"clap" in properties
        or any(types.get(t) != b"hvc1" for t in tiles)
    ):
        raise _Unusual
    configs = {_only(data, table.get(t, {}).get(b"hvcC", [])) for t in tiles}
    if len(configs) != 1:
        raise _Unusual  # tiles with configurations of their own: not an iPhone's
    locations = _locations(data, boxes)
    payload = locations[primary]
    rows, columns = payload[2] + 1, payload[3] + 1
    width, height = struct.unpack_from(">II" if payload[1] & 1 else ">HH", payload, 4)
    if len(tiles) != rows * columns:
        raise _Unusual
    icc, matrix = _colour(data, properties.get(b"colr", []))
    rotation = data[properties[b"irot"][0][0]] & 3 if b"irot" in properties else 0
    return Grid(
        tuple(locations[t] for t in tiles),
        configs.pop(),
        rows,
        columns,
        width,
        height,
        rotation,
        icc,
        matrix,
    )


def _only(data: bytes, spans: list[tuple[int, int]]) -> bytes:
    if len(spans) != 1:
        raise _Unusual
    return data[spans[0][0] : spans[0][1]]


def _decode(grid: Grid, size: tuple[int, int]) -> Image.Image:
    canvas = Image.new("RGB", size)
    scale = (size[0] / grid.width, size[1] / grid.height)
    # Both threads take the next tile from one iterator (next() on it is atomic
    # under the GIL): a thread given the busier tiles does fewer of them.
    cells = iter(enumerate(grid.tiles))
    counts = run_split([partial(_decode_tiles, grid, cells, canvas, scale) for _ in range(2)])
    if sum(counts) != len(grid.tiles):
        raise _Unusual  # a tile that decoded to nothing
    if grid.rotation:
        orientation = Image.Exif()
        orientation[ExifTags.Base.Orientation] = _ORIENTATIONS[grid.rotation]
        canvas.info["exif"] = orientation.tobytes()
    return canvas


def _decode_tiles(
    grid: Grid,
    cells: Iterator[tuple[int, memoryview]],
    canvas: Image.Image,
    scale: tuple[float, float],
) -> int:
    """Decode the tiles `cells` yields (their index in the grid, their HEVC data)
    with one decoder, and paste each, scaled, into its cell of `canvas` (the
    threads write disjoint cells). Returns how many tiles were pasted.

    One decoder for all of them, not one per tile, and one swscale context per
    cell size: opening either costs about as much as converting a tile."""
    decoder = av.CodecContext.create("hevc", "r")
    decoder.extradata = grid.config
    decoder.thread_count = 1  # one tile at a time; the two threads run side by side
    decoder.options = {"err_detect": "explode"}
    scalers: dict[tuple[int, int], VideoReformatter] = {}
    pasted = 0
    icc = grid.icc or b""

    def paste(frame: av.VideoFrame) -> None:
        nonlocal pasted
        if frame.pts is None or not 0 <= frame.pts < len(grid.tiles):
            raise _Unusual
        row, column = divmod(frame.pts, grid.columns)
        left, right = (
            round(column * frame.width * scale[0]),
            round((column + 1) * frame.width * scale[0]),
        )
        top, bottom = (
            round(row * frame.height * scale[1]),
            round((row + 1) * frame.height * scale[1]),
        )
        cell = (right - left, bottom - top)
        scaler = scalers.setdefault(cell, VideoReformatter())
        tile = in_srgb(_to_rgb(scaler, frame, grid.matrix, cell), icc)
        canvas.paste(tile, (left, top))
        pasted += 1

    for index, tile in cells:
        packet = av.Packet(bytes(tile))  # PyAV copies it either way
        packet.pts = index
        for frame in decoder.decode(packet):
            paste(frame)
    for frame in decoder.decode(None):
        paste(frame)
    return pasted


def _to_rgb(
    scaler: VideoReformatter, frame: av.VideoFrame, matrix: Colorspace | None, size: tuple[int, int]
) -> Image.Image:
    if frame.format.name not in _PIXEL_FORMATS or min(size) < 1:
        raise _Unusual
    # src_colorspace=None is the frame's own, as when it is left out
    return scaler.reformat(
        frame, *size, "rgb24", src_colorspace=matrix, interpolation="AREA"
    ).to_image()


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


def _property_table(data: bytes, boxes: _Boxes) -> dict[int, dict[bytes, list[tuple[int, int]]]]:
    """Each item's properties by kind (a picture may have two colour boxes), each
    as its body's span; read once, as a grid's tiles are many."""
    iprp = boxes[b"iprp"]
    ipco = list(_boxes(data, *_child(data, *iprp, b"ipco")))
    start, end = _child(data, *iprp, b"ipma")
    version, flags = data[start], int.from_bytes(data[start + 1 : start + 4], "big")
    pos, count = start + 8, struct.unpack_from(">I", data, start + 4)[0]
    table: dict[int, dict[bytes, list[tuple[int, int]]]] = {}
    for _ in range(count):
        if pos >= end:  # a count larger than the box
            raise _Unusual
        entry = struct.unpack_from(">H" if version < 1 else ">I", data, pos)[0]
        pos += 2 if version < 1 else 4
        associations, pos = data[pos], pos + 1
        found = table.setdefault(entry, {})
        for _ in range(associations):
            if flags & 1:
                index = struct.unpack_from(">H", data, pos)[0] & 0x7FFF
                pos += 2
            else:
                index = data[pos] & 0x7F
                pos += 1
            if index:
                found.setdefault(ipco[index - 1][0], []).append(ipco[index - 1][1:])
    return table


def _locations(data: bytes, boxes: _Boxes) -> dict[int, memoryview]:
    """Each item's data (iloc), read once. Views into `data` where the item is
    in one piece, as tiles are: 2.5 MB of tiles are not copied."""
    start, end = boxes[b"iloc"]
    version = data[start]
    sizes = data[start + 4], data[start + 5]
    offset_size, length_size, base_size = sizes[0] >> 4, sizes[0] & 15, sizes[1] >> 4
    index_size = sizes[1] & 15 if version in (1, 2) else 0
    pos = start + 6
    count = struct.unpack_from(">H" if version < 2 else ">I", data, pos)[0]
    pos += 2 if version < 2 else 4
    whole = memoryview(data)

    def number(size: int) -> int:
        nonlocal pos
        if pos + size > end:  # a count larger than the box: would read zeros for ever
            raise _Unusual
        value = int.from_bytes(data[pos : pos + size], "big")
        pos += size
        return value

    found: dict[int, memoryview] = {}
    for _ in range(count):
        entry = number(2 if version < 2 else 4)
        method = number(2) & 15 if version in (1, 2) else 0
        number(2)  # data_reference_index
        base = number(base_size)
        extents = []
        for _ in range(number(2)):
            number(index_size)
            extents.append((base + number(offset_size), number(length_size)))
        if method not in (0, 1):
            continue  # by item index: not used by these files; asked for, it is missing
        origin = boxes[b"idat"][0] if method == 1 else 0
        spans = [(origin + offset, origin + offset + length) for offset, length in extents]
        if not spans or any(stop > len(data) for _, stop in spans):
            continue  # cut off: asked for, it is missing
        if len(spans) == 1:
            found[entry] = whole[spans[0][0] : spans[0][1]]
        else:
            found[entry] = memoryview(b"".join(whole[a:b] for a, b in spans))
    return found


def _colour(data: bytes, boxes: list[tuple[int, int]]) -> tuple[bytes | None, Colorspace | None]:
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


def _is_alpha(data: bytes, table: dict[int, dict[bytes, list[tuple[int, int]]]], item: int) -> bool:
    if item not in table:
        return True  # cannot tell: let pillow-heif decide
    auxc = table[item].get(b"auxC")
    return not auxc or any(urn in data[start:end] for start, end in auxc for urn in _ALPHA_URNS)
