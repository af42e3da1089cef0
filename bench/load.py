"""Load benchmark: many people chatting with photos at once, through the real app.

    .venv/bin/python bench/load.py [--users 20] [--stream-users 50] [--ttft 0.35]
        [--tokens-per-s 30] [--answer-tokens 150] [--ramp 2] [--repeat 3] [--json]

Not a test: it prints a table with the goals beside the numbers, for
docs/benchmarks.md ("Load"); `--json` also writes every user's numbers to
bench/results/ (ignored by git). Everything runs on 127.0.0.1 and stops by
itself: each user has a deadline, and the servers are stopped at the end.

Per repetition, against one fake vLLM server (tests/fake_vllm.py, in a child
process) that waits `--ttft` before the first token and then streams
`--tokens-per-s` tokens a second:

1. the app, started as scripts/start.sh finally starts it (`chainlit run
   chainlit_app.py --headless` from the project root; start.sh itself would run
   pip first), after one warm-up chat with a photo and one without;
2. "photos": `--users` people, each dropping the same 12 MP JPEG (4.7 MB,
   tests/imagecorpus.py) into the chat and asking about it. Their browsers
   upload it as the app's page script shrinks it (2048 px, ~1 MB; done once,
   before the run, as each person's own computer would); `--full-uploads`
   uploads it whole, as a client without the script would;
3. "stream": `--stream-users` people asking a text-only question;
4. "direct": the same users sending the very requests the app sent in its
   warm-up (prepared 1024 px image) straight to the fake with AsyncOpenAI —
   what the model server alone costs, so app minus direct is the app's overhead;
5. "naive": bench/naive_app.py (the whole photo as base64, blocking OpenAI
   client in the async handler), started and driven the same way.

User i of n starts `i * ramp / n` seconds into a run (connect, upload, ask), so
the default puts 20 people's questions within 2 s of each other while every
answer lasts ~5 s: all of them are streaming at once. Each asks the moment its
upload is done, the worst case; `--typing S` waits S seconds in between, as a
person typing the question would (the app prepares a photo during that time).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import secrets
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import charts  # noqa: E402
from load_clients import (  # noqa: E402
    AUTH_HEADER,
    PROXY_SECRET,
    ChainlitUser,
    Photo,
    UserResult,
    as_the_browser_uploads,
    direct_user,
)
from load_report import Run, machine, medians, print_goals, print_tables  # noqa: E402
from load_servers import (  # noqa: E402
    ROOT,
    AppProcess,
    CpuMeter,
    FakeServer,
    Profiler,
    RssSampler,
    app_environment,
)

from tests import imagecorpus  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PHOTO_QUESTION = "What is in this photo? Describe it briefly."
TEXT_QUESTION = "Explain in a few sentences what white balance is in photography."
WORDS = [
    "the",
    "photo",
    "shows",
    "a",
    "wide",
    "street",
    "at",
    "dusk",
    "with",
    "parked",
    "cars,",
    "lit",
    "shop",
    "windows",
    "and",
    "a",
    "few",
    "people",
    "walking",
    "past",
    "a",
    "red",
    "awning",
    "while",
    "the",
    "sky",
    "above",
    "the",
    "roofs",
    "fades",
    "from",
    "orange",
    "to",
    "blue",
]
TAG = re.compile(r"\(#(\d+)\)")


def reply_text(tokens: int) -> str:
    """The model's answer: `tokens` words, and the fake streams one word per token."""
    return " ".join(WORDS[i % len(WORDS)] for i in range(tokens)) + "."


def tagged(question: str, index: int | str) -> str:
    """Each user's question carries its number, to find its request among those the fake recorded."""
    return f"{question} (#{index})"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def bounded(coroutine, delay: float, deadline: float, result: UserResult) -> UserResult:
    """Start after `delay`; whatever goes wrong becomes this user's counted error, never the run's."""
    await asyncio.sleep(delay)
    try:
        return await asyncio.wait_for(coroutine, deadline)
    except TimeoutError:
        result.error = f"no end of answer within {deadline:.0f} s"
    except Exception as error:  # noqa: BLE001 — every failure is reported in the table
        result.error = f"{type(error).__name__}: {error}"[:200]
    return result


