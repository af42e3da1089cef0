"""Videos turned into a few still images, because Pixtral sees only stills.

Owns: recognising a video by its content (never its name), refusing the ones
we cannot use, and choosing which moments to show within the image budget.
Does not own getting frames out of the file (`handlers.media.frame_sampler`),
drawing contact sheets (`handlers.media.contact_sheet`), or encoding the images and
their token cost (`handlers.media.images`).

What is sent, by length (`plan_layout`):

    length        images                                   moments shown
    ≤ 30 s        single frames, about 1 s apart or more    ≤ max_images
    ≤ 2 min       2×2 contact sheets                       4 per sheet
    longer        3×3 contact sheets                       9 per sheet

There are as many sheets as give one moment per ~5 s, but never more than
`max_images`, so a 10-minute clip with a budget of 4 becomes four 3×3 sheets
(36 moments, one per ~17 s). Each sheet's longest side is ≤ 1024 px and each
cell is stamped with its time; labels are `mm:ss` (`h:mm:ss` from an hour).

The moments are found without decoding every frame, favouring scene
changes: see `handlers.media.frame_sampler`.

What an upload can make FFmpeg do (`open_video`): only the demuxers of
`VIDEO_CONTAINERS` and `AUDIO_CONTAINERS` may read it (FFmpeg would otherwise
probe with all of its ~350, among them playlists that open further files), only
as a local file, and every decoder — also those FFmpeg runs while probing —
refuses frames of more than `max_pixels` (a small MKV of 16384² frames is
768 MB a frame). A video whose frames are larger is refused before decoding.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import av

from handlers.core.errors import InvalidAttachment
from handlers.core.progress import SILENT, Meter
from handlers.core.workers import run_cpu
from handlers.media.bundle import ImagePart, MediaBundle
from handlers.media.contact_sheet import cell_box, contact_sheet
from handlers.media.frame_sampler import Shot, sample, stream_start, time_base
from handlers.media.images import prepare_pil
from handlers.media.pixtral import MAX_SIDE
from handlers.media.sniff import (
    AUDIO_CONTAINERS,
    DEFAULT_MAX_PIXELS,
    VIDEO_CONTAINERS,
    VIDEO_FORMAT_NAMES,
    has_video_signature,
    open_video,
)

SINGLE_FRAMES_UP_TO_S = 30.0
SMALL_SHEETS_UP_TO_S = 120.0
SECONDS_PER_MOMENT = 5.0  # a 40 s screen recording: 8 moments on 2 sheets


@dataclass(frozen=True)
class Layout:
    columns: int  # 1: single frames; otherwise square sheets of columns × columns
    images: int

    @property
    def moments(self) -> int:
        return self.images * self.columns**2


async def prepare_video(
    name: str,
    path: str | os.PathLike,
    *,
    max_images: int,
    max_bytes: int,
    max_duration_s: float,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    meter: Meter = SILENT,
) -> MediaBundle:
    """Sample `path` into at most `max_images` labelled images (see the module doc).

    Runs in a worker thread; `meter` counts the moments sampled, and stops the
    thread between frames once the work is cancelled (`WorkCancelled`). Refuses, as `InvalidAttachment`: `video.too_large`,
    `video.unsupported_format`, `video.corrupt`, `video.empty`, `video.audio_only`,
    `video.no_video_stream`, `video.too_long`, `video.too_many_pixels`.
    """
    return await run_cpu(
        _prepare, name, os.fspath(path), max_images, max_bytes, max_duration_s, max_pixels, meter
    )


def plan_layout(duration: float, max_images: int) -> Layout:
    """How many images, of how many moments each, a clip of `duration` seconds gets."""
    if duration <= SINGLE_FRAMES_UP_TO_S:
        return Layout(1, max(1, min(max_images, math.ceil(duration))))
    columns = 2 if duration <= SMALL_SHEETS_UP_TO_S else 3
    wanted = math.ceil(duration / SECONDS_PER_MOMENT / columns**2)
    return Layout(columns, max(1, min(max_images, wanted)))


def format_clock(seconds: float, *, hours: bool | None = None) -> str:
    """`mm:ss`, or `h:mm:ss` when `hours` (default: from an hour on). A video's
    labels pass the video's choice, so they all look alike."""
    minutes, secs = divmod(int(seconds), 60)
    if hours or (hours is None and seconds >= 3600):
        return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
    return f"{minutes:02d}:{secs:02d}"


