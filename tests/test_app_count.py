"""`/count` through the app's callbacks against the fake vLLM: structured output,
the table and its CSV, the fallbacks, the stop button and what the chat remembers."""

from __future__ import annotations

import asyncio
import csv
import io

import chainlit as cl
import pytest

import chainlit_app
from handlers.chat.counting import RESPONSE_FORMAT
from tests.app_helpers import photo, settle
from tests.chainlit_harness import ChatHarness
from tests.waiting import eventually


def csv_rows(element: dict, chat: ChatHarness) -> list[list[str]]:
    """The CSV element's content, as the session stored it for download."""
    stored = chat.session.files[element["chainlitKey"]]["path"]
    return list(csv.reader(io.StringIO(stored.read_bytes().decode("utf-8-sig"))))


async def test_a_count_of_two_images_is_a_table_with_totals_and_a_csv(chat, app, tmp_path):
    files = [photo(tmp_path, "red.jpg", colour="red"), photo(tmp_path, "blue.jpg", colour="blue")]
    await chat.send("", files, command="count")
    request = app.requests[-1]
    assert request["response_format"] == RESPONSE_FORMAT and "guided_json" not in request
    table = chat.last_text()
    assert table.splitlines()[:5] == [
        "| Object | red.jpg | blue.jpg | Total |",
        "| --- | ---: | ---: | ---: |",
        "| red | 1 | 0 | 1 |",
        "| blue | 0 | 2 | 2 |",
        "| **Total** | **1** | **2** | **3** |",
    ]
    assert "- the fake vLLM counts images, not what is in them" in table
    (element,) = chat.elements()
    assert element["name"] == "counts.csv" and element["mime"] == "text/csv"
    assert element["forId"] == chat.visible_messages()[-1]["id"]
    assert csv_rows(element, chat)[-1] == ["Total", "1", "2", "3"]


async def test_a_count_in_chinese(app, tmp_path):
    chat = ChatHarness("zh-CN")
    await chat.start()
    await chat.send("", [photo(tmp_path, "a.jpg"), photo(tmp_path, "b.jpg")], command="count")
    assert chat.last_text().startswith("| 物体 | a.jpg | b.jpg | 合计 |")
    assert "| **合计** | **1** | **2** | **3** |" in chat.last_text()


async def test_the_answer_shows_counting_while_the_json_arrives(chat, app, tmp_path):
    app.token_delay = 0.05
    await chat.send("", [photo(tmp_path, "a.jpg")], command="count")
    answer_id = chat.visible_messages()[-1]["id"]
    statuses = [
        data["token"]
        for event, data in chat.events
        if event == "stream_token" and data["id"] == answer_id and data["isSequence"]
    ]
    started = next(data["output"] for event, data in chat.events if event == "stream_start")
    assert "Counting…" in started
    assert any("so far" in status for status in statuses)
    assert statuses[-1].startswith("| Object |")


async def test_a_count_cut_at_the_length_limit_is_shown_as_written_with_a_note(
    start_app, fake_vllm, tmp_path
):
    await start_app(MAX_TOKENS="6")
    chat = ChatHarness()
    await chat.start()
    await chat.send("", [photo(tmp_path, "a.jpg")], command="count")
    texts = chat.texts()
    assert texts[-2].startswith('```json\n{"objects":') and "Total" not in texts[-2]
    assert "length limit (6 tokens)" in texts[-1] and texts[-1].startswith("⚠️")
    assert chat.elements() == []


@pytest.mark.parametrize(
    ("structured", "shown"),
    [
        ("ignore", "A red square on a white background."),  # a server without structured output
        ("invalid", '```json\n{"objects":'),  # JSON that stops half way, yet "stop"
    ],
)
async def test_a_count_that_is_not_json_of_the_schema_falls_back(
    chat, app, tmp_path, structured, shown
):
    app.structured = structured
    await chat.send("", [photo(tmp_path, "a.jpg")], command="count")
    texts = chat.texts()
    assert texts[-2].startswith(shown)
    assert "shown as written" in texts[-1]


async def test_a_follow_up_sees_the_table_as_the_answer(chat, app, tmp_path):
    await chat.send("", [photo(tmp_path, "a.jpg")], command="count")
    table = chat.last_text()
    await chat.send("Which is the most common?")
    follow_up = app.requests[-1]
    assert "response_format" not in follow_up
    assert follow_up["messages"][1] == {"role": "assistant", "content": table}


async def test_stop_during_a_count_keeps_what_was_said(chat, app, tmp_path):
    app.token_delay = 0.2
    task = asyncio.create_task(chat.send("", [photo(tmp_path, "a.jpg")], command="count"))
    await eventually(
        lambda: any("so far" in t for t in chat.texts()), "the count's first rows are shown"
    )
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    kept = chat.last_text()
    assert kept.startswith('```json\n{"objects":') and "Counting" not in kept
    app.token_delay = 0.0
    await chat.send("Go on")
    assert app.requests[-1]["messages"][1]["content"] == kept


async def test_a_resumed_chat_replays_the_count_as_it_was_sent(app, start_app, tmp_path):
    alice = await chainlit_app.services().data_layer.create_user(cl.User(identifier="alice"))
    chat = ChatHarness(user=alice)
    await chat.start()
    await chat.send("", [photo(tmp_path, "a.jpg"), photo(tmp_path, "b.jpg")], command="count")
    await chat.send("Which is the most common?")
    before = app.requests[-1]["messages"]
    await settle()

    await start_app()  # the app restarts
    thread = await chainlit_app.services().data_layer.get_thread(chat.session.thread_id)
    resumed = ChatHarness(user=alice, thread_id=chat.session.thread_id)
    await resumed.resume(thread)
    await resumed.send("And the least?")
    after = app.requests[-1]["messages"]
    assert after[: len(before)] == before  # the table, byte for byte: vLLM's prefix cache holds
    assert after[1]["content"].startswith("| Object | a.jpg | b.jpg |")


async def test_a_count_cut_by_a_dropped_connection_keeps_what_was_said_with_the_failure(
    chat, app, tmp_path
):
    app.drop_after(4)
    await chat.send("", [photo(tmp_path, "a.jpg")], command="count")
    (answer,) = chat.texts()
    assert answer.startswith('```json\n{"objects":') and "Counting" not in answer
    assert "stopped early" in answer  # error.partial_answer, under what was said


async def test_a_refused_count_leaves_only_the_error(chat, app, tmp_path):
    app.fail_next(400, message="Bad things.")
    await chat.send("", [photo(tmp_path, "a.jpg")], command="count")
    (error,) = chat.texts()
    assert "Bad things." in error and "Counting" not in error
