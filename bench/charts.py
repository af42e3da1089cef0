"""The benchmarks' charts, and the JSON of the results they are drawn from.

Each benchmark command calls one `write_*_chart` with the numbers it printed
and `write_results` with the same numbers: the PNG goes to `docs/charts/`
(committed, embedded in docs/benchmarks.md beside the tables), the JSON to
`bench/results/` (ignored by git). Headless: matplotlib's Agg backend, no
display needed. Owns the look of the charts, nothing of the measuring.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # before pyplot: no display on the build box

import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CHARTS = ROOT / "docs" / "charts"
GOAL_STYLE = {"color": "#c0392b", "linestyle": "--", "linewidth": 1.2}
COLOURS = {
    "app": "#2e86de",
    "before": "#a5b1c2",
    "ideal": "#20bf6b",
    "direct": "#a5b1c2",
    "naive": "#eb8a2f",
}
DPI = 110


def write_results(name: str, data: dict) -> Path:
    """`bench/results/<name>-<time>.json`, with when it was taken."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    taken = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    path.write_text(
        json.dumps({"taken": taken, **data}, indent=1, ensure_ascii=False), encoding="utf-8"
    )
    return path


def write_prepare_image_chart(
    timings: Sequence[dict], payloads: Sequence[dict], note: str, path: Path
) -> Path:
    """Left: for each way to prepare the photo, its median CPU time and its median
    wall time (whisker: p90) — on a shared box the gap is time spent waiting for a
    core; right: the bytes each way sends.
    `timings`: {label, median_ms, p90_ms, cpu_ms, goal_ms?}; `payloads`: {label, kb, goal_kb?}."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), width_ratios=(3, 2))
    rows = list(timings)[::-1]
    places = range(len(rows))
    cpu = [row["cpu_ms"] for row in rows]
    wall = [row["median_ms"] for row in rows]
    naive = ["naive" in row["label"] for row in rows]
    left.barh(
        [n + 0.2 for n in places],
        cpu,
        0.4,
        label="median CPU time",
        color=[COLOURS["naive"] if n else COLOURS["app"] for n in naive],
    )
    left.barh(
        [n - 0.2 for n in places],
        wall,
        0.4,
        xerr=[[0] * len(rows), [r["p90_ms"] - r["median_ms"] for r in rows]],
        capsize=2,
        label="median wall time (whisker: p90)",
        color=COLOURS["before"],
    )
    _bar_values(left, cpu, "{:.0f} ms", positions=[n + 0.2 for n in places])
    _bar_values(
        left, wall, "{:.0f} ms", positions=[n - 0.2 for n in places], at=[r["p90_ms"] for r in rows]
    )
    left.set_yticks(list(places), [row["label"].strip() for row in rows])
    _goal(
        left,
        next((row["goal_ms"] for row in timings if row.get("goal_ms")), None),
        "goal ≤ {:g} ms",
        "x",
    )
    left.set_xscale("log")  # the naive way is several times the others: a linear axis flattens them
    left.set_xlim(min(cpu) * 0.6, max(row["p90_ms"] for row in timings) * 2.2)
    left.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    left.set_xlabel("milliseconds per photo (log scale)")
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False)
    sizes = [row["kb"] for row in payloads][::-1]
    sent = [COLOURS["naive"] if "original" in row["label"] else COLOURS["app"] for row in payloads][
        ::-1
    ]
    right.barh([row["label"] for row in payloads][::-1], sizes, color=sent)
    right.set_xlim(0, max(sizes) * 1.25)
    _goal(
        right,
        next((row["goal_kb"] for row in payloads if row.get("goal_kb")), None),
        "goal ≤ {:g} KB",
        "x",
    )
    _bar_values(right, sizes, "{:,.0f} KB")
    right.set_xlabel("kilobytes")
    right.set_title("what goes to the model", fontsize=10, pad=16)
    return _save(figure, "Preparing a 12 MP phone photo for Pixtral", note, path)


def write_sample_video_chart(
    wall_s: Sequence[float], cpu_s: Sequence[float], goal_s: float, note: str, path: Path
) -> Path:
    """Each run's wall and CPU time, their medians, and the goal."""
    figure, axes = plt.subplots(figsize=(8, 3.8))
    runs = range(1, len(wall_s) + 1)
    axes.plot(
        runs,
        wall_s,
        "o-",
        color=COLOURS["app"],
        label=f"wall time (median {_median(wall_s):.2f} s)",
    )
    axes.plot(
        runs,
        cpu_s,
        "s--",
        color=COLOURS["before"],
        label=f"CPU time, all threads (median {_median(cpu_s):.2f} s)",
    )
    axes.axhline(_median(wall_s), color=COLOURS["app"], linewidth=0.8, alpha=0.6)
    _goal(axes, goal_s, "goal ≤ {:g} s (median wall time)", "y")
    axes.set_xticks(list(runs))
    axes.set_xlabel("run")
    axes.set_ylabel("seconds")
    axes.set_ylim(0, max([*wall_s, *cpu_s, goal_s]) * 1.25)
    axes.legend(loc="lower right", fontsize=8)
    return _save(figure, "Sampling a 10-minute 1080p video into 4 images", note, path)


