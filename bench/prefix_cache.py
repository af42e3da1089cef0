"""Follow-ups and vLLM's prefix cache: how much of each follow-up vLLM did not redo.

    .venv/bin/python bench/prefix_cache.py [--repeat 3] [--before f876ae4] [--base-url URL --api-key KEY]

Not a test: it prints a table for docs/benchmarks.md ("Follow-ups and the prefix
cache"). It starts the real vLLM (tests/real_vllm.py: the CPU build with the
tiny random Pixtral and the flags of deploy/vllm.service, in dev mode so that
the cache can be emptied between clients), unless given `--base-url`.

Scripted chats of 10 turns with 4 or 7 photos, one per turn, either in the first
turns ("front": then text follow-ups) or spread over the chat ("spread": turns
1, 4, 7, 10 for 4 photos; 1, 2, 4, 5, 7, 8, 10 for 7). Three clients build each
turn's request:

- "app": the app's own `Conversation.build_request` (handlers/chat/conversation.py),
  with the app's system prompt and settings (image limit 4, SYSTEM_PROMPT_PLACEMENT
  as configured, default "first");
- "before": the same file at `--before` (the commit before this work), loaded from
  git and run with today's tokenizer module (its API is unchanged);
- "ideal": keeps every earlier message byte-identical (system text leading the
  first message) and, past the image limit, hides every earlier image in one
  step that then stays put; it ignores the token budget (these chats fit).

Each client's chat is sent to vLLM turn by turn, streamed with the answer it got
(`max_tokens` 16). Between clients the prefix cache is reset and the photos
differ, so no client profits from another. Per client: vLLM's own counters
(`vllm:prefix_cache_hits_total` / `_queries_total`, in tokens) over the
follow-ups (turns 2-10), the cached share of follow-up prompt tokens from
`usage`, and the median follow-up time to first token. The goal: the app's hit
ratio >= 90 % of the ideal's. (Absolute hits would favour a client that shows
more images: the app keeps up to 4 in view where the ideal may keep 3.)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import charts  # noqa: E402  (bench/, the script's own folder)

from handlers.chat.conversation import placeholder  # noqa: E402
from handlers.chat.tokens import TokenCounter  # noqa: E402
from handlers.core.prompts import system_prompt  # noqa: E402
from handlers.core.settings import load_settings  # noqa: E402
from handlers.media.bundle import ImagePart  # noqa: E402
from handlers.media.images import PreparedImage, prepare_pil  # noqa: E402
from tests.real_vllm import RealVLLM  # noqa: E402

TURNS = 10
SCRIPTS = {  # the turns (0-based) that bring a photo
    ("4", "front"): (0, 1, 2, 3),
    ("4", "spread"): (0, 3, 6, 9),
    ("7", "front"): (0, 1, 2, 3, 4, 5, 6),
    ("7", "spread"): (0, 1, 3, 4, 6, 7, 9),
}
ANSWER_TOKENS = 16
QUESTIONS = [
    "What is this?",
    "What colour is it?",
    "Anything written on it?",
    "How many are there?",
    "Compare it with the previous one.",
    "Which is the largest?",
    "Is anything broken?",
    "Summarise everything so far.",
    "What would you check next?",
    "Thanks, one last detail?",
]


def photo(seed: int) -> PreparedImage:
    """A busy 4:3 photo-like picture, prepared as the app prepares uploads (1024x768 JPEG)."""
    rng = random.Random(seed)
    image = Image.new("RGB", (2000, 1500), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(400):
        x, y = rng.randrange(2000), rng.randrange(1500)
        draw.ellipse(
            (x, y, x + rng.randrange(20, 300), y + rng.randrange(20, 300)),
            fill=tuple(rng.randrange(256) for _ in range(3)),
        )
    return prepare_pil(f"photo{seed}.jpg", image, source_format="JPEG")


# --- the three clients: each turns the chat so far into the request's messages ------


class AppClient:
    name = "app"

    def __init__(
        self, module: types.ModuleType, counter: TokenCounter, system: str, settings
    ) -> None:
        self.conversation = module.Conversation()
        self._module, self._counter, self._system, self._settings = (
            module,
            counter,
            system,
            settings,
        )

    def ask(self, turn_id: str, text: str, images: list[PreparedImage]) -> list[dict]:
        parts = [
            self._module.ImagePart(key=f"{turn_id}-{i}", image=image)
            for i, image in enumerate(images)
        ]
        self.conversation.add_user(turn_id, text, parts)
        return self.conversation.build_request(
            self._system, self._counter, **self.options()
        ).messages

    def options(self) -> dict:
        return {
            "max_images": self._settings.max_images_per_request,
            "prompt_budget": self._settings.prompt_budget,
            "system_first": self._settings.system_first,
        }

    def answered(self, turn_id: str, text: str) -> None:
        self.conversation.add_assistant(f"{turn_id}:answer", text)


class BeforeClient(AppClient):
    name = "before"

    def options(self) -> dict:  # its build_request has no system_first: Mistral's placement
        options = super().options()
        del options["system_first"]
        return options


class IdealClient:
    name = "ideal"

    def __init__(self, system: str, max_images: int) -> None:
        self.messages: list[dict] = []
        self._system, self._max_images = system, max_images
        self._in_view: list[tuple[int, int, ImagePart]] = []  # (message index, part index, image)

    def ask(self, turn_id: str, text: str, images: list[PreparedImage]) -> list[dict]:
        if len(self._in_view) + len(images) > self._max_images:  # one step, then it stays put
            for message_index, part_index, part in self._in_view:
                self.messages[message_index]["content"][part_index] = {
                    "type": "text",
                    "text": placeholder(part),
                }
            self._in_view = []
        content = [{"type": "text", "text": self._system}] if not self.messages else []
        for i, image in enumerate(images):
            self._in_view.append(
                (len(self.messages), len(content), ImagePart(key=f"{turn_id}-{i}", image=image))
            )
            content.append(image.to_content_part())
        content.append({"type": "text", "text": text})
        self.messages.append({"role": "user", "content": content})
        return json.loads(json.dumps(self.messages))  # what goes out is a copy, as on the wire

    def answered(self, turn_id: str, text: str) -> None:
        self.messages.append({"role": "assistant", "content": text})


def load_before(revision: str) -> types.ModuleType:
    """handlers/chat/conversation.py as it was at `revision`, importing today's other modules."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:handlers/chat/conversation.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    spec = importlib.util.spec_from_loader("conversation_before", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    exec(compile(source, f"{revision}:handlers/chat/conversation.py", "exec"), module.__dict__)
    return module