async def chainlit_run(
    app: AppProcess,
    fake: FakeServer,
    args,
    count: int,
    photo: Photo | None,
    question: str,
    expected: str,
    beside: int = 0,
) -> Run:
    """`count` browser tabs chat at once; RSS is sampled throughout and read again after they close.
    `beside` more tabs ask a text-only question over the same ramp (users after the first `count`)."""
    fake.take()
    users = [
        ChainlitUser(app.url, f"load-user-{i}", tagged(question, i), photo, expected, args.typing)
        for i in range(count)
    ]
    users += [
        ChainlitUser(app.url, f"load-user-{i}", tagged(TEXT_QUESTION, i), None, expected)
        for i in range(count, count + beside)
    ]
    users.sort(
        key=lambda user: _number(user) % max(count, 1)
    )  # text and photo users take turns on the ramp
    run = Run(users=[], rss_before=app.rss())
    with RssSampler(app) as sampler, CpuMeter(app.process.pid) as cpu:
        await asyncio.gather(
            *(
                bounded(user.chat(), i * args.ramp / len(users), args.deadline, user.result)
                for i, user in enumerate(users)
            )
        )
        await asyncio.gather(*(user.close() for user in users))
    run.users = [
        user.result for user in sorted(users, key=_number)
    ]  # by tag: _add_requests finds them so
    run.rss_peak, run.app_cpu_s, run.others_cpu_s = sampler.peak, cpu.app, cpu.others
    await asyncio.sleep(args.settle)
    run.rss_after = app.rss()
    _add_requests(run, fake.take())
    return run


async def direct_run(fake: FakeServer, args, count: int, body: dict, expected: str) -> Run:
    """The app's own warm-up request, retagged for each user, sent straight to the fake."""
    client = openai.AsyncOpenAI(
        base_url=fake.base_url, api_key="EMPTY", max_retries=0, timeout=args.deadline
    )
    template = json.dumps(body)
    bodies = [
        json.loads(template.replace(tagged("", "warm-up"), tagged("", i))) for i in range(count)
    ]
    fake.take()
    try:
        with CpuMeter() as cpu:
            users = await asyncio.gather(
                *(
                    bounded(
                        direct_user(client, bodies[i], expected),
                        i * args.ramp / count,
                        args.deadline,
                        UserResult(),
                    )
                    for i in range(count)
                )
            )
    finally:
        await client.close()
    run = Run(users=list(users), others_cpu_s=cpu.others)
    _add_requests(run, fake.take())
    return run


def _number(user: ChainlitUser) -> int:
    return int(TAG.search(user.question)[1])


def split_run(run: Run, count: int) -> tuple[Run, Run]:
    """The first `count` users and the rest, each with the run's shared measurements."""
    shared = {
        name: getattr(run, name)
        for name in ("rss_before", "rss_peak", "rss_after", "app_cpu_s", "others_cpu_s")
    }
    photos = Run(
        users=run.users[:count], image_bytes=run.image_bytes, body_bytes=run.body_bytes, **shared
    )
    return photos, Run(users=run.users[count:], **shared)


def _add_requests(run: Run, summaries: list[dict]) -> None:
    """Request sizes, and each user's send-to-arrival time, found by the tag in its question."""
    run.body_bytes = [s["body_bytes"] for s in summaries]
    run.image_bytes = [size for s in summaries for size in s["image_bytes"]]
    for summary in summaries:
        found = TAG.search(summary["text"])
        if found and int(found[1]) < len(run.users):
            user = run.users[int(found[1])]
            if user.sent_at is not None and summary["received_at"] is not None:
                user.to_model_s = summary["received_at"] - user.sent_at


async def warm_up(
    app: AppProcess, fake: FakeServer, photo: Photo, expected: str
) -> dict[str, dict]:
    """One chat with the photo, one without, one after the other: first-use costs
    (imports, the model list, thread pools) are paid here, not by the measured users.
    Returns the requests the app sent, by kind, for the direct baseline."""
    fake.take()
    for question, attachment in ((PHOTO_QUESTION, photo), (TEXT_QUESTION, None)):
        user = ChainlitUser(
            app.url, "load-warm-up", tagged(question, "warm-up"), attachment, expected
        )
        try:
            result = await asyncio.wait_for(user.chat(), 120)
        finally:
            await user.close()
        if result.error:
            raise RuntimeError(f"warm-up chat failed: {result.error}; see {app.log_path}")
    bodies = fake.take(bodies=True)
    with_image = [b for b in bodies if any(_images(b))]
    without = [b for b in bodies if not any(_images(b))]
    return {"photo": with_image[-1], "text": without[-1]}


def _images(body: dict) -> list:
    return [
        p
        for m in body["messages"]
        if isinstance(m.get("content"), list)
        for p in m["content"]
        if p.get("type") == "image_url"
    ]


