"""Local-disk storage for element files, and the owner-only route that serves them.

The route tests go through Chainlit's real ASGI app (its middleware, its catch-all
frontend route, its auth dependency) with httpx, on both databases.
"""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from chainlit.auth import create_jwt
from chainlit.element import File
from chainlit.server import app
from chainlit.user import User
from PIL import Image as PILImage
from starlette.routing import Match

from handlers.storage.files import URL_PREFIX, LocalStorageClient, UnsafeObjectKey, safe_key
from handlers.web import chainlit_routes, file_routes
from tests import imagecorpus
from tests.db_fixtures import chainlit_context, converse, person, png_bytes

# --- the storage client -----------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "safe"),
    [
        ("user/element/photo.png", "user/element/photo.png"),
        ("user/element/cat photo (1).JPG", "user/element/cat_photo__1_.JPG"),
        ("user/element/照片.png", "user/element/__.png"),
        ("user/element/../../../etc/passwd", "user/element/_/_/_/etc/passwd"),
        ("/abs//olute/.hidden", "abs/olute/hidden"),
        ("u/e/..\\..\\x", "u/e/_.._x"),
        ("u/e/" + "a" * 300, "u/e/" + "a" * 100),
    ],
)
def test_safe_key_keeps_keys_inside_the_root_and_url_safe(given: str, safe: str) -> None:
    assert safe_key(given) == safe


@pytest.mark.parametrize("key", ["", "/", "//"])
def test_safe_key_refuses_empty_keys(key: str) -> None:
    with pytest.raises(UnsafeObjectKey):
        safe_key(key)


@pytest.mark.parametrize(
    "key", ["../secret", "a/../../b", "a//b", "/a/b", "a/b/", "a/.env", "a/b c", "a\\b"]
)
def test_path_for_refuses_keys_not_in_safe_form(tmp_path: Path, key: str) -> None:
    with pytest.raises(UnsafeObjectKey):
        LocalStorageClient(tmp_path).path_for(key)


async def test_upload_stores_under_the_root_and_returns_a_route_url(tmp_path: Path) -> None:
    storage = LocalStorageClient(tmp_path / "files")
    stored = await storage.upload_file(
        "user-1/element-1/../../../../outside.png", png_bytes(), mime="image/png"
    )
    assert stored == {
        "object_key": "user-1/element-1/_/_/_/_/outside.png",
        "url": f"{URL_PREFIX}/user-1/element-1/_/_/_/_/outside.png",
    }
    assert (tmp_path / "files" / stored["object_key"]).read_bytes() == png_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["files"]
    assert await storage.get_read_url(stored["object_key"]) == stored["url"]


async def test_upload_writes_text_as_utf8_and_replaces_unless_told_not_to(tmp_path: Path) -> None:
    storage = LocalStorageClient(tmp_path)
    await storage.upload_file("u/e/note.txt", "first")
    await storage.upload_file("u/e/note.txt", "héllo")
    assert (tmp_path / "u/e/note.txt").read_bytes() == "héllo".encode()
    with pytest.raises(FileExistsError):
        await storage.upload_file("u/e/note.txt", "again", overwrite=False)
    assert [p.name for p in (tmp_path / "u/e").iterdir()] == [
        "note.txt"
    ]  # no temporary left behind


async def test_delete_removes_the_file_and_the_directories_it_empties(tmp_path: Path) -> None:
    storage = LocalStorageClient(tmp_path / "files")
    await storage.upload_file("u/e1/a.png", b"a")
    await storage.upload_file("u/e2/b.png", b"b")
    assert await storage.delete_file("u/e1/a.png") is True
    assert await storage.delete_file("u/e1/a.png") is False
    assert not (tmp_path / "files/u/e1").exists() and (tmp_path / "files/u/e2/b.png").exists()
    assert await storage.delete_file("u/e2/b.png") is True
    assert (tmp_path / "files").is_dir() and not any((tmp_path / "files").iterdir())


# --- the file route -------------------------------------------------------------------


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch):
    """Chainlit's app with sign-in required and our route registered."""
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "test-secret-" + "x" * 40)
    monkeypatch.setenv("CHAINLIT_CUSTOM_AUTH", "true")
    file_routes.register(app)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def signed_in_as(identifier: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_jwt(User(identifier=identifier))}"}


async def photo_url(layer) -> str:
    alice = await person(layer, "alice")
    ids = await converse(layer, alice, "What is this?", "A cat.", image=png_bytes())
    [image] = (await layer.get_thread(ids["thread"]))["elements"]
    return image["url"]


def test_register_puts_the_route_before_chainlits_catch_all_once() -> None:
    file_routes.register(app)
    file_routes.register(app)
    names = [getattr(route, "name", None) for route in app.router.routes]
    assert names.count(file_routes.ROUTE_NAME) == 1
    scope = {
        "type": "http",
        "method": "GET",
        "path": f"{URL_PREFIX}/u/e/x.png",
        "root_path": "",
        "headers": [],
    }
    first = next(route for route in app.router.routes if route.matches(scope)[0] == Match.FULL)
    assert getattr(first, "name", None) == file_routes.ROUTE_NAME


