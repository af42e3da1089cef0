"""What the load benchmark makes of its measurements: statistics, tables, goals.

Owns a `Run` (one scenario against one target: its users and what the servers
saw), its summary, the medians over repetitions, the two printed tables and
the goals beside them. Does not measure anything.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
from dataclasses import dataclass, field

from load_clients import UserResult

MB = 1024 * 1024
GOALS = {"ttft_p50_added_ms": 150, "ttft_p95_added_ms": 400, "rss_return_ratio": 1.10}


@dataclass
class Run:
    users: list[UserResult]
    image_bytes: list[int] = field(
        default_factory=list
    )  # base64 data-URL length of each image sent
    body_bytes: list[int] = field(
        default_factory=list
    )  # each request body sent to the model server
    rss_before: int | None = None
    rss_peak: int | None = None
    rss_after: int | None = None
    app_cpu_s: float | None = None
    others_cpu_s: float | None = None  # CPU used meanwhile by processes outside the benchmark

    def summary(self) -> dict:
        done = [u for u in self.users if u.error is None]

        def pct(attribute: str, q: float, factor: float = 1.0) -> float | None:
            return _scaled(percentile([getattr(u, attribute) for u in done], q), factor)

        return {
            "users": len(self.users),
            "errors": len(self.users) - len(done),
            "error_samples": sorted({u.error for u in self.users if u.error})[:3],
            "ttft_p50_ms": pct("ttft", 50, 1000),
            "ttft_p95_ms": pct("ttft", 95, 1000),
            "to_model_p50_ms": pct("to_model_s", 50, 1000),
            "to_model_p95_ms": pct("to_model_s", 95, 1000),
            "total_p50_s": pct("total", 50),
            "total_p95_s": pct("total", 95),
            "tokens_per_s_p50": pct("tokens_per_s", 50),
            "tokens_per_s_p5": pct("tokens_per_s", 5),
            "upload_p50_s": pct("upload_s", 50),
            "image_kb": _scaled(percentile(self.image_bytes, 50), 1 / 1000),
            "body_kb": _scaled(percentile(self.body_bytes, 50), 1 / 1000),
            "rss_before_mb": _scaled(self.rss_before, 1 / MB),
            "rss_peak_mb": _scaled(self.rss_peak, 1 / MB),
            "rss_after_mb": _scaled(self.rss_after, 1 / MB),
            "app_cpu_ms_per_user": _scaled(self.app_cpu_s, 1000 / len(self.users))
            if self.users
            else None,
            "others_cpu_s": self.others_cpu_s,
        }


def percentile(values: list[float | None], q: float) -> float | None:
    """Nearest-rank percentile of the values present (p95 of 20 values is the 19th smallest)."""
    present = sorted(v for v in values if v is not None)
    if not present:
        return None
    return present[max(math.ceil(q / 100 * len(present)) - 1, 0)]


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def medians(repeats: list[dict[str, dict]]) -> dict[str, dict]:
    """Each number's median over the repetitions; users and errors are added up, not averaged."""
    combined = {}
    for key in repeats[0]:
        summaries = [r[key] for r in repeats]
        row = {}
        for name in summaries[0]:
            values = [s[name] for s in summaries]
            if name in ("errors", "users"):
                row[name] = sum(values)
            elif name == "error_samples":
                row[name] = sorted({e for v in values for e in v})[:3]
            else:
                present = [v for v in values if v is not None]
                row[name] = statistics.median(present) if present else None
        combined[key] = row
    return combined


# (heading, key, width, decimals) of each column
_LATENCY = (
    ("TTFT p50", "ttft_p50_ms", 9, 0),
    ("p95 ms", "ttft_p95_ms", 7, 0),
    ("to model p50", "to_model_p50_ms", 13, 0),
    ("p95 ms", "to_model_p95_ms", 7, 0),
    ("done p50", "total_p50_s", 9, 2),
    ("p95 s", "total_p95_s", 6, 2),
    ("tok/s p50", "tokens_per_s_p50", 10, 1),
    ("p5", "tokens_per_s_p5", 5, 1),
)
_RESOURCES = (
    ("image KB", "image_kb", 9, 0),
    ("request KB", "body_kb", 11, 0),
    ("RSS before", "rss_before_mb", 11, 0),
    ("peak", "rss_peak_mb", 6, 0),
    ("after MB", "rss_after_mb", 9, 0),
    ("app CPU ms/user", "app_cpu_ms_per_user", 16, 0),
    ("others' CPU s", "others_cpu_s", 14, 1),
)


