"""Someone acts on a chat while the app cannot ask the history whose it is.

Each check in front of Chainlit (handlers/web/ownership.py) asks the database who
owns a row before Chainlit acts. Here that question fails as it does when the
database cannot be reached -- the checks' engine is swapped for one whose file
cannot be opened -- while Chainlit's own reads and writes, on a session of their
own, still work, so whatever a check let through, Chainlit would do. Every check
must refuse: an error is not "no such row" (which the element and rating checks
let through). Through the app served on a loopback port, as tests/security/ do.
"""

from __future__ import annotations

import contextlib

import aiohttp
from sqlalchemy.ext.asyncio import create_async_engine

from tests.security.test_routes import alices_photo, jpeg

UNREADABLE = "cannot be read right now"


@contextlib.asynccontextmanager
async def history_unreadable(live_app, tmp_path):
    """While inside, every ownership query fails (sqlite: unable to open database file)."""
    broken = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'no-such-folder' / 'chat.db'}")
    real, live_app.layer.engine = live_app.layer.engine, broken
    try:
        yield
    finally:
        live_app.layer.engine = real
        await broken.dispose()


async def alices_answered_photo(live_app, alice) -> dict:
    """Alice's chat with one photo, answered: its thread, answer and element."""
    element = await alices_photo(live_app, alice)
    [answer] = await live_app.rows(
        """SELECT "id" FROM steps WHERE "threadId" = :thread AND "type" = 'assistant_message'""",
        thread=element["threadId"],
    )
    return {"thread": element["threadId"], "answer": answer["id"], "element": element}


async def refused(response: aiohttp.ClientResponse) -> None:
    assert response.status == 503, await response.text()
    assert UNREADABLE in (await response.json())["detail"]
    assert response.headers["Retry-After"]


async def test_planting_or_removing_an_element_while_the_history_cannot_be_read_is_refused(
    live_app, tabs, tmp_path
) -> None:
    alice, mallory = await tabs("alice"), await tabs("mallory")
    chat = await alices_answered_photo(live_app, alice)
    planted = {
        "id": "5e0c4a53-5c8e-4a43-9a52-7a0d6d3b2f10",
        "type": "custom",
        "name": "note",
        "display": "inline",
        "threadId": chat["thread"],
        "forId": chat["answer"],
        "props": {},
    }
    theirs = {**planted, "id": chat["element"]["id"]}
    url = f"{live_app.base_url}/project/element"
    async with history_unreadable(live_app, tmp_path):
        async with mallory.http.put(
            url, json={"element": planted, "sessionId": mallory.session_id}
        ) as response:
            await refused(response)
        async with mallory.http.delete(
            url, json={"element": theirs, "sessionId": mallory.session_id}
        ) as response:
            await refused(response)
    assert not await live_app.sql('SELECT "id" FROM elements WHERE "id" = :id', id=planted["id"])
    assert await live_app.sql('SELECT "id" FROM elements WHERE "id" = :id', id=theirs["id"])


async def test_rating_or_unrating_while_the_history_cannot_be_read_is_refused(
    live_app, tabs, tmp_path
) -> None:
    alice, mallory = await tabs("alice"), await tabs("mallory")
    chat = await alices_answered_photo(live_app, alice)
    url = f"{live_app.base_url}/feedback"
    thumbs_up = {"forId": chat["answer"], "value": 1, "threadId": chat["thread"]}
    async with alice.http.put(
        url, json={"feedback": thumbs_up, "sessionId": alice.session_id}
    ) as rated:
        assert rated.status == 200
        feedback_id = (await rated.json())["feedbackId"]
    overwrite = {**thumbs_up, "id": feedback_id, "value": 0}
    async with history_unreadable(live_app, tmp_path):
        async with mallory.http.put(
            url, json={"feedback": overwrite, "sessionId": mallory.session_id}
        ) as response:
            await refused(response)
        async with mallory.http.delete(url, json={"feedbackId": feedback_id}) as response:
            await refused(response)
    rows = await live_app.sql(
        'SELECT "value" FROM feedbacks WHERE "forId" = :id', id=chat["answer"]
    )
    assert [row["value"] for row in rows] == [1]


async def test_a_stored_file_asked_for_while_the_history_cannot_be_read_is_refused(
    live_app, tabs, tmp_path
) -> None:
    alice = await tabs("alice")
    chat = await alices_answered_photo(live_app, alice)
    url = f"{live_app.base_url}/files/{chat['element']['objectKey']}"
    async with history_unreadable(live_app, tmp_path):
        async with alice.http.get(url) as response:
            await refused(response)
        async with aiohttp.ClientSession() as anonymous, anonymous.get(url) as response:
            assert response.status == 404  # nobody signed in: not even asked
    async with alice.http.get(url) as response:
        assert response.status == 200 and await response.read() == jpeg()


async def test_a_message_sent_while_the_history_cannot_be_read_is_refused(
    live_app, tabs, tmp_path, fake_vllm
) -> None:
    alice = await tabs("alice")
    async with history_unreadable(live_app, tmp_path):
        sent = await alice.send("What is this?")
        _, refusal = await alice.wait_for(
            lambda e, d: e == "new_message" and isinstance(d, dict) and d.get("isError")
        )
    assert UNREADABLE in refusal["output"]
    again = await alice.send("And now?")
    await alice.answered(again)
    assert [r["messages"][-1]["content"][-1]["text"] for r in fake_vllm.requests] == ["And now?"]
    assert not await live_app.sql('SELECT "id" FROM steps WHERE "id" = :id', id=sent)
