"""Photos prepared as their upload arrives (handlers/chat/uploads.py), the routes in
front of Chainlit's (handlers/web/chainlit_routes.py), and what the page is shown of
pictures browsers cannot display (handlers/web/display.py)."""

from __future__ import annotations

import asyncio
import gc
import io
import threading
from pathlib import Path

import chainlit as cl
import httpx
import pytest
from chainlit.auth import create_jwt
from chainlit.element import Element
from chainlit.server import app as chainlit_server
from PIL import Image

import chainlit_app
from handlers.chat import uploads
from handlers.chat.attachments import Limits, Options, Upload, prepare_uploads
from handlers.chat.uploads import EarlyPreparations
from handlers.core.arriving import ArrivingBytes
from handlers.core.errors import InvalidAttachment
from handlers.media import heic
from handlers.media.images import PreparedImage, prepare_image
from handlers.web.display import rendition_for
from tests import imagecorpus
from tests.app_helpers import photo, sent_images, settle
from tests.chainlit_harness import ChatHarness
from tests.mediacorpus import flat_page, write_pdf
from tests.test_heic import grid as iphone_heic

MAX_BYTES = 20 * 1024 * 1024
LIMITS = Limits(
    max_images=4, max_image_bytes=MAX_BYTES, max_media_bytes=MAX_BYTES, max_video_seconds=60
)


def is_red(image: Image.Image) -> bool:
    red, green, blue = image.convert("RGB").getpixel((10, 10))
    return red > 192 and green < 64 and blue < 64


async def test_a_photo_is_prepared_in_the_background_and_handed_over_once(tmp_path: Path) -> None:
    early = EarlyPreparations(MAX_BYTES)
    path = photo(tmp_path, "IMG_0001.jpg", size=(4000, 3000))
    early.start("IMG_0001.jpg", path)
    task = early.take(path)
    image = await task
    assert isinstance(image, PreparedImage)
    assert (image.name, image.width, image.height) == ("IMG_0001.jpg", 1000, 750)
    assert early.take(path) is None and early.pending() == 0


async def test_a_pdf_is_left_for_the_question_to_decide(tmp_path: Path) -> None:
    early = EarlyPreparations(MAX_BYTES)
    path = write_pdf(tmp_path / "report.pdf", [flat_page((255, 255, 255))])
    early.start("report.pdf", path)
    assert await early.take(path) is None


async def test_a_broken_upload_fails_when_claimed_and_is_silent_when_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    early = EarlyPreparations(MAX_BYTES)
    claimed, unclaimed = tmp_path / "claimed.png", tmp_path / "unclaimed.png"
    for path in (claimed, unclaimed):
        path.write_bytes(b"<!doctype html><html></html>")
        early.start(path.name, path)
    with pytest.raises(InvalidAttachment) as refusal:
        await early.take(claimed)
    assert refusal.value.params["name"] == "claimed.png"
    await settle()
    early.close()
    await settle()
    gc.collect()  # asyncio reports an unretrieved failure when the task is collected
    assert "never retrieved" not in caplog.text


async def test_old_and_surplus_preparations_are_dropped(tmp_path: Path) -> None:
    paths = [photo(tmp_path, f"{n}.jpg", size=(64, 48)) for n in range(3)]
    crowded = EarlyPreparations(MAX_BYTES, capacity=2)
    for path in paths:
        crowded.start(path.name, path)
    assert crowded.take(paths[0]) is None and crowded.pending() == 2

    forgetful = EarlyPreparations(MAX_BYTES, ttl_s=0)
    for path in paths:
        forgetful.start(path.name, path)
    assert [forgetful.take(p) is not None for p in paths] == [False, False, True]
    await settle()