# --- one chat against vLLM -----------------------------------------------------------


@dataclass
class Turn:
    ttft: float
    prompt: int
    cached: int
    hits: float
    queries: float


async def run_chat(
    http: httpx.AsyncClient, server: Server, client, photos: dict[int, PreparedImage]
) -> list[Turn]:
    turns = []
    for n in range(TURNS):
        images = [photos[n]] if n in photos else []
        messages = client.ask(f"t{n}", QUESTIONS[n], images)
        before = await server.counters(http)
        answer, turn = await server.stream(http, messages)
        after = await server.counters(http)
        turn.hits, turn.queries = after[0] - before[0], after[1] - before[1]
        client.answered(f"t{n}", answer)
        turns.append(turn)
    return turns


class Server:
    def __init__(self, base_url: str, api_key: str, model: str) -> None:
        self.base_url, self.root = base_url, base_url.removesuffix("/v1")
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.model = model

    async def stream(self, http: httpx.AsyncClient, messages: list[dict]) -> tuple[str, Turn]:
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": ANSWER_TOKENS,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        started, first, pieces, usage = time.perf_counter(), None, [], {}
        async with http.stream(
            "POST", f"{self.base_url}/chat/completions", json=body, headers=self.headers
        ) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line.removeprefix("data: "))
                for choice in event.get("choices") or []:
                    if choice["delta"].get("content"):
                        first = first or time.perf_counter()
                        pieces.append(choice["delta"]["content"])
                usage = event.get("usage") or usage
        details = usage.get("prompt_tokens_details") or {}
        return "".join(pieces), Turn(
            (first or time.perf_counter()) - started,
            usage["prompt_tokens"],
            details.get("cached_tokens") or 0,
            0,
            0,
        )

    async def counters(self, http: httpx.AsyncClient) -> tuple[float, float]:
        text = (await http.get(f"{self.root}/metrics")).text
        return _metric(text, "vllm:prefix_cache_hits_total"), _metric(
            text, "vllm:prefix_cache_queries_total"
        )

    async def reset_cache(self, http: httpx.AsyncClient) -> bool:
        response = await http.post(f"{self.root}/reset_prefix_cache", headers=self.headers)
        return response.status_code == 200