def write_prefix_cache_chart(rows: Sequence[dict], note: str, path: Path) -> Path:
    """Per chat shape, each client's prefix-cache hit ratio and follow-up TTFT.
    `rows`: prefix_cache.summarise's, {photos, where, client, hit_ratio, ttft_ms, ...}."""
    chats = list(dict.fromkeys((row["photos"], row["where"]) for row in rows))
    clients = list(dict.fromkeys(row["client"] for row in rows))
    by_key = {(row["photos"], row["where"], row["client"]): row for row in rows}
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(clients)
    for index, client in enumerate(clients):
        positions = [n + (index - (len(clients) - 1) / 2) * width for n in range(len(chats))]
        ratios = [100 * by_key[(*chat, client)]["hit_ratio"] for chat in chats]
        times = [by_key[(*chat, client)]["ttft_ms"] for chat in chats]
        colour = COLOURS.get(client, "grey")
        left.bar(positions, ratios, width, label=client, color=colour)
        right.bar(positions, times, width, label=client, color=colour)
        _bar_values(left, ratios, "{:.0f}%", positions=positions, vertical=True)
    names = [f"{photos} photos,\n{where}" for photos, where in chats]
    for axes in (left, right):
        axes.set_xticks(range(len(chats)), names, fontsize=9)
    left.set_ylabel("follow-up prompt tokens from the cache (%)")
    left.set_ylim(0, 125)
    left.legend(fontsize=8, loc="upper right", ncol=3)
    right.set_ylabel("follow-up time to first token, p50 (ms)")
    right.set_title("tiny model on 2 CPU cores: times are only relative", fontsize=9)
    return _save(figure, "Follow-ups and vLLM's prefix cache (10-turn chats)", note, path)


LOAD_TARGETS = ("app", "direct", "naive")
LOAD_GOAL_ADDED_MS = (
    150  # the app adds at most this to p50 TTFT over direct calls (bench/load_report.py)
)


