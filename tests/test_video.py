"""Videos: recognised by content, sampled across their length, refused clearly.

Every clip is made here with PyAV (see `tests.mediacorpus`), tiny and short
so the file runs in seconds; the 10-minute 1080p case is `bench/sample_video.py`.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import av
import pytest
from PIL import Image, ImageStat

from handlers.core.errors import InvalidAttachment
from handlers.media.contact_sheet import GUTTER
from handlers.media.sniff import looks_like_video
from handlers.media.video import Layout, format_clock, plan_layout, prepare_video
from tests.mediacorpus import (
    PALETTE,
    VIDEO_KINDS,
    colour_at,
    flat_page,
    image_bytes,
    nearest_colour_index,
    write_audio,
    write_empty_video,
    write_marked_video,
    write_pdf,
    write_subtitles_only,
    write_video,
)

LIMITS = {"max_images": 4, "max_bytes": 50_000_000, "max_duration_s": 3600.0}


async def prepare(path: Path, **overrides):
    return await prepare_video(path.name, path, **{**LIMITS, **overrides})


async def refusal(path: Path, **overrides) -> InvalidAttachment:
    with pytest.raises(InvalidAttachment) as caught:
        await prepare(path, **overrides)
    assert caught.value.params["name"] == path.name
    return caught.value


def picture(item) -> Image.Image:
    return Image.open(io.BytesIO(item.image.data)).convert("RGB")


def centre_colour(image: Image.Image) -> int:
    """The palette index of a frame's centre (frames are flat colours)."""
    w, h = image.size
    centre = image.crop((w // 3, h // 3, 2 * w // 3, 2 * h // 3))
    return nearest_colour_index(ImageStat.Stat(centre).mean)


def seconds(label: str) -> int:
    minutes, secs = label.split(":")
    return int(minutes) * 60 + int(secs)


# --- which files are videos -------------------------------------------------


@pytest.mark.parametrize(("container", "codec", "suffix"), VIDEO_KINDS)
def test_each_accepted_container_is_a_video(tmp_path, container, codec, suffix):
    path = write_video(tmp_path / f"clip{suffix}", container=container, codec=codec, seconds=1)
    assert looks_like_video(path)


def test_judged_by_content_not_name(tmp_path):
    video = write_video(tmp_path / "holiday.jpg", seconds=1)
    photo = tmp_path / "clip.mp4"
    photo.write_bytes(image_bytes("JPEG"))
    assert looks_like_video(video) and not looks_like_video(photo)


@pytest.mark.parametrize("format", ["JPEG", "PNG", "GIF", "WEBP", "HEIF", "AVIF"])
def test_pictures_are_not_videos(tmp_path, format):
    """FFmpeg opens HEIC and AVIF photos as one-frame MP4 videos; they are pictures."""
    path = tmp_path / "picture"
    path.write_bytes(image_bytes(format))
    assert not looks_like_video(path)


def test_pdf_and_text_are_not_videos(tmp_path):
    pdf = write_pdf(tmp_path / "doc", [flat_page((255, 0, 0))])
    pillow_pdf = tmp_path / "pillow.pdf"  # a JPEG inside: FFmpeg reads it as MJPEG
    Image.new("RGB", (32, 32), "red").save(pillow_pdf)
    text = tmp_path / "notes.mp4"
    text.write_text("hello, this is text\n" * 20)
    assert not any(looks_like_video(p) for p in (pdf, pillow_pdf, text))


# --- sampling ---------------------------------------------------------------


@pytest.mark.parametrize(("container", "codec", "suffix"), VIDEO_KINDS)
async def test_short_clip_gives_labelled_frames_from_across_it(tmp_path, container, codec, suffix):
    path = write_video(
        tmp_path / f"clip{suffix}",
        container=container,
        codec=codec,
        size=(96, 54),
        seconds=4,
        fps=10,
    )
    bundle = await prepare(path)
    assert (bundle.kind, bundle.note_key) == ("video", "video.frames")
    assert bundle.note_params == {"name": path.name, "count": 4, "duration": "00:04"}
    assert [item.label for item in bundle.images] == ["00:00", "00:01", "00:02", "00:03"]
    for item in bundle.images:
        assert (item.image.width, item.image.height) == (96, 54)
        assert centre_colour(picture(item)) == PALETTE.index(colour_at(seconds(item.label)))


async def test_sparse_keyframes_in_a_short_clip_still_give_distinct_moments(tmp_path):
    path = write_video(tmp_path / "one-keyframe.mp4", seconds=8, fps=5, gop=1000)
    bundle = await prepare(path)
    colours = [centre_colour(picture(item)) for item in bundle.images]
    assert [item.label for item in bundle.images] == ["00:00", "00:02", "00:04", "00:06"]
    assert colours == [PALETTE.index(colour_at(t)) for t in (0, 2, 4, 6)]


async def test_without_the_decoding_budget_sparse_keyframes_give_fewer_moments(
    tmp_path, monkeypatch
):
    monkeypatch.setattr("handlers.media.frame_sampler.DECODE_THROUGH_PIXELS", 0)
    path = write_video(tmp_path / "one-keyframe.mp4", seconds=8, fps=5, gop=1000)
    assert [item.label for item in (await prepare(path)).images] == ["00:00"]


async def test_work_happens_off_the_event_loop(tmp_path):
    path = write_video(tmp_path / "clip.mp4", size=(320, 180), seconds=20, fps=5, gop=1000)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        await prepare(path)
    finally:
        task.cancel()
    assert ticks > 1


async def test_scene_changes_are_favoured(tmp_path):
    """Slot two (10-20 s) has candidates at 10 s (still the first scene) and
    15 s (a new one): the new scene wins over even spacing."""
    path = write_video(
        tmp_path / "cut.mp4",
        seconds=20,
        fps=5,
        gop=5,
        paint=lambda t: PALETTE[0] if t < 15 else PALETTE[2],
    )
    bundle = await prepare(path, max_images=2)
    assert [item.label for item in bundle.images] == ["00:00", "00:15"]
    assert [centre_colour(picture(item)) for item in bundle.images] == [0, 2]


async def test_variable_frame_rate_uses_real_timestamps(tmp_path):
    times = [0.0, 0.05, 0.1, 2.5, 2.55, 5.0, 5.9, 6.0, 6.05, 9.8]
    path = write_video(
        tmp_path / "vfr.mkv",
        container="matroska",
        times=times,
        gop=1,
        paint=lambda t: colour_at(t, every=2.5),
    )
    bundle = await prepare(path)
    for item in bundle.images:
        assert centre_colour(picture(item)) == PALETTE.index(colour_at(seconds(item.label), 2.5))
    assert len({item.label for item in bundle.images}) == len(bundle.images) >= 3


@pytest.mark.parametrize(
    ("rotation", "marker"), [(90, "bottom-left"), (-90, "top-right"), (180, "bottom-right")]
)
async def test_rotation_metadata_turns_frames_upright(tmp_path, rotation, marker):
    path = write_marked_video(tmp_path / "phone.mp4", rotation=rotation)
    image = picture((await prepare(path)).images[0])
    assert image.size == ((64, 32) if rotation == 180 else (32, 64))
    w, h = image.size
    corners = {"bottom-left": (2, h - 3), "top-right": (w - 3, 2), "bottom-right": (w - 3, h - 3)}
    red, _, blue = image.getpixel(corners[marker])
    assert red > 200 and blue < 60


async def test_missing_duration_is_found_by_reading(tmp_path):
    path = write_video(
        tmp_path / "live.webm", container="webm", codec="libvpx", seconds=3, options={"live": "1"}
    )
    with av.open(str(path)) as container:
        assert container.duration is None and container.streams.video[0].duration is None
    bundle = await prepare(path)
    assert bundle.note_params["duration"] == "00:03" and len(bundle.images) == 3


async def test_longer_clip_becomes_2x2_contact_sheets(tmp_path):
    path = write_video(
        tmp_path / "minute.mp4", seconds=60, fps=2, gop=2, paint=lambda t: colour_at(t, every=6)
    )
    bundle = await prepare(path)
    assert bundle.note_key == "video.sheets"
    assert bundle.note_params == {
        "name": path.name,
        "count": 12,
        "sheets": 3,
        "grid": "2×2",
        "duration": "01:00",
    }
    first, second, third = (item.label.split("–") for item in bundle.images)
    assert first[0] == "00:00" and seconds(third[1]) >= 52
    assert seconds(first[1]) < seconds(second[0]) <= seconds(second[1]) < seconds(third[0])
    for item in bundle.images:
        assert max(item.image.width, item.image.height) <= 1024


async def test_long_clip_becomes_at_most_max_images_3x3_sheets(tmp_path):
    path = write_video(
        tmp_path / "long.mkv", container="matroska", size=(32, 18), seconds=600, fps=1, gop=5
    )
    bundle = await prepare(path, max_images=3)
    assert (bundle.note_params["sheets"], bundle.note_params["grid"]) == (3, "3×3")
    assert bundle.note_params["count"] == 27
    first, last = bundle.images[0].label.split("–")[0], bundle.images[-1].label.split("–")[1]
    assert first == "00:00" and seconds(last) >= 560
    assert picture(bundle.images[0]).size == (3 * 32 + 4 * GUTTER, 3 * 18 + 4 * GUTTER)


async def test_timestamps_are_drawn_on_each_cell(tmp_path):
    path = write_video(
        tmp_path / "black.mp4", size=(160, 90), seconds=40, fps=1, gop=2, paint=lambda t: (0, 0, 0)
    )
    sheet = picture((await prepare(path, max_images=1)).images[0]).convert("L")
    assert sheet.size == (2 * 160 + 3 * GUTTER, 2 * 90 + 3 * GUTTER)
    for row in range(2):
        for column in range(2):
            left, top = GUTTER + column * (160 + GUTTER), GUTTER + row * (90 + GUTTER)
            corner = sheet.crop((left, top + 60, left + 80, top + 90))  # bottom-left of the cell
            assert sum(corner.histogram()[201:]) > 20  # white digits on a black frame


def test_layout_rule():
    assert plan_layout(0.4, 4) == Layout(1, 1)
    assert plan_layout(3, 4) == Layout(1, 3)
    assert plan_layout(30, 4) == Layout(1, 4)
    assert plan_layout(40, 4) == Layout(2, 2)
    assert plan_layout(60, 4) == Layout(2, 3)
    assert plan_layout(120, 4) == Layout(2, 4)
    assert plan_layout(600, 4) == Layout(3, 4)
    assert plan_layout(7200, 2) == Layout(3, 2)


def test_clock_format():
    assert format_clock(83.9) == "01:23"
    assert format_clock(3725) == "1:02:05"
    assert format_clock(5, hours=True) == "0:00:05"


# --- refusals ---------------------------------------------------------------


async def test_too_large(tmp_path):
    path = write_video(tmp_path / "clip.mp4", seconds=1)
    assert (await refusal(path, max_bytes=100)).key == "video.too_large"


async def test_too_long(tmp_path):
    path = write_video(tmp_path / "clip.mp4", seconds=3)
    error = await refusal(path, max_duration_s=2)
    assert (error.key, error.params["duration"], error.params["limit"]) == (
        "video.too_long",
        "00:03",
        "00:02",
    )


@pytest.mark.parametrize(
    ("container", "codec", "suffix"),
    [
        ("wav", "pcm_s16le", ".wav"),
        ("mp3", "libmp3lame", ".mp3"),
        ("mp4", "aac", ".m4a"),
        ("ogg", "libopus", ".opus"),
    ],
)
async def test_audio_only(tmp_path, container, codec, suffix):
    path = write_audio(tmp_path / f"voice{suffix}", container=container, codec=codec)
    assert looks_like_video(path)  # so that it is this handler that explains
    assert (await refusal(path)).key == "video.audio_only"


@pytest.mark.parametrize(
    ("container", "codec", "suffix"),
    [
        ("mp4", "libx264", ".mp4"),
        ("webm", "libvpx-vp9", ".webm"),
        ("avi", "mpeg4", ".avi"),
    ],
)
async def test_zero_length(tmp_path, container, codec, suffix):
    path = write_empty_video(tmp_path / f"empty{suffix}", container=container, codec=codec)
    assert looks_like_video(path)
    assert (await refusal(path)).key == "video.empty"


async def test_truncated(tmp_path):
    whole = write_video(tmp_path / "whole.mp4", seconds=2).read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(whole[: len(whole) // 2])  # the index (moov) is at the end
    assert looks_like_video(path)
    assert (await refusal(path)).key == "video.corrupt"


async def test_garbled_frames(tmp_path):
    path = write_video(tmp_path / "garbled.mp4", seconds=2)
    data = bytearray(path.read_bytes())
    for at in range(60, int(len(data) * 0.7), 3):  # the frames; the index at the end survives
        data[at] ^= 0x5A
    path.write_bytes(bytes(data))
    assert looks_like_video(path)
    assert (await refusal(path)).key == "video.corrupt"


async def test_no_video_stream(tmp_path):
    path = write_subtitles_only(tmp_path / "subtitles.mkv")
    assert looks_like_video(path)
    assert (await refusal(path)).key == "video.no_video_stream"


async def test_not_a_video_at_all(tmp_path):
    path = tmp_path / "photo.mp4"
    path.write_bytes(image_bytes("PNG"))
    assert (await refusal(path)).key == "video.unsupported_format"
