"""Attacks on what the app leaves behind or lets slip: credentials in error
messages, a deleted chat's images on disk, files other local users can read.

Performed through the app's own interfaces: the chat (tests/chainlit_harness.py)
against the fake vLLM server on loopback, and Chainlit's HTTP routes.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from handlers.i18n import translate

PASSWORD = "s3cret-pass"


def with_credentials(base_url: str) -> str:
    parts = urlsplit(base_url)
    return parts._replace(netloc=f"vllm-user:{PASSWORD}@{parts.netloc}").geturl()


async def test_a_colleague_reading_an_error_learns_nothing_of_the_servers_url(start_app, fake_vllm):
    from tests.chainlit_harness import ChatHarness

    await start_app(VLLM_BASE_URL=with_credentials(fake_vllm.base_url))
    chat = ChatHarness()
    await chat.start()
    fake_vllm.go_down()
    await chat.send("hello")
    shown = chat.last_text()
    assert shown == translate("error.model_unreachable", "en-US")
    assert PASSWORD not in shown and "127.0.0.1" not in shown
