"""bench/charts.py draws each benchmark's chart headless, from the numbers the command prints."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import charts  # noqa: E402


def drawn(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 600
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 20  # more than a blank canvas


def test_the_photo_chart(tmp_path):
    timings = [
        {
            "label": "prepare_image, 12 MP photo",
            "median_ms": 73.4,
            "p90_ms": 88.9,
            "cpu_ms": 69.7,
            "goal_ms": 80,
        },
        {
            "label": "naive: full decode + LANCZOS",
            "median_ms": 259.1,
            "p90_ms": 270.0,
            "cpu_ms": 255.9,
            "goal_ms": None,
        },
    ]
    payloads = [
        {"label": "original file", "kb": 4680, "goal_kb": None},
        {"label": "prepared", "kb": 198, "goal_kb": 400},
    ]
    drawn(charts.write_prepare_image_chart(timings, payloads, "a note", tmp_path / "photo.png"))


def test_the_video_chart(tmp_path):
    drawn(
        charts.write_sample_video_chart(
            [2.7, 3.3, 2.1], [2.9, 3.0, 2.9], 3.0, "a note", tmp_path / "video.png"
        )
    )


def test_the_prefix_cache_chart(tmp_path):
    rows = [
        {"photos": photos, "where": where, "client": client, "hit_ratio": ratio, "ttft_ms": 200.0}
        for photos, where in (("4", "front"), ("7", "spread"))
        for client, ratio in (("app", 0.91), ("before", 0.76), ("ideal", 0.91))
    ]
    drawn(charts.write_prefix_cache_chart(rows, "a note", tmp_path / "prefix.png"))


def test_the_load_chart(tmp_path):
    def row(p50, rss=None):
        return {
            "users": 20,
            "ttft_p50_ms": p50,
            "ttft_p95_ms": p50 * 1.5,
            "rss_before_mb": rss,
            "rss_peak_mb": rss and rss * 2,
            "rss_after_mb": rss and rss * 1.05,
        }

    results = {
        "photos/app": row(500, 150),
        "stream/app": row(380, 150),
        "photos/direct": row(360),
        "stream/direct": row(355),
        "photos/naive": row(2900, 140),
    }
    drawn(charts.write_load_chart(results, tmp_path / "load.png"))


def test_results_are_written_as_json_with_their_time(tmp_path, monkeypatch):
    monkeypatch.setattr(charts, "RESULTS", tmp_path)
    path = charts.write_results("sample_video", {"wall_s": [2.5]})
    assert path.parent == tmp_path and path.name.startswith("sample_video-")
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["wall_s"] == [2.5] and saved["taken"].endswith("UTC")


@pytest.mark.parametrize("name", ["prepare_image", "sample_video", "prefix_cache", "load"])
def test_every_committed_chart_is_in_the_benchmarks_doc(name):
    doc = (charts.ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert f"](charts/{name}.png)" in doc
    assert (charts.CHARTS / f"{name}.png").is_file()
