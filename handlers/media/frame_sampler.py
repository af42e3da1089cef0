"""Frames out of an open video, found without decoding every frame.

Owns: finding a frame for each candidate time, picking one per slot so scene
changes are favoured, and turning frames upright at the size asked for. Does
not own how many moments a video gets, its refusals, or what is sent
(`handlers.media.video`).

How: the timeline is cut into one slot per moment, each slot gets two
candidates, and each candidate is found by seeking to the keyframe at or
before its time and decoding only keyframes (`skip_frame="NONKEY"`), on two
cores. The candidate that differs most from the moment before (mean
difference of 16×16 thumbnails) wins, so scene changes are favoured while
coverage stays even. A keyframe found twice is shown once. A clip whose
keyframes are too sparse for its moments is decoded through once instead, if
that is cheap (`DECODE_THROUGH_PIXELS`); otherwise it shows fewer moments.
Frames are turned upright by their display matrix (phones record sideways)
and scaled by the stream's sample aspect ratio.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction

import av
from PIL import Image, ImageChops, ImageStat

from handlers.core.progress import SILENT, Meter

CANDIDATES_PER_MOMENT = 2
# Decoding every frame of a clip with too few keyframes is allowed up to this
# many pixels (~480 frames of 1080p), which keeps it to seconds (a full decode's
# rate: docs/benchmarks.md, "Video sampling"). Beyond it, fewer moments.
DECODE_THROUGH_PIXELS = 1_000_000_000
THUMB_SIZE = (16, 16)
_UPRIGHT = {
    90: Image.Transpose.ROTATE_90,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}


@dataclass(frozen=True)
class Shot:
    time: float  # seconds from the start of the video
    image: Image.Image  # upright, fitted in the box asked for
    thumb: Image.Image  # THUMB_SIZE, for cheap comparisons


def time_base(stream: av.VideoStream) -> Fraction:
    """Seconds per tick of `stream`'s timestamps. PyAV types it optional (a
    stream being written has none before its header); FFmpeg gives every
    stream it reads one."""
    assert stream.time_base is not None, "a demuxed stream always has a time base"
    return stream.time_base


def stream_start(stream: av.VideoStream) -> float:
    """Seconds at which `stream` starts; times here count from it."""
    return float(stream.start_time * time_base(stream)) if stream.start_time else 0.0


def sample(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    duration: float,
    moments: int,
    box: int,
    meter: Meter = SILENT,
) -> list[Shot]:
    """Up to `moments` shots spread over `duration` seconds, in time order,
    each fitted in a `box`-px square. `meter` counts the moments and stops
    the work between frames once it is cancelled."""
    slot = duration / moments
    times = [
        [(m + k / CANDIDATES_PER_MOMENT) * slot for k in range(CANDIDATES_PER_MOMENT)]
        for m in range(moments)
    ]
    meter.start(moments)
    shots = _pick(_grab_keyframes(container, stream, times, box, meter))
    cheap = _pixels_to_decode(stream, duration) <= DECODE_THROUGH_PIXELS
    if len(shots) < moments and cheap:
        meter.start(moments)
        shots = _pick(_decode_through(container, stream, times, box, meter))
    return shots


def _pixels_to_decode(stream: av.VideoStream, duration: float) -> float:
    rate = float(stream.average_rate or stream.guessed_rate or 30)
    return stream.codec_context.width * stream.codec_context.height * rate * duration


def _grab_keyframes(container, stream, times: list[list[float]], box: int, meter: Meter):
    """The keyframe at or before each candidate time. A keyframe decodes on
    one core, so the later half of the slots goes to a second container on the
    same file, in a second thread (PyAV releases the GIL while decoding)."""
    half = (len(times) + 1) // 2

    def later_half() -> list[list[Shot | None]]:
        # The demuxer already chosen, and the decoder's options (its pixel cap).
        demuxer = container.format.name.split(",")[0]
        with av.open(
            container.name, format=demuxer, options=dict(stream.codec_context.options)
        ) as other:
            twin = other.streams[stream.index]
            twin.codec_context.skip_frame = "NONKEY"
            twin.codec_context.options = dict(stream.codec_context.options)
            return _grab_slots(other, twin, times[half:], box, meter)

    with ThreadPoolExecutor(1) as pool:
        later = pool.submit(later_half)
        try:
            earlier = _grab_slots(container, stream, times[:half], box, meter)
        finally:  # stopped: the other half stops at its next frame too
            later_shots = later.result()
        return earlier + later_shots


def _grab_slots(container, stream, times: list[list[float]], box: int, meter: Meter):
    grab = _keyframe_grabber(container, stream, box, meter)
    slots = []
    for slot_times in times:
        slots.append([grab(t) for t in slot_times])
        meter.advance()
    return slots


def _keyframe_grabber(container, stream, box: int, meter: Meter) -> Callable[[float], Shot | None]:
    """A function from a time to the keyframe at or before it, decoded alone.

    A decoder that reorders frames (H.264 with B-frames) holds a keyframe back
    until later frames arrive; with non-keyframes skipped that would mean
    reading on to the next keyframe, so the decoder is drained right after the
    keyframe instead (the seek resets it). Drained frames may lack a pts: the
    keyframe packet's is used.
    """
    start = stream_start(stream)

    def grab(at: float) -> Shot | None:
        meter.check()
        container.seek(int((start + at) / stream.time_base), stream=stream, backward=True)
        for packet in container.demux(stream):
            frames = stream.decode(packet)
            if not frames and packet.is_keyframe:
                frames = stream.decode(None)
            if frames:
                pts = frames[0].pts if frames[0].pts is not None else packet.pts
                return _shot(frames[0], stream, pts, start, box)
        return None

    return grab


def _decode_through(container, stream, times: list[list[float]], box: int, meter: Meter):
    """Like the keyframe grabber for every time at once, but from every frame, in one pass."""
    start = stream_start(stream)
    stream.codec_context.skip_frame = "DEFAULT"
    container.seek(0)
    wanted = sorted({t for slot_times in times for t in slot_times})
    found: dict[float, Shot] = {}
    for frame in container.decode(stream):
        meter.check()
        at = float(frame.pts * stream.time_base) - start if frame.pts is not None else 0.0
        while len(found) < len(wanted) and at >= wanted[len(found)] - 1e-3:
            found[wanted[len(found)]] = _shot(frame, stream, frame.pts, start, box)
            if len(found) % CANDIDATES_PER_MOMENT == 0:
                meter.advance()
        if len(found) == len(wanted):
            break
    return [[found.get(t) for t in slot_times] for slot_times in times]


def _pick(candidates: list[list[Shot | None]]) -> list[Shot]:
    """One shot per slot: the first slot's earliest, then whichever differs most
    from the previous pick; a shot already picked is never picked again."""
    picked: list[Shot] = []
    for slot in candidates:
        fresh = [s for s in slot if s and not any(s.time == p.time for p in picked)]
        if fresh:
            picked.append(
                max(fresh, key=lambda s: _difference(s, picked[-1])) if picked else fresh[0]
            )
    return sorted(picked, key=lambda s: s.time)


def _difference(a: Shot, b: Shot) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a.thumb, b.thumb)).mean)


def _shot(frame: av.VideoFrame, stream, pts: int | None, start: float, box: int) -> Shot:
    """`frame` upright and scaled (in one swscale pass) to fit a `box`-px square."""
    quarter_turns = round(frame.rotation / 90) % 4
    aspect = float(stream.sample_aspect_ratio or 1)
    width, height = frame.width * aspect, frame.height
    shown_width, shown_height = (height, width) if quarter_turns % 2 else (width, height)
    scale = min(1.0, box / max(shown_width, shown_height))
    image = frame.to_image(
        width=max(1, round(width * scale)),
        height=max(1, round(height * scale)),
        interpolation="AREA",
    )
    if quarter_turns:
        image = image.transpose(_UPRIGHT[quarter_turns * 90])
    time = float(pts * stream.time_base) - start if pts is not None else 0.0
    return Shot(max(0.0, time), image, image.resize(THUMB_SIZE, Image.Resampling.BOX))
