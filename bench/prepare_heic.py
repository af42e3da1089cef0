"""Benchmark: preparing a 12 MP iPhone-style HEIC for Pixtral, and what it does to the event loop.

    .venv/bin/python bench/prepare_heic.py [--runs 15]      # ~3 min, plus ~2 min once to make the files

Not a test: it prints timings for docs/benchmarks.md ("Preparing a HEIC").
The files are made once and kept in bench/results/ (git-ignored): a real
photo (a 720×477 JPEG from the Rust docs, when present, else the synthetic
tests/imagecorpus.py photo) upscaled to 4032×3024 with film grain added so it
compresses like a 12 MP phone photo, saved as an iPhone saves it — a grid of
512×512 HEVC tiles (hvc1), the portrait turn as `irot`, a Display P3 ICC
profile — at two qualities: a typical 2–3 MB file and a 9 MB one.

Rows: `prepare_image` (FFmpeg's decoder on two cores, each tile scaled straight to its share of 1024 px; see
handlers/media/heic.py) against the previous way (pillow-heif/libheif, which decodes
with DECODE_THREADS=4 by default), wall and CPU medians; and the event loop's
lag — how late a 10 ms timer fires, what a text-only question's first token
waits for on the app's loop — while 8 of the typical HEICs are prepared at once
through `handlers.core.workers.run_cpu`, as 8 people uploading together would.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from handlers.core.workers import run_cpu  # noqa: E402
from handlers.media import heic, images
from tests import imagecorpus  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
REAL_PHOTO = Path(
    "/root/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html/embedded-book/assets/f3.jpg"
)
SIZE = (4032, 3024)
QUALITIES = {"typical": 50, "large": 88}  # x265 quality → ~2.5 and ~9 MB for this picture
LIMIT = 50 * 1024 * 1024


def source_picture() -> tuple[Image.Image, str]:
    if REAL_PHOTO.exists():
        base = Image.open(REAL_PHOTO).convert("RGB").resize(SIZE, Image.Resampling.LANCZOS)
        label = f"{REAL_PHOTO.name} upscaled"
    else:
        base, label = imagecorpus.photo(*SIZE), "synthetic photo"
    grain = np.random.default_rng(3).normal(0, 6, (SIZE[1], SIZE[0], 1))
    pixels = np.clip(np.asarray(base, np.float32) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB"), f"{label}, grain σ=6"


def heic_file(kind: str) -> Path:
    path = RESULTS / f"iphone_like_12mp_{kind}.heic"
    if not path.exists():
        RESULTS.mkdir(exist_ok=True)
        picture, _ = source_picture()
        started = time.perf_counter()
        path.write_bytes(
            imagecorpus.heic_grid(
                picture,
                tile=512,
                quality=QUALITIES[kind],
                orientation=6,
                icc=imagecorpus.display_p3_icc(),
            )
        )
        print(f"made {path.name} in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def timed(function, runs: int) -> tuple[float, float, float]:
    """Median and p90 wall, median CPU (all threads of the process), in ms."""
    function()
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    wall.sort()
    return statistics.median(wall), wall[min(runs - 1, round(0.9 * runs))], statistics.median(cpu)


def without_fast_path(data: bytes) -> images.PreparedImage:
    original = heic.decode_reduced
    heic.decode_reduced = lambda *args: None
    try:
        return images.prepare_image("IMG_0001.HEIC", data, max_bytes=LIMIT)
    finally:
        heic.decode_reduced = original


async def loop_lag(data: bytes, photos: int) -> tuple[list[float], float]:
    """How late a 10 ms timer fires (ms) while `photos` HEICs are prepared at once."""
    lags: list[float] = []
    done = False

    async def tick() -> None:
        while not done:
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append((time.perf_counter() - start - 0.01) * 1000)

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    await asyncio.gather(
        *(
            run_cpu(images.prepare_image, f"IMG_{n}.HEIC", data, max_bytes=LIMIT)
            for n in range(photos)
        )
    )
    elapsed = time.perf_counter() - started
    done = True
    await ticker
    return lags, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument(
        "--burst", type=int, default=8, help="HEICs prepared at once for the loop-lag row"
    )
    args = parser.parse_args()
    print(
        f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}; source: {source_picture()[1]}"
    )
    for kind in QUALITIES:
        data = heic_file(kind).read_bytes()
        grid = heic.read_grid(data)
        print(
            f"\n{kind}: {len(data) / 1e6:.2f} MB, {grid.columns}×{grid.rows} tiles, "
            f"{grid.width}×{grid.height}, irot {grid.rotation}, ICC {len(grid.icc or b'')} B"
        )
        for label, function in (
            (
                "prepare_image (FFmpeg, 2 cores, tiles to 1024 px)",
                lambda data=data: images.prepare_image("IMG_0001.HEIC", data, max_bytes=LIMIT),
            ),
            ("before: pillow-heif (libheif + libde265)", lambda data=data: without_fast_path(data)),
        ):
            median, p90, cpu = timed(function, args.runs)
            print(
                f"  {label:46} median {median:6.0f} ms  p90 {p90:6.0f} ms  CPU {cpu:6.0f} ms",
                flush=True,
            )
    data = heic_file("typical").read_bytes()
    lags, elapsed = asyncio.run(loop_lag(data, args.burst))
    lags.sort()
    print(
        f"\nevent loop while {args.burst} typical HEICs are prepared at once ({elapsed:.2f} s in all): "
        f"timer lag p50 {statistics.median(lags):.1f} ms, p99 {lags[int(0.99 * (len(lags) - 1))]:.1f} ms, "
        f"max {lags[-1]:.1f} ms over {len(lags)} ticks"
    )
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