async def test_a_message_uses_the_early_preparation_and_skips_what_is_left_out(
    tmp_path: Path,
) -> None:
    early = EarlyPreparations(MAX_BYTES)
    paths = [photo(tmp_path, f"{n}.jpg", colour="red") for n in range(5)]
    for path in paths:
        early.start(path.name, path)
    await settle()
    for path in paths:  # what is on disk now would look blue, had it been prepared again
        photo(tmp_path, path.name, colour="blue")
    uploads = [Upload(key=str(n), name=p.name, path=p) for n, p in enumerate(paths)]
    prepared = await prepare_uploads(uploads, LIMITS, Options(), early)
    assert [p.image.name for p in prepared.parts] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    assert prepared.left_out == ["4.jpg"]
    assert all(
        is_red(Image.open(io.BytesIO(p.image.data))) for p in prepared.parts
    )  # none prepared again
    assert early.pending() == 0


async def test_the_upload_route_starts_the_preparation(
    start_app, fake_vllm, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "upload-route-test-secret-of-32-chars!")
    await start_app()
    alice = cl.User(identifier="alice")
    chat = ChatHarness(user=alice)
    await chat.start()
    transport = httpx.ASGITransport(app=chainlit_server)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        response = await client.post(
            "/project/file",
            params={"session_id": chat.session.id},
            files={
                "file": ("IMG_0002.jpg", photo(tmp_path, "IMG_0002.jpg").read_bytes(), "image/jpeg")
            },
            headers={"Authorization": f"Bearer {create_jwt(alice)}"},
        )
    assert response.status_code == 200, response.text
    stored = Path(chat.session.files[response.json()["id"]]["path"])
    early = chainlit_app.services().assistant.early
    assert early.pending() == 1
    await settle()
    photo(stored.parent, stored.name, colour="blue")  # later changes on disk are not what is sent

    await chat.send("What colour?", [stored])
    (image,) = sent_images(fake_vllm.requests[-1])
    assert is_red(image)  # as uploaded
    assert early.pending() == 0


async def test_a_whole_iphone_heic_upload_is_prepared_as_it_arrives_upright_and_in_srgb(
    start_app, fake_vllm, monkeypatch, tmp_path: Path
) -> None:
    """The path browsers cannot shrink: the HEIC arrives whole, its tiles are decoded
    by handlers/media/heic.py while the question is typed, and the model gets it upright."""
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "upload-route-test-secret-of-32-chars!")
    decoded = []
    real_decode = heic._decode
    monkeypatch.setattr(
        heic, "_decode", lambda *args: decoded.append(args[1]) or real_decode(*args)
    )
    await start_app()
    chat = ChatHarness(user=cl.User(identifier="alice"))
    await chat.start()
    transport = httpx.ASGITransport(app=chainlit_server)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        file_id = await signed_in_upload(
            chat, client, "IMG_0003.HEIC", iphone_heic(orientation=6), "image/heic"
        )
    early = chainlit_app.services().assistant.early
    assert early.pending() == 1
    await settle()
    assert decoded == [(1024, 683)]  # decoded once, on arrival, straight to 1024 px

    await chat.send("What is this?", [Path(chat.session.files[file_id]["path"])])
    (image,) = sent_images(fake_vllm.requests[-1])
    assert image.size == (683, 1024)  # turned: a portrait
    red, green, blue = image.convert("RGB").getpixel(
        (image.width - 10, 10)
    )  # top-left red, turned right
    assert red >= 245 and green <= 8 and blue <= 8  # P3 (230, 20, 20) in sRGB
    assert decoded == [(1024, 683)] and early.pending() == 0  # not prepared again


async def signed_in_upload(
    chat: ChatHarness, client: httpx.AsyncClient, name: str, data: bytes, mime: str
) -> str:
    response = await client.post(
        "/project/file",
        params={"session_id": chat.session.id},
        files={"file": (name, data, mime)},
        headers={"Authorization": f"Bearer {create_jwt(chat.session.user)}"},
    )
    assert response.status_code == 200, response.text
    return response.json()["id"]


