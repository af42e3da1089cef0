"""The doctor against the real vLLM: it passes on the unit's server, and names the
fix when the app's settings and the server disagree (the server's own words)."""

from __future__ import annotations

from handlers.core.settings import load_settings
from handlers.ops import doctor
from tests.real_vllm import RealVLLM


async def check(real_vllm: RealVLLM, **environ: str) -> dict[str, doctor.CheckResult]:
    settings = load_settings(
        {"VLLM_BASE_URL": real_vllm.base_url, "VLLM_API_KEY": real_vllm.api_key, **environ},
        env_file=None,
    )
    [report] = await doctor.run(settings, timeout=60.0)
    return {result.name: result for result in report.results}


async def test_every_check_passes_against_the_units_server(real_vllm):
    results = await check(real_vllm)
    assert {name: r.status for name, r in results.items()} == dict.fromkeys(results, "OK"), results
    assert "At most 4 image(s)" in results["image limit"].detail


async def test_a_context_length_unlike_the_servers_names_both_fixes(real_vllm):
    context = (await check(real_vllm, MAX_MODEL_LEN="32768"))["context"]
    assert context.status == "FAIL" and "65536" in context.detail and "32768" in context.detail
    assert "MAX_MODEL_LEN=65536" in context.fix and "--max-model-len 32768" in context.fix


async def test_an_image_limit_of_2_against_the_servers_4_fails_with_the_fix(real_vllm):
    limit = (await check(real_vllm, MAX_IMAGES_PER_REQUEST="2"))["image limit"]
    assert limit.status == "FAIL" and "3 images accepted" in limit.detail
    assert """--limit-mm-per-prompt '{"image": 2}'""" in limit.fix


async def test_an_image_limit_of_8_against_the_servers_4_fails_both_image_checks(real_vllm):
    results = await check(real_vllm, MAX_IMAGES_PER_REQUEST="8")
    assert results["images"].status == "FAIL" and "At most 4 image(s)" in results["images"].detail
    limit = results["image limit"]
    assert (
        limit.status == "FAIL"
        and "allows 4" in limit.detail
        and "MAX_IMAGES_PER_REQUEST=4" in limit.fix
    )


async def test_a_wrong_key_fails_with_the_fix_and_skips_the_rest(real_vllm):
    results = await check(real_vllm, VLLM_API_KEY="not-the-key")
    assert results["health"].passed
    key = results["api key"]
    assert key.status == "FAIL" and "401" in key.detail and "VLLM_API_KEY" in key.fix
    assert {results[name].status for name in list(results)[2:]} == {"SKIP"}
