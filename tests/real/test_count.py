"""`/count` against the real vLLM: its grammar makes even random weights write JSON
of the count schema, and the app renders it as a table with its CSV.

The random model's counts are meaningless (often no rows at all); what is
asserted is that the server's JSON was read as a count, not shown as text,
that the prompt was counted as vLLM counts it, and that a resumed chat sends
the table byte for byte (vLLM serves it from its prefix cache).
"""

from __future__ import annotations

import chainlit as cl

import chainlit_app
from handlers.core.i18n import translate
from tests.app_helpers import photo, settle
from tests.chainlit_harness import ChatHarness
from tests.real.test_chat import ask

# Random weights write long strings; with compact JSON (tests/real_vllm.py) their
# counts took 26-332 tokens in 12 tries. Free text would run to the limit: every
# question here is a count.
MAX_TOKENS = "1500"
# vLLM's CPU build caches the prefix in blocks of 128 tokens (vllm/platforms/cpu.py)
# and only full blocks: a prompt sent again byte for byte hits all but its last, partial one.
BLOCK = 128


def is_table(text: str, language: str) -> bool:
    total = translate("count.total", language)
    return f"| **{total}** |" in text or text.startswith(translate("count.nothing", language))


async def test_vllms_structured_output_is_rendered_as_a_table_with_a_csv(real_app, tmp_path):
    await real_app(MAX_TOKENS=MAX_TOKENS)
    chat = ChatHarness("zh-CN")
    await chat.start()
    files = [photo(tmp_path, "左.jpg", colour="red"), photo(tmp_path, "右.jpg", colour="blue")]
    usage = await ask(chat, "", files, command="count")
    assert usage.reported == usage.counted  # response_format leaves the prompt as it was
    answer = chat.last_text()
    assert is_table(answer, "zh-CN"), chat.texts()
    assert not any(translate("count.not_a_table", "zh-CN") in text for text in chat.texts())
    assert [element["name"] for element in chat.elements()] == ["counts.csv"]


async def test_a_resumed_chat_sends_the_count_table_byte_for_byte(real_app, tmp_path):
    await real_app(MAX_TOKENS=MAX_TOKENS)
    alice = await chainlit_app.services().data_layer.create_user(cl.User(identifier="alice"))
    chat = ChatHarness(user=alice)
    await chat.start()
    await ask(chat, "", [photo(tmp_path, "shelf.jpg", size=(1600, 1200))], command="count")
    assert is_table(chat.last_text(), "en-US"), chat.texts()
    before = await ask(chat, "Only the red ones.", command="count")  # its prompt holds the table
    await settle()
    thread_id = chat.session.thread_id

    await real_app(MAX_TOKENS=MAX_TOKENS)  # the app restarts; vLLM keeps running, its cache warm
    thread = await chainlit_app.services().data_layer.get_thread(thread_id)
    resumed = ChatHarness(user=alice, thread_id=thread_id)
    await resumed.resume(thread)
    after = await ask(resumed, "Only the blue ones.", command="count")
    assert after.reported == after.counted > before.counted
    assert after.cached >= before.counted // BLOCK * BLOCK  # the table too (it ends before.counted)
