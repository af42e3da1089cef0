"""Rebuilding a chat's conversation from its persisted thread (handlers/chat/history.py)."""

from __future__ import annotations

from pathlib import Path

from handlers.chat.history import PreparedStore, rebuild
from handlers.core.message_kinds import ANSWER_KIND, DOWNLOAD_KIND


def step(step_id: str, step_type: str, text: str, at: str, **metadata) -> dict:
    return {"id": step_id, "type": step_type, "output": text, "createdAt": at, "metadata": metadata}


async def rebuilt(tmp_path: Path, steps: list[dict]) -> list[tuple[str, str]]:
    thread = {"id": "thread-1", "steps": steps, "elements": []}
    store = PreparedStore(tmp_path / "prepared")
    conversation = await rebuild(thread, store, lambda key: tmp_path / key, max_bytes=1 << 20)
    return [(turn.role, turn.text) for turn in conversation.turns]


async def test_a_download_request_is_left_out_even_when_its_mark_was_not_written(tmp_path):
    """Chainlit writes the person's message and the app's mark on it in two tasks
    that can land in either order; the reply names its request as well."""
    steps = [
        step("q1", "user_message", "What is on it?", "2026-12-02T01:00:00Z"),
        step("a1", "assistant_message", "A cat.", "2026-12-02T01:00:01Z", kind=ANSWER_KIND),
        step("d1", "user_message", "", "2026-12-02T01:00:02Z"),  # the mark lost
        step(
            "r1",
            "assistant_message",
            "Your chat as a zip",
            "2026-12-02T01:00:03Z",
            kind=DOWNLOAD_KIND,
            reply_to="d1",
        ),
        step(
            "d2", "user_message", "", "2026-12-02T01:00:04Z", kind=DOWNLOAD_KIND
        ),  # its reply lost
        step("q2", "user_message", "And the colour?", "2026-12-02T01:00:05Z"),
    ]
    assert await rebuilt(tmp_path, steps) == [
        ("user", "What is on it?"),
        ("assistant", "A cat."),
        ("user", "And the colour?"),
    ]


async def test_a_message_with_neither_words_nor_files_is_not_replayed(tmp_path):
    """The live chat never sends such a message to the model, so a resumed one must not."""
    steps = [
        step("q1", "user_message", "  ", "2026-12-02T01:00:00Z"),
        step("q2", "user_message", "Hello", "2026-12-02T01:00:01Z"),
    ]
    assert await rebuilt(tmp_path, steps) == [("user", "Hello")]


async def test_a_resume_goes_on_when_its_prepared_copies_cannot_be_written(tmp_path, caplog):
    unwritable = tmp_path / "not-a-folder"
    unwritable.write_bytes(b"")
    thread = {"id": "thread-1", "elements": [], "steps": [step("q1", "user_message", "Hi", "t1")]}
    conversation = await rebuild(
        thread, PreparedStore(unwritable), lambda key: tmp_path / key, max_bytes=1 << 20
    )
    assert [(turn.role, turn.text) for turn in conversation.turns] == [("user", "Hi")]
    assert "could not keep the prepared images of turn q1" in caplog.text