@contextlib.contextmanager
def started(script: str, fake: FakeServer, log_name: str, extra_env: dict[str, str]):
    """The app process for one repetition, signing people in by header.

    It gets a Chainlit root of its own (CHAINLIT_APP_ROOT: links to the project's
    `.chainlit/` and `chainlit*.md`), because Chainlit deletes `<root>/.files/`,
    every session's uploads, when it shuts down, and other copies of the app may be
    running from the project root; and a DATA_DIR of its own for history and files.
    Both are gone afterwards."""
    root = Path(tempfile.mkdtemp(prefix="load-app-"))
    for name in (".chainlit", "chainlit.md", "chainlit_zh-CN.md", "public"):
        if (ROOT / name).exists():
            (root / name).symlink_to(ROOT / name)
    env = {
        "CHAINLIT_APP_ROOT": str(root),
        "DATA_DIR": str(root / "data"),
        "AUTH_TRUSTED_HEADER": AUTH_HEADER,
        "AUTH_PROXY_SECRET": PROXY_SECRET,
        "CHAINLIT_AUTH_SECRET": secrets.token_urlsafe(32),
        **extra_env,
    }
    app = AppProcess(script, free_port(), app_environment(fake.base_url, env), RESULTS / log_name)
    try:
        yield app.start()
    finally:
        app.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def profiled(app: AppProcess, enabled: bool, path: Path):
    if not enabled:
        yield
        return
    with Profiler(app.process.pid, path) as profiler:
        yield
    parts = profiler.breakdown()
    total = sum(seconds for _, seconds in parts)
    print(
        f"py-spy: where the app's busy samples went during the photos and stream runs "
        f"({path.relative_to(ROOT)}), all threads:"
    )
    for name, seconds in parts:
        print(f"  {seconds:6.2f} s {seconds / total:6.1%}  {name}")
    print()


async def measure_once(
    args, fake: FakeServer, photo: Photo, expected: str, repetition: int
) -> dict[str, Run]:
    runs: dict[str, Run] = {}
    with started("chainlit_app.py", fake, "load-app.log", {**DEPLOYED_ENV, **args.app_env}) as app:
        bodies = await warm_up(app, fake, photo, expected)
        await asyncio.sleep(args.settle)
        with profiled(app, args.profile, RESULTS / f"load-app-profile-{repetition + 1}.txt"):
            runs["photos/app"] = await chainlit_run(
                app, fake, args, args.users, photo, PHOTO_QUESTION, expected
            )
            runs["stream/app"] = await chainlit_run(
                app, fake, args, args.stream_users, None, TEXT_QUESTION, expected
            )
            if args.text_beside:
                both = await chainlit_run(
                    app,
                    fake,
                    args,
                    args.users,
                    photo,
                    PHOTO_QUESTION,
                    expected,
                    beside=args.text_beside,
                )
                runs["mixed/photos"], runs["mixed/text"] = split_run(both, args.users)
    runs["photos/direct"] = await direct_run(fake, args, args.users, bodies["photo"], expected)
    runs["stream/direct"] = await direct_run(
        fake, args, args.stream_users, bodies["text"], expected
    )
    if not args.no_naive:
        with started("bench/naive_app.py", fake, "load-naive.log", args.app_env) as naive:
            await warm_up(naive, fake, photo, expected)
            await asyncio.sleep(args.settle)
            runs["photos/naive"] = await chainlit_run(
                naive, fake, args, args.users, photo, PHOTO_QUESTION, expected
            )
            runs["stream/naive"] = await chainlit_run(
                naive, fake, args, args.stream_users, None, TEXT_QUESTION, expected
            )
    return runs


