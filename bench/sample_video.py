"""How long `prepare_video` takes on a 10-minute 1080p H.264 clip.

    .venv/bin/python bench/sample_video.py [--runs 5] [--max-images 4]

The clip is generated once with PyAV and cached in `bench/results/` (ignored
by git): 1920x1080 at 30 fps, libx264 `ultrafast` but with CABAC, the
deblocking filter and 2 B-frames put back (so keyframes cost what a camera's
do to decode), CRF 23, a keyframe every 2 s (60 frames). Its content is 24 scenes of 8-45 s each
(textured coloured discs on a noisy background) scrolling vertically, so
there is motion everywhere and a hard cut at each scene change. Frames are
built by slicing precomputed YUV planes, so making the clip costs about as
much as encoding it (a few minutes on 2 cores).

The runs' times go to bench/results/sample_video-*.json and
docs/charts/sample_video.png (bench/charts.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from pathlib import Path

import av
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import charts  # noqa: E402

from handlers.media.video import prepare_video  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CLIP = RESULTS / "video_10min_1080p_h264_cabac_gop60.mp4"
WIDTH, HEIGHT, FPS, SECONDS, GOP = 1920, 1080, 30, 600, 60
SCROLL_PX_PER_FRAME = 4
GOAL_S = 3.0  # median wall time (docs/benchmarks.md)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-images", type=int, default=4)
    args = parser.parse_args()
    if not CLIP.exists():
        started = time.perf_counter()
        make_clip(CLIP)
        print(f"generated {CLIP.name} in {time.perf_counter() - started:.0f} s")
    print(f"{CLIP.name}: {CLIP.stat().st_size / 1e6:.0f} MB")
    load_start = os.getloadavg()[0]
    runs = [asyncio.run(_time_once(args.max_images)) for _ in range(args.runs)]
    wall, cpu = zip(*runs)
    load_end = os.getloadavg()[0]
    print(
        f"prepare_video, {args.runs} runs: wall median {statistics.median(wall):.2f} s "
        f"(min {min(wall):.2f}, max {max(wall):.2f}); "
        f"CPU median {statistics.median(cpu):.2f} s; load average {load_end:.1f}"
    )
    record(list(wall), list(cpu), args.max_images, (load_start, load_end))


def record(wall: list[float], cpu: list[float], max_images: int, load: tuple[float, float]) -> None:
    """The runs, as JSON and as the chart in docs/benchmarks.md."""
    path = charts.write_results(
        "sample_video",
        {
            "clip": CLIP.name,
            "max_images": max_images,
            "wall_s": wall,
            "cpu_s": cpu,
            "load_average": list(load),
        },
    )
    note = (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {len(wall)} runs, {CLIP.name}, "
        f"shared 2-core box (load average {load[0]:.1f} → {load[1]:.1f})"
    )
    chart = charts.write_sample_video_chart(
        wall, cpu, GOAL_S, note, charts.CHARTS / "sample_video.png"
    )
    print(f"wrote {path.relative_to(charts.ROOT)} and {chart.relative_to(charts.ROOT)}")


async def _time_once(max_images: int) -> tuple[float, float]:
    """(wall, CPU) seconds of one call. CPU time (all threads of this process)
    is the work done, and holds steady while other jobs share the machine."""
    started, cpu_started = time.perf_counter(), time.process_time()
    bundle = await prepare_video(
        CLIP.name,
        CLIP,
        max_images=max_images,
        max_bytes=CLIP.stat().st_size,
        max_duration_s=3600.0,
    )
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    labels = ", ".join(item.label or "" for item in bundle.images)
    print(f"  {wall:.2f} s (CPU {cpu:.2f} s)  {bundle.note_key} {bundle.note_params}  [{labels}]")
    return wall, cpu


def make_clip(path: Path) -> None:
    """Write the benchmark clip to a temporary name, then move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.mp4")
    rng = random.Random(1080)
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.gop_size = GOP
        stream.options = {
            "preset": "ultrafast",
            "crf": "23",
            "x264-params": f"cabac=1:deblock=1,1:bframes=2:keyint={GOP}:min-keyint={GOP}",
        }
        index = 0
        while index < FPS * SECONDS:
            planes = _scene_planes(rng)
            length = min(rng.randint(8, 45) * FPS, FPS * SECONDS - index)
            for offset in range(length):
                frame = _scrolled_frame(planes, offset)
                frame.pts = index
                container.mux(stream.encode(frame))
                index += 1
        container.mux(stream.encode())
    partial.rename(path)


def _scene_planes(rng: random.Random) -> list[bytes]:
    """One scene, twice the frame's height, as YUV 4:2:0 planes to slice from."""
    background = Image.effect_noise((WIDTH, 2 * HEIGHT), rng.randint(20, 60))
    tint = Image.new("RGB", background.size, tuple(rng.randrange(256) for _ in range(3)))
    scene = Image.blend(background.convert("RGB"), tint, 0.6)
    draw = ImageDraw.Draw(scene)
    for _ in range(80):
        x, y, size = rng.randrange(WIDTH), rng.randrange(2 * HEIGHT), rng.randint(40, 400)
        draw.ellipse([x, y, x + size, y + size], fill=tuple(rng.randrange(256) for _ in range(3)))
    yuv = av.VideoFrame.from_image(scene).reformat(format="yuv420p")
    return [bytes(plane) for plane in yuv.planes]


def _scrolled_frame(planes: list[bytes], offset: int) -> av.VideoFrame:
    """The frame-sized window `offset` steps down the scene, wrapping around."""
    top = (offset * SCROLL_PX_PER_FRAME) % HEIGHT // 2 * 2
    frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
    for plane, source, scale in zip(frame.planes, planes, (1, 2, 2)):
        width, row = WIDTH // scale, top // scale
        plane.update(source[row * width : (row + HEIGHT // scale) * width])
    return frame


if __name__ == "__main__":
    main()
