"""Benchmark: preparing a 12 MP phone photo for Pixtral.

    .venv/bin/python bench/prepare_image.py [--runs 30]

Not a test: it prints timings (median and p90 after warm-up) and payload
sizes, with the goals beside them, for docs/benchmarks.md, and writes the same
numbers to bench/results/prepare_image-*.json and docs/charts/prepare_image.png
(bench/charts.py). The photo is synthetic (tests/imagecorpus.py) but
compresses like a real one.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import charts  # noqa: E402
from PIL import Image, ImageOps, features  # noqa: E402

from handlers.media import images
from tests import imagecorpus  # noqa: E402

LIMIT = 50 * 1024 * 1024
WARMUP = 3
BICUBIC, LANCZOS = Image.Resampling.BICUBIC, Image.Resampling.LANCZOS


def timings(function, runs: int) -> tuple[float, float, float]:
    """Median and p90 wall time, and median CPU time, in ms. On a shared box
    the gap between wall and CPU is time spent waiting for a core."""
    for _ in range(WARMUP):
        function()
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    wall.sort()
    return statistics.median(wall), wall[min(runs - 1, round(0.9 * runs))], statistics.median(cpu)


def naive(data: bytes, size: tuple[int, int]) -> bytes:
    """What most upload handlers do: full decode, orient, LANCZOS, re-encode."""
    with Image.open(io.BytesIO(data)) as image:
        image = ImageOps.exif_transpose(image).convert("RGB").resize(size, Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=images.JPEG_QUALITY)
        return buffer.getvalue()


def base64_size(size: int) -> int:
    return 4 * -(-size // 3)


def cpu() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            )
    except (OSError, StopIteration):
        return platform.machine()


def with_photo_resample(resample: Image.Resampling, data: bytes) -> images.PreparedImage:
    """prepare_image with another filter for photos: the alternatives to HAMMING."""
    chosen, images._PHOTO_RESAMPLE = images._PHOTO_RESAMPLE, resample
    try:
        return images.prepare_image("photo.jpg", data, max_bytes=LIMIT)
    finally:
        images._PHOTO_RESAMPLE = chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs

    landscape = imagecorpus.photo_jpeg(4000, 3000, orientation=1)
    portrait = imagecorpus.photo_jpeg(3000, 4000, orientation=6)
    screenshot = imagecorpus.encode(imagecorpus.screenshot(2560, 1440), "PNG")
    prepared = images.prepare_image("photo.jpg", landscape, max_bytes=LIMIT)
    shot = images.prepare_image("screen.png", screenshot, max_bytes=LIMIT)
    size = (prepared.width, prepared.height)

    load_start = os.getloadavg()[0]
    print(
        f"machine: {os.cpu_count()} cores, {cpu()}, "
        f"load average {load_start:.2f}; Python {platform.python_version()}, "
        f"Pillow {Image.__version__}, libjpeg-turbo {features.version('libjpeg_turbo')}"
    )
    print(
        f"photo: 4000×3000 JPEG q92 with EXIF, {len(landscape) / 1e6:.2f} MB; "
        f"{runs} runs after {WARMUP} warm-up\n"
    )

    def prepare(data: bytes) -> images.PreparedImage:
        return images.prepare_image("upload", data, max_bytes=LIMIT)

    rows = [
        ("prepare_image, 12 MP photo", lambda: prepare(landscape), 80),
        ("prepare_image, 12 MP portrait (EXIF 6)", lambda: prepare(portrait), 80),
        (
            "  same photo, BICUBIC instead of HAMMING",
            lambda: with_photo_resample(BICUBIC, landscape),
            None,
        ),
        (
            "  same photo, LANCZOS instead of HAMMING",
            lambda: with_photo_resample(LANCZOS, landscape),
            None,
        ),
        ("naive: full decode + LANCZOS", lambda: naive(landscape, size), None),
        ("prepare_image, 2560×1440 PNG screenshot", lambda: prepare(screenshot), None),
    ]
    print(f"{'':42} {'median ms':>10} {'p90 ms':>8} {'CPU ms':>8}  goal (median)")
    measured = []
    for label, function, goal in rows:
        median, p90, cpu_median = timings(function, runs)
        print(
            f"{label:42} {median:10.1f} {p90:8.1f} {cpu_median:8.1f}  {f'≤ {goal}' if goal else ''}"
        )
        measured.append(
            {
                "label": label,
                "median_ms": median,
                "p90_ms": p90,
                "cpu_ms": cpu_median,
                "goal_ms": goal,
            }
        )

    payloads = [
        ("original file", len(landscape), None),
        ("naive: original file as base64 (×1.33)", base64_size(len(landscape)), None),
        (f"prepared: {prepared.mime} {prepared.width}×{prepared.height}", len(prepared.data), 400),
        ("prepared, as base64 in the request", base64_size(len(prepared.data)), None),
        (f"screenshot: {shot.mime} {shot.width}×{shot.height}", len(shot.data), None),
    ]
    print(f"\n{'payload':42} {'KB':>10}  goal")
    for label, size_bytes, goal in payloads:
        print(f"{label:42} {size_bytes / 1000:10.0f}  {f'≤ {goal}' if goal else ''}")
    load_end = os.getloadavg()[0]
    print(
        f"\nphoto: {len(landscape) / len(prepared.data):.0f}× smaller than the original, "
        f"{prepared.tokens} tokens; screenshot {shot.tokens} tokens; "
        f"load average now {load_end:.2f}"
    )
    sizes = [
        {"label": label, "kb": size_bytes / 1000, "goal_kb": goal}
        for label, size_bytes, goal in payloads
    ]
    record(measured, sizes, runs, load_start, load_end)


def record(
    measured: list[dict], sizes: list[dict], runs: int, load_start: float, load_end: float
) -> None:
    """The numbers printed, as JSON and as the chart in docs/benchmarks.md."""
    path = charts.write_results(
        "prepare_image",
        {
            "runs": runs,
            "load_average": [load_start, load_end],
            "machine": cpu(),
            "timings": measured,
            "payloads": sizes,
        },
    )
    note = (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, medians of {runs} runs, "
        f"shared 2-core box (load average {load_start:.1f} → {load_end:.1f})"
    )
    chart = charts.write_prepare_image_chart(
        measured, sizes, note, charts.CHARTS / "prepare_image.png"
    )
    print(f"wrote {path.relative_to(charts.ROOT)} and {chart.relative_to(charts.ROOT)}")


if __name__ == "__main__":
    main()