# What scripts/start.sh and deploy/visual-assistant.service set for the app: glibc
# hands freed image buffers back to the system instead of keeping them in its arenas.
DEPLOYED_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--users", type=int, default=20, help="people uploading a photo (default 20)"
    )
    parser.add_argument(
        "--stream-users", type=int, default=50, help="people asking text-only (default 50)"
    )
    parser.add_argument(
        "--ttft", type=float, default=0.35, help="fake model's seconds to first token"
    )
    parser.add_argument(
        "--tokens-per-s", type=float, default=30.0, help="fake model's tokens/s per stream"
    )
    parser.add_argument("--answer-tokens", type=int, default=150, help="tokens in each answer")
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds over which users start")
    parser.add_argument(
        "--deadline",
        type=float,
        default=120.0,
        help="seconds a user may take before it counts as an error",
    )
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds after disconnecting before reading RSS"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="repetitions; the table shows medians"
    )
    parser.add_argument(
        "--no-naive", action="store_true", help="skip bench/naive_app.py (it is slow)"
    )
    parser.add_argument(
        "--app-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for both apps, e.g. MALLOC_ARENA_MAX=2 (repeatable)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record the app with py-spy during its runs (bench/results/load-app-profile-*.txt)",
    )
    parser.add_argument(
        "--full-uploads",
        action="store_true",
        help="upload the 12 MP photo whole, as a client without public/shrink-photos.js would",
    )
    parser.add_argument(
        "--photo-quality",
        type=int,
        default=92,
        help="JPEG quality of the 4000×3000 photo (92: 4.7 MB; 99: 9.4 MB)",
    )
    parser.add_argument(
        "--heic",
        type=Path,
        metavar="FILE",
        help="upload this HEIC whole instead of the JPEG (browsers cannot shrink HEIC), "
        "e.g. bench/results/iphone_like_12mp_typical.heic made by bench/prepare_heic.py",
    )
    parser.add_argument(
        "--text-beside",
        type=int,
        default=0,
        metavar="N",
        help="also run the photo users again with N text-only users asking at the same time",
    )
    parser.add_argument(
        "--typing",
        type=float,
        default=0.0,
        help="seconds from a photo's upload to its question (default 0, the worst case)",
    )
    parser.add_argument(
        "--json", action="store_true", help="write results to bench/results/load-*.json"
    )
    args = parser.parse_args(argv)
    args.app_env = dict(item.split("=", 1) for item in args.app_env)
    return args


async def main() -> None:
    args = parse_args()
    expected = reply_text(args.answer_tokens)
    if args.heic:
        original = Photo("IMG_0001.HEIC", "image/heic", args.heic.read_bytes())
    else:
        jpeg = imagecorpus.encode(
            imagecorpus.photo(4000, 3000),
            "JPEG",
            quality=args.photo_quality,
            exif=imagecorpus.exif(),
        )
        original = Photo("IMG_0001.jpg", "image/jpeg", jpeg)
    whole = args.full_uploads or args.heic  # the page script leaves HEIC alone
    photo = original if whole else as_the_browser_uploads(original)
    uploaded = "as it is" if whole else f"shrunk by the browser to {len(photo.data) / 1e6:.2f} MB"
    print(f"machine: {machine()}")
    print(
        f"fake model: TTFT {args.ttft} s, {args.tokens_per_s:g} tokens/s per stream, {args.answer_tokens}-token "
        f"answers; photo {original.name} {len(original.data) / 1e6:.2f} MB, uploaded {uploaded}; "
        f"users start over {args.ramp:g} s; {args.repeat} repetition(s)\n",
        flush=True,
    )
    fake = FakeServer(ttft=args.ttft, token_delay=1 / args.tokens_per_s, reply=expected).start()
    repeats, raw = [], []
    try:
        for index in range(args.repeat):
            runs = await measure_once(args, fake, photo, expected, index)
            repeats.append({key: run.summary() for key, run in runs.items()})
            raw.append({key: [asdict(u) for u in run.users] for key, run in runs.items()})
            print(f"repetition {index + 1}/{args.repeat}:")
            print_tables(repeats[-1])
    finally:
        fake.stop()
    result = medians(repeats)
    print(f"medians of {args.repeat} repetition(s) (users and errors: all repetitions added up):")
    print_tables(result)
    print_goals(
        result,
        args.stream_users,
        upload_mb=len(photo.data) / 1e6 if whole else None,
        users=args.users,
    )
    print(f"wrote {charts.write_load_chart(result, chart_path(args)).relative_to(ROOT)}")
    if args.json:
        write_json(args, result, repeats, raw)


def chart_path(args) -> Path:
    """docs/charts/load.png is the default scenario's (the one docs/benchmarks.md
    charts); any other run's chart goes beside its results, so it cannot replace it."""
    if vars(args) == vars(parse_args([])) | {"json": args.json, "repeat": args.repeat}:
        return charts.CHARTS / "load.png"
    RESULTS.mkdir(parents=True, exist_ok=True)
    return RESULTS / f"load-{time.strftime('%Y%m%d-%H%M%S')}.png"


def write_json(args, result: dict, repeats: list, raw: list) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"load-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(
        json.dumps(
            {
                "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "machine": machine(),
                "medians": result,
                "repetitions": repeats,
                "users": raw,
            },
            indent=1,
        )
    )
    print(f"\nwrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