def print_tables(result: dict[str, dict]) -> None:
    """Latency per user (from sending the question), then sizes and the app's resources."""
    for columns, with_errors in ((_LATENCY, True), (_RESOURCES, False)):
        print(
            f"{'':15}"
            + "".join(f"{heading:>{width}}" for heading, _, width, _ in columns)
            + (f"{'errors':>9}" if with_errors else "")
        )
        for key, row in result.items():
            cells = "".join(
                _cell(row[name], width, decimals) for _, name, width, decimals in columns
            )
            print(
                f"{key:15}{cells}" + (f"{row['errors']:>5}/{row['users']}" if with_errors else "")
            )
            for sample in row["error_samples"] if with_errors else ():
                print(f"{'':17}error: {sample}")
        print()


def _cell(value: float | None, width: int, decimals: int) -> str:
    return f"{'–':>{width}}" if value is None else f"{value:{width}.{decimals}f}"


def goals(result: dict[str, dict], stream_users: int) -> list[tuple[str, str, bool | None]]:
    """(goal, measured, met) for each goal; met is None when it could not be measured."""
    app, direct = result["photos/app"], result["photos/direct"]
    rows = []
    for q in (50, 95):
        goal = GOALS[f"ttft_p{q}_added_ms"]
        mine, theirs = app[f"ttft_p{q}_ms"], direct[f"ttft_p{q}_ms"]
        added = None if mine is None or theirs is None else mine - theirs
        rows.append(
            (
                f"photos: the app adds ≤ {goal} ms to p{q} TTFT over direct calls",
                "–" if added is None else f"{added:+.0f} ms ({mine:.0f} vs {theirs:.0f})",
                None if added is None else added <= goal,
            )
        )
    stream = result["stream/app"]
    rows.append(
        (
            f"stream: {stream_users} concurrent streaming users on one app process, no errors",
            f"{stream['errors']} errors in {stream['users']} chats",
            stream["errors"] == 0,
        )
    )
    for key in ("photos/app", "stream/app"):
        row = result[key]
        ratio = row["rss_after_mb"] / row["rss_before_mb"]
        rows.append(
            (
                f"{key}: RSS back within 10% of its level before the chats",
                f"{row['rss_before_mb']:.0f} → peak {row['rss_peak_mb']:.0f} → {row['rss_after_mb']:.0f} MB "
                f"({(ratio - 1) * 100:+.0f}%)",
                ratio <= GOALS["rss_return_ratio"],
            )
        )
    return rows


def whole_upload_goals(
    result: dict[str, dict], upload_mb: float, users: int
) -> list[tuple[str, str, bool | None]]:
    """Issue #13's goals for photos uploaded whole: against the naive client, text beside them, memory."""
    rows = []
    app, naive = result["photos/app"], result.get("photos/naive")
    if naive and app["ttft_p50_ms"] and naive["ttft_p50_ms"]:
        ratio = app["ttft_p50_ms"] / naive["ttft_p50_ms"]
        rows.append(
            (
                "whole uploads: app TTFT p50 ≤ 0.4× the naive client's",
                f"{ratio:.2f}× ({app['ttft_p50_ms']:.0f} vs {naive['ttft_p50_ms']:.0f} ms)",
                ratio <= 0.4,
            )
        )
    text, direct = result.get("mixed/text"), result["stream/direct"]
    if text and text["ttft_p50_ms"] and direct["ttft_p50_ms"]:
        added = text["ttft_p50_ms"] - direct["ttft_p50_ms"]
        rows.append(
            (
                "text-only questions asked beside the photos: first token ≤ +100 ms p50 over direct",
                f"{added:+.0f} ms ({text['ttft_p50_ms']:.0f} vs {direct['ttft_p50_ms']:.0f})",
                added <= 100,
            )
        )
    if app["rss_peak_mb"] and app["rss_before_mb"]:
        per_upload = (app["rss_peak_mb"] - app["rss_before_mb"]) * MB / 1e6 / users
        rows.append(
            (
                "peak RSS per whole upload (peak − before, over the users of one run) < 3× the file",
                f"{per_upload:.1f} MB = {per_upload / upload_mb:.1f}× {upload_mb:.1f} MB",
                per_upload < 3 * upload_mb,
            )
        )
    return rows


def print_goals(
    result: dict[str, dict], stream_users: int, upload_mb: float | None = None, users: int = 0
) -> None:
    extra = whole_upload_goals(result, upload_mb, users) if upload_mb else []
    for goal, measured, met in goals(result, stream_users) + extra:
        print(f"{'MET   ' if met else 'MISSED' if met is False else '?     '} {goal}: {measured}")


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            )
    except (OSError, StopIteration):
        cpu = platform.machine()
    return (
        f"{os.cpu_count()} cores, {cpu}, load average {os.getloadavg()[0]:.2f}; "
        f"Python {platform.python_version()}"
    )