def write_load_chart(results: dict[str, dict], path: Path) -> Path:
    """Time to first token (p50 bar, p95 whisker) of each scenario against each
    target, with the goal (direct + 150 ms) over the app's bars, and the app's
    memory before, at the peak of and after the chats.
    `results`: load_report.medians's, keyed "photos/app", "stream/direct", …"""
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=(3, 2))
    keys = sorted(
        (key for key in results if results[key].get("ttft_p50_ms") is not None), key=_load_order
    )
    p50 = [results[key]["ttft_p50_ms"] for key in keys]
    p95 = [results[key].get("ttft_p95_ms") or value for key, value in zip(keys, p50)]
    colours = [COLOURS.get(key.split("/")[-1], "grey") for key in keys]
    left.bar(
        keys,
        p50,
        yerr=[[0] * len(keys), [b - a for a, b in zip(p50, p95)]],
        color=colours,
        capsize=3,
    )
    _bar_values(left, p50, "{:.0f} ms", positions=range(len(keys)), vertical=True, at=p95)
    for index, key in enumerate(keys):
        scenario, target = key.split("/", 1)
        direct = results.get(f"{scenario}/direct", {}).get("ttft_p50_ms")
        if (
            scenario == "photos" and target == "app" and direct is not None
        ):  # the goal is for photos
            goal = direct + LOAD_GOAL_ADDED_MS
            left.hlines(goal, index - 0.45, index + 0.45, **GOAL_STYLE)
            left.annotate(
                f"goal ≤ direct + {LOAD_GOAL_ADDED_MS} ms",
                (index - 0.45, goal),
                xytext=(0, 3),
                textcoords="offset points",
                fontsize=7,
                color=GOAL_STYLE["color"],
            )
    left.set_ylabel("time to first token, ms (bar p50, whisker p95)")
    left.tick_params(axis="x", labelrotation=20, labelsize=8)
    apps = [key for key in keys if results[key].get("rss_before_mb") is not None]
    width = 0.27
    for index, (name, label) in enumerate(
        (("rss_before_mb", "before"), ("rss_peak_mb", "peak"), ("rss_after_mb", "after"))
    ):
        right.bar(
            [n + (index - 1) * width for n in range(len(apps))],
            [results[key][name] for key in apps],
            width,
            label=label,
            color=("#a5b1c2", "#eb8a2f", "#2e86de")[index],
        )
    right.set_xticks(range(len(apps)), apps, fontsize=8, rotation=20)
    right.set_ylabel("app memory (RSS), MB")
    right.set_ylim(0, max([results[key]["rss_peak_mb"] for key in apps] or [1]) * 1.3)
    right.legend(fontsize=8, ncol=3, loc="upper right")
    users = {key.split("/")[0]: results[key]["users"] for key in keys}
    note = (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, medians of the repetitions; "
        + ", ".join(f"{scenario}: {count} chats in all" for scenario, count in users.items())
    )
    return _save(figure, "Many people at once, through the real app (fake model)", note, path)


def _load_order(key: str) -> tuple[str, int]:
    scenario, _, target = key.partition("/")
    return scenario, LOAD_TARGETS.index(target) if target in LOAD_TARGETS else len(LOAD_TARGETS)


def _goal(axes, value: float | None, label: str, along: str) -> None:
    if value is None:
        return
    line = axes.axvline if along == "x" else axes.axhline
    line(value, **GOAL_STYLE)
    if along == "x":  # above the plot, clear of the bars
        axes.annotate(
            label.format(value),
            (value, 1.0),
            xycoords=("data", "axes fraction"),
            ha="center",
            xytext=(0, 3),
            textcoords="offset points",
            fontsize=8,
            color=GOAL_STYLE["color"],
        )
    else:
        axes.annotate(
            label.format(value),
            (0.0, value),
            xycoords=("axes fraction", "data"),
            xytext=(4, -11),
            textcoords="offset points",
            fontsize=8,
            color=GOAL_STYLE["color"],
        )


def _bar_values(
    axes, values, template: str, *, positions=None, vertical: bool = False, at=None
) -> None:
    """Each bar's value written past its end (or past `at`, e.g. its whisker)."""
    positions = range(len(values)) if positions is None else positions
    for position, value, end in zip(positions, values, values if at is None else at):
        if vertical:
            axes.annotate(
                template.format(value),
                (position, end),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7,
            )
        else:
            axes.annotate(
                template.format(value),
                (end, position),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
            )


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _save(figure, title: str, note: str, path: Path) -> Path:
    figure.suptitle(title, fontsize=12)
    figure.text(0.01, 0.01, note, fontsize=7.5, color="#555555")
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(
        path, dpi=DPI, metadata={"Software": None}
    )  # no version stamp: the PNG changes only with data
    plt.close(figure)
    return path
