"""Attacks with what a signed-in colleague sends: text, chat settings, links, videos.

Each test performs the attack through the app's own interfaces — Chainlit's
socket handlers and the app's callbacks in a real Chainlit websocket context
(tests/chainlit_harness.py), against the fake vLLM server on loopback — and
checks that it is refused with a clear message while the chat goes on.
"""

from __future__ import annotations

import functools
import gzip
import threading
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import chainlit.socket as socket
import pytest

from handlers.chat import attachments
from handlers.core.i18n import translate
from handlers.media import links
from tests.app_helpers import sent_images
from tests.mediacorpus import flat_page, image_bytes, write_pdf, write_video

# The message of the attack review: 640 KB that named 80 million pages.
PAGES_BOMB = "please read pages 1-1000, " + "1-1000, " * 80_000
# The link of the attack review: 591 bytes that inflate to 256 MiB.
ZEROS = b"\0" * 256 * 2**20
ONE_LAYER = gzip.compress(ZEROS, 9)
TWO_LAYERS = gzip.compress(ONE_LAYER, 9)
del ZEROS
LOOPBACK = frozenset({"127.0.0.1"})


class Hostile(BaseHTTPRequestHandler):
    """A web server a colleague controls: /gzip-gzip and /gzip send bombs,
    /img.png a real picture."""

    protocol_version = "HTTP/1.1"
    bodies = {
        "/gzip-gzip": (TWO_LAYERS, "gzip, gzip"),
        "/gzip": (ONE_LAYER, "gzip"),
        "/img.png": (image_bytes("PNG"), ""),
    }

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.seen.append(self.path)
        body, encoding = self.bodies[self.path]
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def hostile() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    server.daemon_threads, server.seen = True, []
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def warned(chat, text: str) -> bool:
    return "⚠️ " + text in chat.texts()


def reach_loopback(monkeypatch, *, ports=links.ALLOWED_PORTS, resolver=None) -> None:
    """The app's own link fetcher, told that 127.0.0.1 (and `ports`) may be reached:
    the hostile server stands in for one on the internet."""
    fetch = functools.partial(links.fetch_link, allow=LOOPBACK, ports=ports, resolver=resolver)
    monkeypatch.setattr(attachments, "fetch_link", fetch)


async def test_an_unknown_answer_language_sent_over_the_socket_is_refused_and_the_chat_goes_on(
    chat, app
):
    chat.enter()
    await socket.change_settings(chat.session.socket_id, {"answer_language": "zh"})
    await socket.change_settings(chat.session.socket_id, {"answer_language": "xx"})
    refusal = translate("error.unknown_answer_language", "en-US", choices="auto, en, zh")
    assert chat.last_text() == refusal
    assert chat.session.chat_settings["answer_language"] == "zh"  # what the thread keeps
    await chat.send("What is this?")
    assert chat.last_text() == app.reply
    assert "Simplified Chinese" in app.requests[-1]["messages"][0]["content"][0]["text"]


async def test_a_640_kb_message_naming_80_million_pages_is_refused_unread(chat, app):
    await chat.send(PAGES_BOMB)
    refusal = translate("error.message_too_long", "en-US", length=len(PAGES_BOMB), limit=4 * 65536)
    assert chat.last_text() == refusal
    assert app.requests == []
    await chat.send("What is this?")
    assert chat.last_text() == app.reply
    assert "pages 1-1000" not in str(app.requests[-1]["messages"])  # not kept either


async def test_a_message_naming_a_hundred_and_one_page_ranges_of_a_pdf_is_refused(
    chat, app, tmp_path
):
    pdf = write_pdf(tmp_path / "report.pdf", [flat_page((200, 200, 200))] * 3)
    ranges = ", ".join(f"{n}-{n + 1}" for n in range(1, 203, 2))  # 101 ranges
    await chat.send(f"Read pages {ranges}", [pdf])
    assert chat.last_text() == translate("error.too_many_page_ranges", "en-US", limit=100)
    assert app.requests == []
    await chat.send("Read pages 2-3", [pdf])
    assert "report.pdf, page 2" in str(app.requests[-1]["messages"])