def _prepare(
    name: str,
    path: str,
    max_images: int,
    max_bytes: int,
    max_duration_s: float,
    max_pixels: int,
    meter: Meter = SILENT,
) -> MediaBundle:
    if os.path.getsize(path) > max_bytes:
        raise InvalidAttachment("video.too_large", name=name, limit_mb=max_bytes // 2**20)
    try:
        with open_video(path, max_pixels) as container:
            stream = _video_stream(name, container)
            _check_pixels(name, stream, max_pixels)
            duration = _duration(container, stream)
            _check_duration(name, duration, max_duration_s)
            layout = plan_layout(duration, max_images)
            box = MAX_SIDE if layout.columns == 1 else cell_box(layout.columns)
            shots = sample(container, stream, duration, layout.moments, box, meter)
    except av.error.EOFError:  # what FFmpeg says of a Matroska file with no frames
        raise InvalidAttachment("video.empty", name=name) from None
    except av.FFmpegError:
        raise _unreadable(name, path) from None
    if not shots:
        raise InvalidAttachment("video.corrupt", name=name)
    return _bundle(name, shots, layout.columns, duration, meter)


def _unreadable(name: str, path: str) -> InvalidAttachment:
    """A file no allowed demuxer could read (or decode): a broken video if it
    starts like one, else a format this app does not read."""
    with open(path, "rb") as file:
        head = file.read(12)
    if has_video_signature(head):
        return InvalidAttachment("video.corrupt", name=name)
    return InvalidAttachment("video.unsupported_format", name=name, formats=VIDEO_FORMAT_NAMES)


def _video_stream(name: str, container: av.container.InputContainer) -> av.VideoStream:
    """The first real video stream (cover art does not count), or the refusal
    that says why there is none."""
    if container.format.name not in VIDEO_CONTAINERS | AUDIO_CONTAINERS:
        raise InvalidAttachment("video.unsupported_format", name=name, formats=VIDEO_FORMAT_NAMES)
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            stream.codec_context.skip_frame = "NONKEY"
            return stream
    if not container.streams:
        raise InvalidAttachment("video.empty", name=name)
    if container.streams.audio:
        raise InvalidAttachment("video.audio_only", name=name)
    raise InvalidAttachment("video.no_video_stream", name=name)


def _check_pixels(name: str, stream: av.VideoStream, max_pixels: int) -> None:
    """Refuse frames larger than `max_pixels` as the header gives them, and make
    the decoder refuse them too should the frames themselves say otherwise."""
    width, height = stream.codec_context.width, stream.codec_context.height
    if width * height > max_pixels:
        raise InvalidAttachment(
            "video.too_many_pixels",
            name=name,
            width=width,
            height=height,
            limit_mp=f"{max_pixels / 1e6:.3g}",
        )
    stream.codec_context.options = {"max_pixels": str(max_pixels)}


def _check_duration(name: str, duration: float, max_duration_s: float) -> None:
    if duration <= 0:
        raise InvalidAttachment("video.empty", name=name)
    if duration > max_duration_s:
        raise InvalidAttachment(
            "video.too_long",
            name=name,
            duration=format_clock(duration),
            limit=format_clock(max_duration_s),
        )


def _duration(container: av.container.InputContainer, stream: av.VideoStream) -> float:
    """Seconds of video: the stream header, else the container's, else by reading packets."""
    if stream.duration:
        return float(stream.duration * time_base(stream))
    if container.duration:
        return container.duration / av.time_base
    end = 0.0
    for packet in container.demux(stream):
        if packet.pts is not None and packet.size:
            end = max(end, float((packet.pts + (packet.duration or 0)) * time_base(stream)))
    return max(0.0, end - stream_start(stream))


def _bundle(
    name: str, shots: list[Shot], columns: int, duration: float, meter: Meter
) -> MediaBundle:
    hours = duration >= 3600
    images = _compose(name, shots, columns, hours, meter)
    note = {"name": name, "count": len(shots), "duration": format_clock(duration, hours=hours)}
    if columns == 1:
        return MediaBundle(name, "video", images, "video.frames", note)
    return MediaBundle(
        name,
        "video",
        images,
        "video.sheets",
        {**note, "sheets": len(images), "grid": f"{columns}×{columns}"},
    )


def _compose(name: str, shots: list[Shot], columns: int, hours: bool, meter: Meter):
    """Single frames or sheets of `columns`², each labelled with its time(s)."""
    clock = [format_clock(s.time, hours=hours) for s in shots]
    meter.check()
    if columns == 1:
        return tuple(
            ImagePart(image=prepare_pil(name, s.image, source_format="video"), label=c)
            for s, c in zip(shots, clock)
        )
    per_sheet = columns * columns
    sheets = []
    for first in range(0, len(shots), per_sheet):
        meter.check()
        cells = [(s.image, c) for s, c in zip(shots[first : first + per_sheet], clock[first:])]
        label = f"{cells[0][1]}–{cells[-1][1]}" if len(cells) > 1 else cells[0][1]
        sheet = contact_sheet(cells, columns)
        sheets.append(ImagePart(image=prepare_pil(name, sheet, source_format="video"), label=label))
    return tuple(sheets)
