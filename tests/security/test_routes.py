"""A signed-in person calls Chainlit's HTTP routes on what is not theirs, or not on.

Through the app served on a loopback port (tests/security/conftest.py), with
the person's own cookie and their own connected session, as their browser
would; only the ids in the requests are someone else's.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="fetch(\'/user\')"><script>alert(1)</script></svg>'


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(out, "JPEG")
    return out.getvalue()


async def alices_photo(live_app, alice) -> dict:
    """Alice's chat with one photo; its element row (id, thread, stored file)."""
    asked = await alice.send("What is this?", [await alice.upload("cat.jpg", jpeg(), "image/jpeg")])
    await alice.answered(asked)
    [element] = await live_app.rows(
        'SELECT "id", "threadId", "objectKey" FROM elements WHERE "forId" = :id', id=asked
    )
    return element


def stored_file(live_app, element: dict) -> Path:
    return live_app.layer.storage_provider.path_for(element["objectKey"])


async def test_deleting_another_persons_file_is_not_found(live_app, tabs) -> None:
    alice, mallory = await tabs("alice"), await tabs("mallory")
    element = await alices_photo(live_app, alice)
    photo = stored_file(live_app, element).read_bytes()
    forged = {
        "id": element["id"],
        "type": "custom",
        "name": "x",
        "display": "inline",
        "threadId": element["threadId"],
    }
    async with mallory.http.delete(
        f"{live_app.base_url}/project/element",
        json={"element": forged, "sessionId": mallory.session_id},
    ) as response:
        assert response.status == 404
    async with mallory.http.put(
        f"{live_app.base_url}/project/element",
        json={"element": forged, "sessionId": mallory.session_id},
    ) as response:
        assert response.status == 404
    assert stored_file(live_app, element).read_bytes() == photo
    assert await live_app.sql('SELECT "id" FROM elements WHERE "id" = :id', id=element["id"])


async def test_putting_an_element_into_another_persons_chat_is_not_found(live_app, tabs) -> None:
    alice, mallory = await tabs("alice"), await tabs("mallory")
    element = await alices_photo(live_app, alice)
    planted = {
        "id": "5e0c4a53-5c8e-4a43-9a52-7a0d6d3b2f10",
        "type": "custom",
        "name": "note",
        "display": "inline",
        "threadId": element["threadId"],
        "forId": element["id"],
        "props": {},
    }
    async with mallory.http.put(
        f"{live_app.base_url}/project/element",
        json={"element": planted, "sessionId": mallory.session_id},
    ) as response:
        assert response.status == 404
    assert not await live_app.sql('SELECT "id" FROM elements WHERE "id" = :id', id=planted["id"])


async def test_the_owner_may_still_remove_their_own_element(live_app, tabs) -> None:
    alice = await tabs("alice")
    element = await alices_photo(live_app, alice)
    own = {
        "id": element["id"],
        "type": "custom",
        "name": "x",
        "display": "inline",
        "threadId": element["threadId"],
    }
    async with alice.http.delete(
        f"{live_app.base_url}/project/element", json={"element": own, "sessionId": alice.session_id}
    ) as response:
        assert response.status == 200


async def test_sharing_a_chat_while_sharing_is_off_is_not_found(live_app, tabs) -> None:
    alice = await tabs("alice")
    element = await alices_photo(live_app, alice)
    async with alice.http.put(
        f"{live_app.base_url}/project/thread/share",
        json={"threadId": element["threadId"], "isShared": True},
    ) as response:
        assert response.status == 404
    [thread] = await live_app.sql(
        'SELECT "metadata" FROM threads WHERE "id" = :id', id=element["threadId"]
    )
    assert "is_shared" not in str(thread["metadata"] or "")
    async with alice.http.get(f"{live_app.base_url}/project/share/{element['threadId']}") as shared:
        assert shared.status == 404


async def test_an_svg_uploaded_as_an_image_is_offered_only_as_a_download(live_app, tabs) -> None:
    alice = await tabs("alice")
    file_id = await alice.upload("cat.png", SVG, "image/svg+xml")  # passes Chainlit's accept list
    async with alice.http.get(
        f"{live_app.base_url}/project/file/{file_id}", params={"session_id": alice.session_id}
    ) as response:
        assert response.status == 200 and await response.read() == SVG
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["content-disposition"].startswith("attachment")
        assert response.headers["x-content-type-options"] == "nosniff"
    photo_id = await alice.upload(
        "cat.png", jpeg(), "image/png"
    )  # a real photo is shown, whatever it claimed
    async with alice.http.get(
        f"{live_app.base_url}/project/file/{photo_id}", params={"session_id": alice.session_id}
    ) as response:
        assert response.headers["content-type"] == "image/jpeg"
        assert response.headers["content-disposition"].startswith("inline")