async def test_the_page_is_shown_a_heic_as_jpeg_and_other_pictures_as_uploaded(
    start_app, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "upload-route-test-secret-of-32-chars!")
    await start_app()
    chat = ChatHarness(user=cl.User(identifier="alice"))
    await chat.start()
    heic = imagecorpus.encode(imagecorpus.photo(1200, 900), "HEIF")
    jpeg = photo(tmp_path, "small.jpg").read_bytes()
    transport = httpx.ASGITransport(app=chainlit_server)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        heic_id = await signed_in_upload(chat, client, "IMG_1.heic", heic, "image/heic")
        jpeg_id = await signed_in_upload(chat, client, "small.jpg", jpeg, "image/jpeg")
        auth = {"Authorization": f"Bearer {create_jwt(chat.session.user)}"}
        shown = await client.get(
            f"/project/file/{heic_id}", params={"session_id": chat.session.id}, headers=auth
        )
        as_is = await client.get(
            f"/project/file/{jpeg_id}", params={"session_id": chat.session.id}, headers=auth
        )
        stranger = {"Authorization": f"Bearer {create_jwt(cl.User(identifier='mallory'))}"}
        refused = await client.get(
            f"/project/file/{heic_id}", params={"session_id": chat.session.id}, headers=stranger
        )
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(shown.content)).size == (1024, 768)
    assert as_is.content == jpeg
    assert refused.status_code == 401  # Chainlit's own check, still in force
    await settle()


async def test_a_picture_the_browser_could_not_name_is_shown_as_a_picture(
    start_app, monkeypatch, tmp_path: Path
) -> None:
    """Chromium uploads `IMG_4031.HEIC` (upper case) as application/octet-stream;
    Chainlit would then draw a file chip where the photo should be."""
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "upload-route-test-secret-of-32-chars!")
    await start_app()
    chat = ChatHarness(user=cl.User(identifier="alice"))
    await chat.start()
    heic = imagecorpus.encode(imagecorpus.photo(400, 300), "HEIF")
    png = imagecorpus.encode(imagecorpus.photo(400, 300), "PNG")
    pdf = write_pdf(tmp_path / "scan.pdf", [flat_page((255, 255, 255))]).read_bytes()
    octets = "application/octet-stream"
    # Chainlit takes application/octet-stream only for .heic, .heif and .mkv names
    # (.chainlit/config.toml), whatever their case.
    uploads = {
        "heic unnamed": ("IMG_4031.HEIC", heic, octets),
        "png unnamed": ("chart.heif", png, octets),  # named by its bytes, not its name
        "png as jpeg": ("chart.jpg", png, "image/jpeg"),  # a picture claim stands
        "not a picture": ("clip.mkv", b"just some bytes " * 100, octets),
        "a pdf": ("scan.heic", pdf, octets),
        "a script": (
            "logo.heic",
            b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
            octets,
        ),
    }
    transport = httpx.ASGITransport(app=chainlit_server)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        ids = {
            what: await signed_in_upload(chat, client, *upload) for what, upload in uploads.items()
        }
    types = {what: chat.session.files[file_id]["type"] for what, file_id in ids.items()}
    assert types == {
        "heic unnamed": "image/heic",
        "png unnamed": "image/png",
        "png as jpeg": "image/jpeg",
        "not a picture": octets,
        "a pdf": octets,
        "a script": octets,  # never called a picture, so never drawn as one
    }
    # what Chainlit's process_message makes of a file reference: a picture, not a file
    assert Element.infer_type_from_mime(types["heic unnamed"]) == "image"
    await settle()


async def test_renditions_only_for_what_browsers_cannot_show(tmp_path: Path) -> None:
    heic, png, broken = tmp_path / "a.heic", tmp_path / "b.png", tmp_path / "c.heic"
    heic.write_bytes(imagecorpus.encode(imagecorpus.photo(800, 600), "HEIF"))
    png.write_bytes(imagecorpus.encode(imagecorpus.photo(800, 600), "PNG"))
    broken.write_bytes(heic.read_bytes()[:2000])
    first = await rendition_for(heic)
    assert first is not None and first.mime == "image/jpeg"
    assert await rendition_for(heic) is first  # made once
    assert await rendition_for(png) is None
    assert await rendition_for(broken) is None
    assert await rendition_for(tmp_path / "gone.heic") is None