async def test_a_pasted_table_of_contents_without_a_pdf_is_not_refused(chat, app):
    contents = "\n".join(f"Chapter {n} ... page {n * 3}" for n in range(1, 300))
    await chat.send(f"Summarise this table of contents:\n{contents}")
    assert chat.last_text() == app.reply


async def test_an_image_link_answering_gzip_gzip_is_refused_without_inflating_it(
    chat, app, hostile, monkeypatch
):
    port = hostile.server_address[1]
    reach_loopback(monkeypatch, ports=links.ALLOWED_PORTS | {port})
    tracemalloc.start()
    try:
        await chat.send(f"What is in http://127.0.0.1:{port}/gzip-gzip ?")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    name = "127.0.0.1/gzip-gzip"
    assert warned(chat, translate("link.bad_encoding", "en-US", name=name, encoding="gzip, gzip"))
    assert chat.last_text() == app.reply and sent_images(app.requests[-1]) == []
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB allocated"


async def test_a_gzip_bomb_behind_an_image_link_is_cut_off_at_the_size_limit(
    start_app, hostile, monkeypatch
):
    from tests.chainlit_harness import ChatHarness

    await start_app(MAX_UPLOAD_MB="1")
    chat = ChatHarness()
    await chat.start()
    port = hostile.server_address[1]
    reach_loopback(monkeypatch, ports=links.ALLOWED_PORTS | {port})
    tracemalloc.start()
    try:
        await chat.send(f"What is in http://127.0.0.1:{port}/gzip ?")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert warned(chat, translate("link.too_large", "en-US", name="127.0.0.1/gzip", limit_mb=1))
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MiB allocated for a 1 MB limit"


async def test_an_image_link_to_another_port_is_not_fetched(chat, app, hostile, monkeypatch):
    port = hostile.server_address[1]
    reach_loopback(monkeypatch)
    await chat.send(f"What is in http://127.0.0.1:{port}/img.png ?")
    name = "127.0.0.1/img.png"
    assert warned(chat, translate("link.bad_port", "en-US", name=name, port=port))
    assert hostile.seen == [] and sent_images(app.requests[-1]) == []


@pytest.mark.parametrize("inside", ["168.63.129.16", "192.0.0.192"])
async def test_an_image_link_to_a_cloud_metadata_address_is_not_fetched(
    chat, app, hostile, monkeypatch, inside
):
    """The host name also resolves to the hostile server on loopback, which is
    where the fetch would go if the metadata address were let through."""
    port = hostile.server_address[1]
    resolver = {"metadata.example": ["127.0.0.1", inside]}.get
    reach_loopback(monkeypatch, ports=links.ALLOWED_PORTS | {port}, resolver=resolver)
    await chat.send(f"What is in http://metadata.example:{port}/img.png ?")
    name = "metadata.example/img.png"
    assert warned(chat, translate("link.blocked_address", "en-US", name=name))
    assert hostile.seen == [] and sent_images(app.requests[-1]) == []


async def test_a_video_of_frames_over_the_pixel_limit_is_refused_before_decoding(
    start_app, fake_vllm, tmp_path
):
    """The limit is lowered so that the test's video can be small: 320×240
    frames against 256×256, as 16384² frames would be against the default."""
    from tests.chainlit_harness import ChatHarness

    await start_app(MAX_VIDEO_PIXELS=str(256 * 256))
    chat = ChatHarness()
    await chat.start()
    video = write_video(tmp_path / "huge.mkv", container="matroska", size=(320, 240))
    await chat.send("What happens in this clip?", [video])
    refusal = translate(
        "video.too_many_pixels", "en-US", name="huge.mkv", width=320, height=240, limit_mp="0.0655"
    )
    assert warned(chat, refusal)
    assert chat.last_text() == fake_vllm.reply and sent_images(fake_vllm.requests[-1]) == []