async def test_the_owner_gets_the_image(layer, client, chainlit_warnings) -> None:
    url = await photo_url(layer)
    async with client:
        response = await client.get(url, headers=signed_in_as("alice"))
        by_cookie = await client.get(
            url, headers={"Cookie": f"access_token={create_jwt(User(identifier='alice'))}"}
        )
    assert response.status_code == 200 and response.content == png_bytes()
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"].startswith("inline")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert by_cookie.status_code == 200 and by_cookie.content == png_bytes()
    assert chainlit_warnings == []


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda: signed_in_as("mallory"), id="another user"),
        pytest.param(lambda: {}, id="anonymous"),
        pytest.param(lambda: {"Authorization": "Bearer not-a-token"}, id="bad token"),
    ],
)
async def test_nobody_else_gets_the_image(layer, client, headers) -> None:
    url = await photo_url(layer)
    async with client:
        response = await client.get(url, headers=headers())
    assert response.status_code == 404 and response.content != png_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/files/no-such-user/no-such-element/x.png",
        "/files/..%2F..%2Fchat.db",
        "/files/a/%2E%2E/%2E%2E/chat.db",
        "/files/%2Fetc%2Fpasswd",
    ],
)
async def test_unknown_and_malformed_keys_are_not_found(layer, client, path) -> None:
    """Only our route answers 404 here: Chainlit's catch-all answers any other GET with 200."""
    await photo_url(layer)
    async with client:
        response = await client.get(path, headers=signed_in_as("alice"))
    assert response.status_code == 404


async def test_a_file_that_is_not_an_image_is_only_offered_as_a_download(layer, client) -> None:
    alice = await person(layer, "alice")
    ids = await converse(layer, alice, "Look", "OK.")
    page = File(
        name="page.png",
        content=b"<html><script>alert(1)</script></html>",
        mime="image/png",
        for_id=ids["question"],
        thread_id=ids["thread"],
    )
    with chainlit_context(ids["thread"], alice):
        await layer.create_element(page)
    [element] = (await layer.get_thread(ids["thread"]))["elements"]
    async with client:
        response = await client.get(element["url"], headers=signed_in_as("alice"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"].startswith("attachment")


async def test_a_stored_file_gone_from_disk_is_not_found(layer, client, settings) -> None:
    url = await photo_url(layer)
    (settings.data_dir / "files" / url.removeprefix(f"{URL_PREFIX}/")).unlink()
    async with client:
        response = await client.get(url, headers=signed_in_as("alice"))
    assert response.status_code == 404


async def test_a_heic_is_shown_as_the_picture_the_app_prepared(layer, client) -> None:
    """Browsers cannot show HEIC: the owner is served a JPEG of it; the file stays as uploaded."""
    heic = imagecorpus.encode(imagecorpus.photo(1600, 1200), "HEIF", quality=80)
    alice = await person(layer, "alice")
    ids = await converse(layer, alice, "What is this?", "A photo.", image=heic)
    [element] = (await layer.get_thread(ids["thread"]))["elements"]
    async with client:
        response = await client.get(element["url"], headers=signed_in_as("alice"))
        refused = await client.get(element["url"], headers=signed_in_as("mallory"))
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert PILImage.open(io.BytesIO(response.content)).size == (1024, 768)
    assert refused.status_code == 404
    assert layer.storage_provider.path_for(element["objectKey"]).read_bytes() == heic


# --- ratings: only on one's own chats --------------------------------------------


async def rating_of(layer, answer_id: str) -> list:
    rows = await layer.execute_sql(
        'SELECT "value" FROM feedbacks WHERE "forId" = :id', {"id": answer_id}
    )
    return [row["value"] for row in rows] if isinstance(rows, list) else []


async def test_only_the_owner_of_a_chat_rates_its_answers(layer, client, chainlit_warnings) -> None:
    chainlit_routes.register(app, lambda name, path: None)
    alice = await person(layer, "alice")
    await person(layer, "mallory")
    ids = await converse(layer, alice, "What is this?", "A cat.", rating=1)
    thumbs_down = {"feedback": {"forId": ids["answer"], "value": 0}, "sessionId": "none"}
    overwrite = {
        "feedback": {"forId": ids["answer"], "id": ids["feedback"], "value": 0},
        "sessionId": "none",
    }
    async with client:
        forged = await client.put("/feedback", json=thumbs_down, headers=signed_in_as("mallory"))
        forged_over = await client.put("/feedback", json=overwrite, headers=signed_in_as("mallory"))
        unrated = await client.request(
            "DELETE",
            "/feedback",
            json={"feedbackId": ids["feedback"]},
            headers=signed_in_as("mallory"),
        )
        assert (forged.status_code, forged_over.status_code, unrated.status_code) == (404, 404, 404)
        assert await rating_of(layer, ids["answer"]) == [1]

        changed = await client.put("/feedback", json=overwrite, headers=signed_in_as("alice"))
        assert changed.status_code == 200, changed.text
        assert await rating_of(layer, ids["answer"]) == [0]
        removed = await client.request(
            "DELETE",
            "/feedback",
            json={"feedbackId": ids["feedback"]},
            headers=signed_in_as("alice"),
        )
        assert removed.status_code == 200
        assert await rating_of(layer, ids["answer"]) == []
    assert chainlit_warnings == []
