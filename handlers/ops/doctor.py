"""Smoke check of a live installation: `python -m handlers.doctor`.

Owns: running the checks of `handlers.ops.doctor_checks` against each configured
vLLM server (each is one the app may fail over to), reporting the checks after
a failed gate as skipped, printing one verdict per check with the fix for each
failure, and the exit code (0 only when every check passed).

Does not own: what each check asks and how it judges the answer
(`handlers.ops.doctor_checks`); settings (`handlers.core.settings`). `CheckResult` and
`ANSWER_TOKENS` are re-exported: a report is made of `CheckResult`s, and the
tests read both from here.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import httpx
import openai

from handlers.core.settings import Settings, SettingsError, load_settings
from handlers.ops.doctor_checks import ANSWER_TOKENS as ANSWER_TOKENS
from handlers.ops.doctor_checks import APP_ENV, CHECKS, GATES, CheckResult, Probe

CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class ServerReport:
    base_url: str
    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)


async def check_server(settings: Settings, base_url: str, timeout: float) -> ServerReport:
    """Run every check against one server; after a failed gate the rest are skipped."""
    http_timeout = httpx.Timeout(timeout, connect=CONNECT_TIMEOUT)
    async with httpx.AsyncClient(timeout=http_timeout) as http:
        llm = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=settings.vllm_api_key or "EMPTY",
            timeout=timeout,
            max_retries=0,
        )
        try:
            probe = Probe(settings, base_url, http, llm)
            return ServerReport(base_url, tuple(await _run_checks(probe)))
        finally:
            await llm.close()


async def _run_checks(probe: Probe) -> list[CheckResult]:
    results: list[CheckResult] = []
    for index, (name, check) in enumerate(CHECKS):
        results.append(replace(await check(probe), name=name))
        if index < GATES and not results[-1].passed:
            skipped = CHECKS[index + 1 :]
            return results + [
                CheckResult("SKIP", f"needs {name} to pass", name=later) for later, _ in skipped
            ]
    return results


async def run(settings: Settings, timeout: float = 60.0) -> list[ServerReport]:
    """Check every configured base URL: each is one the app may fail over to."""
    return [await check_server(settings, url, timeout) for url in settings.vllm_base_urls]


def render(reports: Sequence[ServerReport]) -> str:
    """The report, with any password in a base URL shown as `***`."""
    lines: list[str] = []
    for report in reports:
        lines.append(f"vLLM at {report.base_url}")
        for result in report.results:
            lines.append(f"  {result.status:<5} {result.name:<12} {result.detail}")
            if result.fix:
                lines.append(f"  {'':<5} {'':<12} fix: {result.fix}")
    lines.append("")
    lines.append(_summary([result for report in reports for result in report.results]))
    return _without_passwords("\n".join(lines), [report.base_url for report in reports])


def _without_passwords(text: str, urls: Sequence[str]) -> str:
    for url in urls:
        password = urlsplit(url).password
        if password:
            text = text.replace(f":{password}@", ":***@")
    return text


def _summary(results: list[CheckResult]) -> str:
    failed = sum(result.status == "FAIL" for result in results)
    skipped = sum(result.status == "SKIP" for result in results)
    if not failed and not skipped:
        return f"All {len(results)} checks passed."
    return f"{failed} of {len(results)} checks failed, {skipped} skipped."


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m handlers.doctor", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--env-file",
        default=".env",
        help=f"settings file read after the environment (on a server: {APP_ENV})",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for each answer"
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings(env_file=args.env_file)
    except SettingsError as error:
        print(f"FAIL  settings: {error}", file=sys.stderr)
        return 1
    reports = asyncio.run(run(settings, args.timeout))
    print(render(reports))
    return 0 if all(report.passed for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