def _metric(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


# --- the run ---------------------------------------------------------------------------


def clients(before: types.ModuleType, counter: TokenCounter, settings, system: str):
    import handlers.chat.conversation as today

    return [
        AppClient(today, counter, system, settings),
        BeforeClient(before, counter, system, settings),
        IdealClient(system, settings.max_images_per_request),
    ]


async def measure(server: Server, before: types.ModuleType, repeat: int) -> dict:
    settings = load_settings({}, env_file=None)
    counter = TokenCounter()
    system = system_prompt("auto", "English")
    results: dict = {}
    seed = 0
    async with httpx.AsyncClient(timeout=300) as http:
        await server.stream(http, [{"role": "user", "content": "warm up"}])
        for script, photo_turns in SCRIPTS.items():
            for _ in range(repeat):
                for client in clients(before, counter, settings, system):
                    if not await server.reset_cache(http):
                        print(
                            "note: the prefix cache could not be reset (start vLLM with VLLM_SERVER_DEV_MODE=1)"
                        )
                    photos = {turn: photo(seed + i) for i, turn in enumerate(photo_turns)}
                    seed += len(photos)
                    turns = await run_chat(http, server, client, photos)
                    results.setdefault((*script, client.name), []).append(turns[1:])
    return results


def summarise(results: dict) -> list[dict]:
    rows = []
    for (photos, where, name), runs in results.items():
        hits = [sum(t.hits for t in run) for run in runs]
        queries = [sum(t.queries for t in run) for run in runs]
        cached_share = [sum(t.cached for t in run) / sum(t.prompt for t in run) for run in runs]
        ttft = [statistics.median(t.ttft for t in run) for run in runs]
        rows.append(
            {
                "photos": photos,
                "where": where,
                "client": name,
                "hits": statistics.median(hits),
                "hit_ratio": statistics.median(h / q for h, q in zip(hits, queries)),
                "cached_share": statistics.median(cached_share),
                "ttft_ms": 1000 * statistics.median(ttft),
                "runs": len(runs),
            }
        )
    for row in rows:
        ideal = next(
            r
            for r in rows
            if (r["photos"], r["where"], r["client"]) == (row["photos"], row["where"], "ideal")
        )
        row["of_ideal"] = (
            row["hit_ratio"] / ideal["hit_ratio"] if ideal["hit_ratio"] else float("nan")
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| photos | in turns | client | hit ratio (vLLM counters) | cached share of prompt tokens "
        "| hit ratio, share of the ideal's | follow-up TTFT p50 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['photos']} | {r['where']} | {r['client']} | {r['hit_ratio']:.0%} | {r['cached_share']:.0%} "
            f"| {r['of_ideal']:.0%} | {r['ttft_ms']:.0f} ms |"
        )
    return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--before", default="f876ae4", help="the commit whose conversation.py is 'before'"
    )
    parser.add_argument(
        "--base-url", help="a running vLLM (dev mode, for cache resets) instead of starting one"
    )
    parser.add_argument("--api-key", default="bench-key")
    parser.add_argument("--model", default="mistralai/Pixtral-12B-2409")
    args = parser.parse_args()
    before = load_before(args.before)
    load_start = os.getloadavg()[0]
    real = None
    if not args.base_url:
        real = RealVLLM(
            Path(tempfile.mkdtemp(prefix="prefix-bench-")),
            port=free_port(),
            api_key=args.api_key,
            env={"VLLM_SERVER_DEV_MODE": "1"},
        )
        real.start()
        real.wait_ready()
    try:
        server = Server(args.base_url or real.base_url, args.api_key, args.model)
        rows = summarise(asyncio.run(measure(server, before, args.repeat)))
    finally:
        if real:
            real.stop()
    print(table(rows))
    record(rows, args.repeat, (load_start, os.getloadavg()[0]))
    return 0


def record(rows: list[dict], repeat: int, load: tuple[float, float]) -> None:
    """The table's numbers, as JSON and as the chart in docs/benchmarks.md."""
    path = charts.write_results(
        "prefix_cache", {"repeat": repeat, "load_average": list(load), "rows": rows}
    )
    note = (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, medians of {repeat} runs, real vLLM CPU build "
        f"with a tiny random Pixtral, shared 2-core box (load average {load[0]:.1f} → {load[1]:.1f})"
    )
    chart = charts.write_prefix_cache_chart(rows, note, charts.CHARTS / "prefix_cache.png")
    print(f"wrote {path.relative_to(ROOT)} and {chart.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