BOUNDARY = "arrivingboundary7MA4YWxk"


def multipart(name: str, data: bytes, mime: str) -> tuple[bytes, bytes, bytes]:
    """A one-file form as the browser sends it: what comes before, the file, what comes after."""
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: {mime}\r\n\r\n"
    ).encode()
    return head, data, f"\r\n--{BOUNDARY}--\r\n".encode()


class Watched:
    """`prepare_arriving`, noting each call's file and when it has returned."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reading: list[ArrivingBytes] = []
        self.returned: list[object] = []
        self.finished = threading.Event()
        real = uploads.prepare_arriving

        def watched(name: str, arriving: ArrivingBytes, *, max_bytes: int):
            self.reading.append(arriving)
            try:
                result = real(name, arriving, max_bytes=max_bytes)
            except Exception as error:
                result = error
                raise
            finally:
                self.returned.append(result)
                self.finished.set()
            return result

        monkeypatch.setattr(uploads, "prepare_arriving", watched)

    def decoding(self) -> bool:
        """Whether a decoder has read into the upload (its header, at least)."""
        return bool(self.reading) and self.reading[0].tell() > 0


async def streamed_upload(chat: ChatHarness, body) -> httpx.Response:
    """POST a multipart body (of `multipart`'s boundary) piece by piece, as `body` yields it."""
    transport = httpx.ASGITransport(app=chainlit_server)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        return await client.post(
            "/project/file",
            params={"session_id": chat.session.id},
            content=body,
            headers={
                "Authorization": f"Bearer {create_jwt(chat.session.user)}",
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            },
        )


async def wait_until(condition, seconds: float = 5.0) -> bool:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


async def test_a_whole_jpeg_is_decoded_while_its_upload_is_still_arriving(
    start_app, fake_vllm, monkeypatch, tmp_path: Path
) -> None:
    """A phone's 12 MP photo sent whole: its decoding starts with its first bytes,
    not when the last one is in, and the model gets it as it would have otherwise."""
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "upload-route-test-secret-of-32-chars!")
    watched = Watched(monkeypatch)
    await start_app()
    chat = ChatHarness(user=cl.User(identifier="alice"))
    await chat.start()
    data = imagecorpus.rotated(6, 4000, 3000)
    head, body, tail = multipart("IMG_0004.jpg", data, "image/jpeg")
    decoding_before_the_end = []

    async def arriving():
        yield head + body[: len(body) // 3]
        decoding_before_the_end.append(await wait_until(watched.decoding))
        yield body[len(body) // 3 :] + tail

    response = await streamed_upload(chat, arriving())
    assert response.status_code == 200, response.text
    assert decoding_before_the_end == [True]
    stored = Path(chat.session.files[response.json()["id"]]["path"])
    assert stored.read_bytes() == data  # Chainlit stored the whole file, as before
    assert chainlit_app.services().assistant.early.pending() == 1

    await chat.send("What is this?", [stored])
    (image,) = sent_images(fake_vllm.requests[-1])
    expected = prepare_image("IMG_0004.jpg", data, max_bytes=MAX_BYTES)
    assert image.size == (expected.width, expected.height) == (1000, 750)  # stored 3000×4000
    assert len(watched.returned) == 1  # prepared once, as it arrived
    assert chainlit_app.services().assistant.early.pending() == 0


class ClientGone(Exception):
    """The browser's connection dropping in the middle of an upload."""


async def test_an_upload_cut_off_midway_keeps_nothing_and_frees_its_thread(
    start_app, monkeypatch
) -> None:
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "upload-route-test-secret-of-32-chars!")
    watched = Watched(monkeypatch)
    await start_app()
    chat = ChatHarness(user=cl.User(identifier="alice"))
    await chat.start()
    head, body, _ = multipart("IMG_0005.jpg", imagecorpus.photo_jpeg(2000, 1500), "image/jpeg")

    async def cut_off():
        yield head + body[: len(body) // 2]
        await wait_until(watched.decoding)
        raise ClientGone

    with pytest.raises(ClientGone):
        await streamed_upload(chat, cut_off())
    assert await asyncio.to_thread(watched.finished.wait, 5)  # the decoder did not wait on
    assert watched.returned == [None]
    assert chat.session.files == {} and chainlit_app.services().assistant.early.pending() == 0


async def test_with_every_arriving_thread_taken_a_photo_is_prepared_once_it_has_arrived(
    tmp_path: Path, monkeypatch
) -> None:
    """Slow uploads holding all the arriving threads do not hold anyone else's photo."""
    monkeypatch.setattr(uploads, "run_as_it_arrives", lambda *args, **kwargs: None)
    early = EarlyPreparations(MAX_BYTES)
    path = photo(tmp_path, "IMG_0006.jpg", size=(4000, 3000))
    arrival = early.follow()
    arrival.feed(path.name, path.read_bytes())
    assert arrival.task is None
    early.stored(arrival, path.name, path)
    image = await early.take(path)
    assert isinstance(image, PreparedImage) and (image.width, image.height) == (1000, 750)


async def test_only_a_jpeg_is_followed_as_it_arrives(tmp_path: Path) -> None:
    early = EarlyPreparations(MAX_BYTES)
    png = early.follow()
    png.feed("shot.png", imagecorpus.simple("PNG"))
    assert png.task is None  # PNG, HEIC, PDF, video: prepared once whole, as before
    jpeg = early.follow()
    jpeg.feed("IMG.jpg", photo(tmp_path, "IMG.jpg").read_bytes())
    assert jpeg.task is not None
    jpeg.abandon()  # a refused or failed upload: nobody will take it
    with pytest.raises(asyncio.CancelledError):
        await jpeg.task


async def test_an_upload_request_carrying_two_files_is_refused_whole(
    start_app, monkeypatch, tmp_path
) -> None:
    """The frontend sends one file a request; a client sending more gets 400 and
    nothing of it is kept or prepared (Starlette's own limit, set to one)."""
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "upload-route-test-secret-of-32-chars!")
    await start_app()
    chat = ChatHarness(user=cl.User(identifier="alice"))
    await chat.start()
    jpeg = photo(tmp_path, "a.jpg").read_bytes()
    signed_in = {"Authorization": f"Bearer {create_jwt(chat.session.user)}"}
    two = [("file", ("a.jpg", jpeg, "image/jpeg")), ("other", ("b.jpg", jpeg, "image/jpeg"))]
    transport = httpx.ASGITransport(app=chainlit_server)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        response = await client.post(
            "/project/file", params={"session_id": chat.session.id}, files=two, headers=signed_in
        )
        missing = await client.post(
            "/project/file",
            params={"session_id": chat.session.id},
            data={"note": "no file"},
            headers=signed_in,
        )
    assert response.status_code == 400 and "Too many files" in response.text
    assert missing.status_code == 422  # as FastAPI answers a form without its file
    assert chat.session.files == {}
    await settle()
    assert chainlit_app.services().assistant.early.pending() == 0


async def test_an_upload_to_someone_elses_session_is_not_decoded(
    start_app, monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "upload-route-test-secret-of-32-chars!")
    watched = Watched(monkeypatch)
    await start_app()
    alice = ChatHarness(user=cl.User(identifier="alice"))
    await alice.start()
    mallory = {"Authorization": f"Bearer {create_jwt(cl.User(identifier='mallory'))}"}
    jpeg = photo(tmp_path, "IMG_0007.jpg", size=(4000, 3000)).read_bytes()
    transport = httpx.ASGITransport(app=chainlit_server)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        response = await client.post(
            "/project/file",
            params={"session_id": alice.session.id},
            files={"file": ("IMG_0007.jpg", jpeg, "image/jpeg")},
            headers=mallory,
        )
    assert response.status_code == 401  # Chainlit's own refusal, as before
    assert watched.reading == [] and alice.session.files == {}
    assert chainlit_app.services().assistant.early.pending() == 0
