"""What the browser uploads: public/shrink-photos.js, in Chainlit's own page.

Big JPEG and WebP photos, and PNGs that are photos, are shrunk to 2048 px
before the upload; everything else goes byte for byte as the person chose it,
and a HEIC, which Chromium cannot display, is shown as the app's JPEG of it. Each test reads the upload
requests on their way out of the browser (Playwright's routing) and what the
model server finally received.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
from pathlib import Path

from PIL import ExifTags, Image
from playwright.sync_api import Request, Route, expect

from handlers.media import colour
from tests import imagecorpus
from tests.e2e.chat_page import QUESTIONS, ChatPage
from tests.e2e.test_browser import sent_images
from tests.fake_vllm import FakeVLLM, count_images
from tests.waiting import wait_until

UPLOADS = "**/project/file?**"


class Uploads:
    """The files the page uploads, by name, as the browser sends them."""

    def __init__(self, chat: ChatPage) -> None:
        self.files: dict[str, bytes] = {}
        chat.page.route(UPLOADS, self._record)

    def _record(self, route: Route) -> None:
        name, data = _file_field(route.request)
        self.files[name] = data
        route.continue_()


def _file_field(request: Request) -> tuple[str, bytes]:
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    form = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        head + request.post_data_buffer
    )
    (part,) = [
        p for p in form.iter_parts() if p.get_param("name", header="content-disposition") == "file"
    ]
    return part.get_filename(), part.get_payload(decode=True)


def corner_colours(image: Image.Image) -> tuple:
    """The colour near each corner, clockwise from top-left, rounded to tell red from green."""
    w, h = image.size
    points = (
        (w // 8, h // 8),
        (w - w // 8, h // 8),
        (w - w // 8, h - h // 8),
        (w // 8, h - h // 8),
    )
    return tuple(tuple(round(c / 255) for c in image.convert("RGB").getpixel(p)) for p in points)


UPRIGHT = ((1, 0, 0), (0, 1, 0), (1, 1, 1), (0, 0, 1))  # imagecorpus.quadrants, clockwise


def test_a_big_photo_is_shrunk_upright_before_it_is_uploaded(
    chat: ChatPage, fake: FakeVLLM, tmp_path: Path
) -> None:
    original = imagecorpus.rotated(6, 4000, 3000)  # stored 3000×4000 on its side, EXIF says turn it
    path = tmp_path / "IMG_0420.jpg"
    path.write_bytes(original)
    uploads = Uploads(chat)
    chat.ask("Which colour is top left?", path)
    chat.wait_for_answer(fake.reply)
    chat.wait_until_idle()
    chat.screenshot("upload-shrunk")

    sent = uploads.files["IMG_0420.jpg"]
    assert len(sent) < len(original)
    with Image.open(io.BytesIO(sent)) as image:
        assert image.format == "JPEG"
        assert image.size == (2048, 1536)  # upright: 4000×3000 as the camera meant it
        assert image.getexif().get(ExifTags.Base.Orientation, 1) == 1
        assert corner_colours(image) == UPRIGHT
        # No colour profile, or sRGB: the app's conversion to sRGB skips it (no cost on this path).
        assert colour.srgb_transform(image.info.get("icc_profile") or b"") is None
    (request,) = fake.requests
    (model_image,) = sent_images(request)
    assert model_image.size == (1024, 768)
    assert corner_colours(model_image) == UPRIGHT


def test_a_photo_pasted_as_png_is_uploaded_as_a_smaller_jpeg(
    chat: ChatPage, fake: FakeVLLM, tmp_path: Path
) -> None:
    """What the browser gives for a copied photo: a PNG of several bytes a pixel."""
    picture = imagecorpus.photo(4000, 3000).convert("RGBA")
    picture.paste((0, 0, 0, 0), (0, 0, 1000, 750))  # a transparent top-left corner
    path = tmp_path / "image.png"
    path.write_bytes(imagecorpus.encode(picture, "PNG"))
    uploads = Uploads(chat)
    chat.ask("What is this?", path)
    chat.wait_for_answer(fake.reply)
    chat.wait_until_idle()

    (name,) = uploads.files
    assert name == "image.jpg"
    with Image.open(io.BytesIO(uploads.files[name])) as image:
        assert (image.format, image.size) == ("JPEG", (2048, 1536))
        assert image.convert("RGB").getpixel((100, 100)) >= (
            250,
            250,
            250,
        )  # transparent became white
    assert len(fake.requests) == 1


def test_screenshots_small_photos_and_undecodable_files_go_as_they_are(
    chat: ChatPage, fake: FakeVLLM, tmp_path: Path
) -> None:
    files = {
        "screen.png": imagecorpus.encode(imagecorpus.screenshot(3840, 2160), "PNG"),
        "small.jpg": imagecorpus.encode(imagecorpus.photo(1600, 1200), "JPEG", quality=90),
        "page.jpg": b"<!doctype html><html><body>Saved from a web page</body></html>",
    }
    paths = []
    for name, data in files.items():
        paths.append(tmp_path / name)
        paths[-1].write_bytes(data)
    chat.ask("What are these?", *paths)
    chat.wait_for_answer(fake.reply)
    chat.wait_until_idle()

    # Chromium does not show Playwright the body of a file read from disk, so
    # the files are read back from the app, as the page shows them.
    question = chat.page.locator(QUESTIONS).last
    shown = question.locator("img").evaluate_all("images => images.map(i => i.src)")
    stored = {chat.page.request.get(url).body() for url in shown}
    assert stored == set(files.values())
    assert (
        chat.answers.filter(has_text="page.jpg").count() == 1
    )  # the app, not the browser, refuses it
    (request,) = fake.requests
    assert count_images(request["messages"]) == 2


def test_a_heic_photo_shows_in_the_chat(chat: ChatPage, fake: FakeVLLM, tmp_path: Path) -> None:
    """Chromium cannot display HEIC; the app serves the page its JPEG of it."""
    path = tmp_path / "IMG_2041.heic"
    path.write_bytes(imagecorpus.encode(imagecorpus.photo(2400, 1800), "HEIF", quality=80))
    chat.ask("What is this?", path)
    chat.wait_for_answer(fake.reply)
    chat.wait_until_idle()
    picture = chat.page.locator(QUESTIONS).last.locator("img")
    expect(picture).to_be_visible()
    wait_until(
        lambda: picture.evaluate("i => i.complete && i.naturalWidth") == 1024, "the photo is shown"
    )
    chat.screenshot("heic-shown")
    (request,) = fake.requests
    assert count_images(request["messages"]) == 1
