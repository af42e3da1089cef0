"""The JSONL export of rated answers, from history written by Chainlit's own data layer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from uuid import uuid4

import pytest
from chainlit.message import Message
from chainlit.step import Step
from chainlit.types import Feedback
from chainlit.utils import utc_now

from handlers.ops import export
from handlers.storage.database import make_engine
from tests.db_fixtures import chainlit_context, converse, person, png_bytes, settled


async def follow_up(
    layer, user, thread_id: str, question: str, answer: str, rating: int
) -> dict[str, str]:
    """A second exchange in an existing thread, without a new image."""
    with chainlit_context(thread_id, user):
        asked = Message.from_dict(
            {
                "id": str(uuid4()),
                "type": "user_message",
                "output": question,
                "name": user.identifier,
                "createdAt": utc_now(),
            }
        )
        await settled(asked._create())
        reply = Message(content=answer, author="Pixtral")
        await settled(reply.send())
    await layer.upsert_feedback(Feedback(forId=reply.id, threadId=thread_id, value=rating))
    return {"question": asked.id, "answer": reply.id}


async def rated_in_the_browser(layer, user, question: str, answer: str, rating: int) -> None:
    """What the Chainlit 2.12 UI really rates: the `on_message` run step, the parent of
    the app's answer (and of its notices)."""
    thread_id = str(uuid4())
    with chainlit_context(thread_id, user):
        asked = Message(content=question, author=user.identifier, type="user_message")
        await settled(asked.send())
        await layer.update_thread(thread_id, name=question, user_id=user.id)
        async with Step(name="on_message", type="run", parent_id=asked.id) as run:
            notice = Message(content="ℹ️ a notice", metadata={"kind": "notice"})
            await settled(notice.send())
            reply = Message(content=answer, metadata={"kind": "answer"})
            await settled(reply.send())
        await settled(asyncio.sleep(0))
    await layer.upsert_feedback(Feedback(forId=run.id, threadId=thread_id, value=rating))


@pytest.fixture
async def history(layer):
    """Alice: a rated photo question, an unrated follow-up, a thumbs-down follow-up.
    Bob: one rated question without an image."""
    alice, bob = await person(layer, "alice"), await person(layer, "bob")
    first = await converse(
        layer,
        alice,
        "What breed is this cat?",
        "A tabby.",
        image=png_bytes(),
        rating=1,
        comment="correct",
    )
    await follow_up(layer, alice, first["thread"], "How old is it?", "Hard to say.", rating=0)
    second = await follow_up(
        layer, alice, first["thread"], "What colour are its eyes?", "Green.", rating=0
    )
    bobs = await converse(layer, bob, "Is this a bird?", "Yes.", rating=1)
    return {"first": first, "second": second, "bob": bobs}


async def test_one_record_per_rated_answer_with_its_question_and_images(db_url, history) -> None:
    engine = make_engine(db_url)
    try:
        records = await export.rated_answers(engine)
    finally:
        await engine.dispose()
    first, second, bobs = history["first"], history["second"], history["bob"]

    assert [(r["user"], r["question"], r["answer"], r["rating"]) for r in records] == [
        ("alice", "What breed is this cat?", "A tabby.", 1),
        ("alice", "How old is it?", "Hard to say.", 0),
        ("alice", "What colour are its eyes?", "Green.", 0),
        ("bob", "Is this a bird?", "Yes.", 1),
    ]
    opening = records[0]
    assert opening["thread_id"] == first["thread"] and opening["comment"] == "correct"
    assert opening["question_id"] == first["question"] and opening["answer_id"] == first["answer"]
    assert opening["time"].endswith("Z")
    [image] = opening["images"]
    assert (
        image["id"] == first["image"]
        and image["name"] == "cat photo.png"
        and image["mime"] == "image/png"
    )
    assert (
        image["url"] == f"/files/{image['object_key']}" and image["message_id"] == first["question"]
    )

    assert records[2]["question_id"] == second["question"] and records[2]["comment"] is None
    assert records[2]["images"] == [image]  # the photo the follow-up is about
    assert records[3]["thread_id"] == bobs["thread"] and records[3]["images"] == []


async def test_a_rating_on_the_run_step_counts_for_its_answer_only(layer, db_url) -> None:
    carol = await person(layer, "carol")
    await rated_in_the_browser(layer, carol, "How many chairs?", "Four chairs.", rating=1)
    engine = make_engine(db_url)
    try:
        records = await export.rated_answers(engine)
    finally:
        await engine.dispose()
    assert [(r["question"], r["answer"], r["rating"]) for r in records] == [
        ("How many chairs?", "Four chairs.", 1)
    ]


async def test_the_cli_writes_jsonl(
    layer, history, settings, monkeypatch, tmp_path: Path, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("APP_DATABASE_URL", settings.database_url)
    out = tmp_path / "rated.jsonl"
    assert await asyncio.to_thread(export.main, ["--out", str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["answer"] for line in lines] == [
        "A tabby.",
        "Hard to say.",
        "Green.",
        "Yes.",
    ]
    assert capsys.readouterr().err == "exported 4 rated answers\n"


async def test_the_cli_writes_to_stdout_and_keeps_non_ascii(
    layer, settings, monkeypatch, tmp_path, capsys
) -> None:
    alice = await person(layer, "alice")
    await converse(layer, alice, "这是什么?", "一只猫。", rating=1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("APP_DATABASE_URL", settings.database_url)
    assert await asyncio.to_thread(export.main, []) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert "这是什么?" in line and json.loads(line)["answer"] == "一只猫。"


async def test_an_empty_history_exports_nothing(db_url, monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("APP_DATABASE_URL", db_url)
    assert await asyncio.to_thread(export.main, []) == 0
    assert capsys.readouterr() == ("", "exported 0 rated answers\n")
