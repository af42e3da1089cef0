"""The doctor against the fake vLLM server: all checks pass on a server that
matches the settings, and each mismatch fails with its own fix and exit code 1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from handlers.core.settings import DEFAULT_MODEL, Settings, load_settings
from handlers.ops import doctor
from tests.fake_vllm import FakeVLLM

KEY = "doctor-test-key-5f2e"
CHECK_NAMES = ["health", "api key", "model", "context", "images", "image limit", "answer"]
ROOT = Path(__file__).resolve().parent.parent


def settings_for(*urls: str, **environ: str) -> Settings:
    return load_settings({"VLLM_BASE_URL": ",".join(urls), **environ}, env_file=None)


async def check(settings: Settings) -> dict[str, doctor.CheckResult]:
    """The results for the one configured server, by check name."""
    [report] = await doctor.run(settings, timeout=5.0)
    return {result.name: result for result in report.results}


def closed_port_url() -> str:
    """A loopback URL where nothing listens (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def fake():
    with FakeVLLM(api_key=KEY, reply="Red.") as server:
        yield server


async def test_every_check_passes_against_a_matching_server(fake):
    results = await check(settings_for(fake.base_url, VLLM_API_KEY=KEY, VLLM_MODEL=DEFAULT_MODEL))
    assert list(results) == CHECK_NAMES
    assert {name: result.status for name, result in results.items()} == dict.fromkeys(
        CHECK_NAMES, "OK"
    )
    assert "Red." in results["answer"].detail
    assert "At most 4 image(s)" in results["image limit"].detail


async def test_it_sends_tiny_requests_the_size_of_the_image_limit(fake):
    await check(settings_for(fake.base_url, VLLM_API_KEY=KEY, MAX_IMAGES_PER_REQUEST="3"))
    sent = [(_images(body), body["max_tokens"], bool(body.get("stream"))) for body in fake.requests]
    assert sent == [(3, 1, False), (4, 1, False), (1, doctor.ANSWER_TOKENS, True)]
    assert {body["model"] for body in fake.requests} == {DEFAULT_MODEL}


async def test_an_empty_vllm_model_uses_the_first_served_like_the_app(fake):
    fake.model = "team/pixtral-finetune"
    results = await check(settings_for(fake.base_url, VLLM_API_KEY=KEY))
    assert results["model"].passed and "team/pixtral-finetune" in results["model"].detail
    assert results["answer"].passed


async def test_a_wrong_key_fails_with_the_fix_and_skips_the_rest(fake):
    results = await check(settings_for(fake.base_url, VLLM_API_KEY="not-the-key"))
    assert results["health"].passed
    assert results["api key"].status == "FAIL" and "401" in results["api key"].detail
    assert (
        "VLLM_API_KEY" in results["api key"].fix
        and "/etc/visual-assistant/vllm.env" in results["api key"].fix
    )
    assert [results[name].status for name in CHECK_NAMES[2:]] == ["SKIP"] * 5
    assert fake.requests == []  # nothing was generated with a bad key


async def test_a_missing_key_says_it_is_not_set(fake):
    results = await check(settings_for(fake.base_url))
    assert (
        results["api key"].status == "FAIL" and "VLLM_API_KEY is not set" in results["api key"].fix
    )


async def test_a_model_the_server_does_not_serve_fails_naming_both(fake):
    results = await check(
        settings_for(fake.base_url, VLLM_API_KEY=KEY, VLLM_MODEL="mistralai/Other-7B")
    )
    model = results["model"]
    assert model.status == "FAIL"
    assert "mistralai/Other-7B" in model.detail and DEFAULT_MODEL in model.detail
    assert "VLLM_MODEL" in model.fix
    assert results["answer"].status == "SKIP"


async def test_a_different_context_length_fails_and_the_other_checks_still_run(fake):
    fake.max_model_len = 32768
    results = await check(settings_for(fake.base_url, VLLM_API_KEY=KEY))
    context = results["context"]
    assert context.status == "FAIL" and "32768" in context.detail and "65536" in context.detail
    assert "MAX_MODEL_LEN=32768" in context.fix and "--max-model-len 65536" in context.fix
    assert all(results[name].passed for name in ("images", "image limit", "answer"))


async def test_a_lower_server_image_limit_fails_both_image_checks(fake):
    fake.max_images = 2
    results = await check(settings_for(fake.base_url, VLLM_API_KEY=KEY))
    assert results["images"].status == "FAIL" and "At most 2 image(s)" in results["images"].detail
    limit = results["image limit"]
    assert limit.status == "FAIL" and "allows 2" in limit.detail
    assert (
        """--limit-mm-per-prompt '{"image": 4}'""" in limit.fix
        and "MAX_IMAGES_PER_REQUEST=2" in limit.fix
    )


async def test_a_higher_server_image_limit_fails_the_limit_check(fake):
    fake.max_images = 8
    results = await check(settings_for(fake.base_url, VLLM_API_KEY=KEY))
    assert results["images"].passed
    limit = results["image limit"]
    assert limit.status == "FAIL" and "5 images accepted" in limit.detail
    assert """--limit-mm-per-prompt '{"image": 4}'""" in limit.fix


async def test_a_server_that_is_down_is_named(fake):
    url = closed_port_url()
    results = await check(settings_for(url, VLLM_API_KEY=KEY))
    health = results["health"]
    assert health.status == "FAIL" and url.removesuffix("/v1") + "/health" in health.detail
    assert "systemctl status vllm" in health.fix and url in health.fix
    assert [results[name].status for name in CHECK_NAMES[1:]] == ["SKIP"] * 6


async def test_every_failover_url_is_checked(fake):
    down = closed_port_url()
    reports = await doctor.run(settings_for(fake.base_url, down, VLLM_API_KEY=KEY), timeout=5.0)
    assert [report.base_url for report in reports] == [fake.base_url, down]
    assert [report.passed for report in reports] == [True, False]


async def test_a_base_url_without_v1_is_caught(fake):
    results = await check(
        settings_for(fake.base_url.removesuffix("/v1") + "/api", VLLM_API_KEY=KEY)
    )
    assert results["health"].status == "FAIL" and "404" in results["health"].detail
    assert "ending in /v1" in results["health"].fix


async def test_an_error_event_in_the_answer_stream_fails_the_answer(fake):
    fake.error_event_after(0, "The engine failed while generating (fake).")
    results = await check(settings_for(fake.base_url, VLLM_API_KEY=KEY))
    assert results["answer"].status == "FAIL" and "engine failed" in results["answer"].detail


async def test_a_server_that_never_answers_times_out_instead_of_hanging(fake):
    fake.ttft = 30.0
    [report] = await doctor.run(settings_for(fake.base_url, VLLM_API_KEY=KEY), timeout=0.5)
    results = {result.name: result for result in report.results}
    assert results["images"].status == "FAIL" and "in time" in results["images"].detail


def test_the_report_shows_one_verdict_line_per_check_and_the_fix_under_it():
    report = doctor.ServerReport(
        "http://gpu:8000/v1",
        (
            doctor.CheckResult("OK", "http://gpu:8000/health answered 200", name="health"),
            doctor.CheckResult("FAIL", "answered 401", "set the key", name="api key"),
            doctor.CheckResult("SKIP", "needs api key to pass", name="model"),
        ),
    )
    assert doctor.render([report]).splitlines() == [
        "vLLM at http://gpu:8000/v1",
        "  OK    health       http://gpu:8000/health answered 200",
        "  FAIL  api key      answered 401",
        "                     fix: set the key",
        "  SKIP  model        needs api key to pass",
        "",
        "1 of 3 checks failed, 1 skipped.",
    ]


def test_main_exits_0_only_when_everything_passes(fake, monkeypatch, capsys):
    monkeypatch.setenv("VLLM_BASE_URL", fake.base_url)
    monkeypatch.setenv("VLLM_API_KEY", KEY)
    assert doctor.main(["--env-file", "/nonexistent"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("All 7 checks passed.")
    monkeypatch.setenv("MAX_MODEL_LEN", "4096")
    assert doctor.main(["--env-file", "/nonexistent"]) == 1
    assert "1 of 7 checks failed" in capsys.readouterr().out


def test_main_reports_a_malformed_setting_by_name(monkeypatch, capsys):
    monkeypatch.setenv("MAX_IMAGES_PER_REQUEST", "four")
    assert doctor.main(["--env-file", "/nonexistent"]) == 1
    assert "MAX_IMAGES_PER_REQUEST" in capsys.readouterr().err


@pytest.mark.parametrize("key, code", [(KEY, 0), ("wrong-key-0000", 1)])
def test_the_command_reads_the_env_file_and_never_prints_the_key(fake, tmp_path, key, code):
    env_file = tmp_path / "app.env"
    env_file.write_text(
        f"VLLM_BASE_URL={fake.base_url}\nVLLM_API_KEY={key}\nVLLM_MODEL={DEFAULT_MODEL}\n"
    )
    environ = {
        name: value for name, value in os.environ.items() if not name.startswith(("VLLM_", "MAX_"))
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "handlers.doctor",
            "--env-file",
            str(env_file),
            "--timeout",
            "10",
        ],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == code, done.stdout + done.stderr
    assert key not in done.stdout + done.stderr
    assert f"vLLM at {fake.base_url}" in done.stdout


def _images(body: dict) -> int:
    return sum(
        part.get("type") == "image_url"
        for message in body["messages"]
        if isinstance(message["content"], list)
        for part in message["content"]
    )
