"""Password guessing as a flood: what it costs the app, and whether others notice.

Starts the app (`chainlit run`, as scripts/start.sh does) against the fake vLLM
server, with one password user, then for `--seconds` each:

1. quiet: a probe asks `GET /user` (a signed-in request with a database read)
   every 100 ms;
2. `--loops` clients post wrong passwords to `/login` as fast as they are
   answered, from one address (as everyone behind nginx looks to the app when
   nginx sends no X-Real-IP... here: no header, the peer 127.0.0.1);
3. the same, each attempt claiming another address and user name (a local
   process forging X-Real-IP: the per-address and per-name limits do not apply,
   so only the sign-in thread's bound does).

Prints, per phase, the probe's latency (p50, p95, max), the attempts answered
401 (hashed) and 429 (refused unhashed), the app's CPU use (cores) and how long
a real person's sign-in from another address took in the middle of it.
Bounded: 3 x `--seconds` of traffic to 127.0.0.1 only, then everything stops.

    .venv/bin/python -m bench.login_flood --loops 20 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from bench.load_servers import ROOT, AppProcess, CpuMeter, FakeServer
from tests.hermetic import app_environment

PERSON, PASSWORD = "alice", "the right password"


async def probe(client: httpx.AsyncClient, token: str, until: float) -> list[float]:
    latencies = []
    while time.monotonic() < until:
        started = time.monotonic()
        response = await client.get("/user", headers={"Authorization": f"Bearer {token}"})
        latencies.append(time.monotonic() - started)
        assert response.status_code == 200, response.status_code
        await asyncio.sleep(0.1)
    return latencies


async def guess(
    client: httpx.AsyncClient, until: float, forged: bool, counts: dict[int, int]
) -> None:
    while time.monotonic() < until:
        name = f"user{secrets.randbelow(10**9)}" if forged else PERSON
        headers = (
            {"X-Real-IP": f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.1"}
            if forged
            else {}
        )
        response = await client.post(
            "/login", data={"username": name, "password": "wrong guess"}, headers=headers
        )
        counts[response.status_code] = counts.get(response.status_code, 0) + 1


async def real_sign_in(client: httpx.AsyncClient, delay: float) -> float:
    await asyncio.sleep(delay)
    started = time.monotonic()
    response = await client.post(
        "/login",
        data={"username": PERSON, "password": PASSWORD},
        headers={"X-Real-IP": "192.0.2.7"},
    )
    return time.monotonic() - started if response.status_code == 200 else float("nan")


async def phase(
    app: AppProcess, token: str, seconds: float, loops: int, forged: bool | None
) -> str:
    limits = httpx.Limits(max_connections=loops + 4)
    async with httpx.AsyncClient(base_url=app.url, timeout=60, limits=limits) as client:
        until = time.monotonic() + seconds
        counts: dict[int, int] = {}
        guessers = [
            guess(client, until, forged, counts) for _ in range(loops if forged is not None else 0)
        ]
        with CpuMeter(app.process.pid) as cpu:
            latencies, signed_in, *_ = await asyncio.gather(
                probe(client, token, until), real_sign_in(client, seconds / 2), *guessers
            )
    p = statistics.quantiles(latencies, n=20)
    return (
        f"probe p50 {statistics.median(latencies) * 1000:.0f} ms, p95 {p[18] * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms; attempts 401: {counts.get(401, 0)}, 429: {counts.get(429, 0)}; "
        f"app CPU {cpu.app / seconds:.2f} cores; a real sign-in took {signed_in * 1000:.0f} ms"
    )


def environment(data_dir: Path, fake_url: str, per_minute: str) -> dict[str, str]:
    return app_environment(
        VLLM_BASE_URL=fake_url,
        DATA_DIR=str(data_dir),
        CHAINLIT_AUTH_SECRET=secrets.token_urlsafe(32),
        LOGIN_ATTEMPTS_PER_MINUTE=per_minute,
    )


async def main(args: argparse.Namespace) -> None:
    fake = FakeServer(ttft=0.05, token_delay=0.01, reply="ok").start()
    with tempfile.TemporaryDirectory() as scratch:
        env = environment(Path(scratch) / "data", fake.base_url, args.per_minute)
        subprocess.run(
            [
                str(ROOT / ".venv/bin/python"),
                "-m",
                "handlers.users",
                "add",
                PERSON,
                "--password-stdin",
            ],
            cwd=ROOT,
            env=env,
            input=PASSWORD,
            text=True,
            check=True,
            capture_output=True,
        )
        app = AppProcess("chainlit_app.py", args.port, env, Path(scratch) / "app.log").start()
        try:
            async with httpx.AsyncClient(base_url=app.url) as client:
                response = await client.post(
                    "/login", data={"username": PERSON, "password": PASSWORD}
                )
                token = response.cookies["access_token"]
            for label, forged in (
                ("quiet", None),
                ("one address", False),
                ("forged addresses", True),
            ):
                print(
                    f"{label:>16}: {await phase(app, token, args.seconds, args.loops, forged)}",
                    flush=True,
                )
                await asyncio.sleep(61 if forged is False else 0)  # let the minute's window pass
        finally:
            app.stop()
            fake.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loops", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--per-minute", default="10", help="LOGIN_ATTEMPTS_PER_MINUTE for the app")
    asyncio.run(main(parser.parse_args()))
