"""The chat download (handlers/chat/download.py): what the zip holds, its names, its cap."""

from __future__ import annotations

import io
import os
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from handlers.chat.download import build_download, has_questions, owned_thread, safe_file_name
from handlers.chat.history import PreparedStore
from handlers.core.errors import RequestRefused
from handlers.media.bundle import ImagePart
from handlers.media.images import prepare_image

NOW = datetime(2026, 12, 2, 1, 30, tzinfo=UTC)


def jpeg(colour: str = "red", size=(64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG")
    return out.getvalue()


def big_file(size: int) -> bytes:
    """`size` bytes starting like a JPEG (the download takes originals as they are)."""
    return b"\xff\xd8\xff" + os.urandom(size - 3)


class History:
    """A persisted thread as Chainlit's data layer returns it, with its files on disk."""

    def __init__(self, root: Path) -> None:
        self.files = root / "files"
        self.store = PreparedStore(root / "prepared")
        self.thread = {"id": "t1", "name": "Receipts", "steps": [], "elements": []}
        self._clock = 0

    def step(self, type_: str, output: str, kind: str | None = None) -> str:
        self._clock += 1
        step_id = f"s{self._clock}"
        self.thread["steps"].append(
            {
                "id": step_id,
                "type": type_,
                "output": output,
                "createdAt": f"2026-12-02T00:{self._clock:02d}:00.000000Z",
                "metadata": {"kind": kind} if kind else {},
            }
        )
        return step_id

    def upload(self, step_id: str, name: str, data: bytes, type_: str = "image") -> str:
        element_id = f"e{len(self.thread['elements'])}"
        key = f"alice/{element_id}/{safe_file_name(name)}"
        path = self.files / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.thread["elements"].append(
            {"id": element_id, "forId": step_id, "type": type_, "name": name, "objectKey": key}
        )
        return element_id

    def prepare(self, step_id: str, parts: list[tuple[str, str | None, bytes]]) -> None:
        """What the model saw of the turn: (key, label, JPEG bytes) each."""
        image_parts = [
            ImagePart(key=key, image=prepare_image("x.jpg", data, max_bytes=10**8), label=label)
            for key, label, data in parts
        ]
        self.store.save("t1", step_id, "text as sent", image_parts)

    def original_path(self, key: str) -> Path:
        return self.files / key

    def build(self, max_bytes: int = 10**8, language: str = "en-US", **options):
        return build_download(
            self.thread,
            self.store,
            self.original_path,
            language=language,
            max_bytes=max_bytes,
            now=NOW,
            **options,
        )


def opened(download) -> tuple[str, dict[str, bytes]]:
    with zipfile.ZipFile(download.path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    return files.pop("chat.md").decode("utf-8"), files


@pytest.fixture
def history(tmp_path):
    return History(tmp_path)


def test_the_zip_holds_the_chat_in_order_with_times_and_the_original_photo(history):
    question = history.step("user_message", "What is on this receipt?\nAnd its date?")
    original = jpeg("red", (800, 600))
    element = history.upload(question, "receipt.jpg", original)
    history.prepare(question, [(element, None, jpeg("red"))])
    history.step("assistant_message", "⚠️ notes.png is not an image.", kind="notice")
    history.step("assistant_message", "A **total** of 12.50.", kind="answer")
    history.step("user_message", "谢谢！这是什么颜色？")
    history.step("assistant_message", "红色。", kind="answer")

    download = history.build()
    markdown, images = opened(download)

    assert list(images) == ["images/001-receipt.jpg"]
    assert images["images/001-receipt.jpg"] == original  # as uploaded, not the 1024 px copy
    assert markdown.startswith("# Receipts\n\nDownloaded 2026-12-02 01:30 UTC.")
    order = [
        "## Question · 2026-12-02 00:01 UTC",
        "What is on this receipt?  \nAnd its date?",
        "![receipt.jpg](images/001-receipt.jpg)",
        "> ⚠️ notes.png is not an image.",
        "## Answer · 2026-12-02 00:03 UTC",
        "A **total** of 12.50.",
        "## Question · 2026-12-02 00:04 UTC",
        "谢谢！这是什么颜色？",
        "红色。",
    ]
    positions = [markdown.index(text) for text in order]
    assert positions == sorted(positions)
    assert (download.images, download.left_out) == (1, 0)
    assert download.file_name == "chat-2026-12-02-Receipts.zip"


def test_headings_follow_the_persons_language(history):
    history.step("user_message", "这是什么？")
    history.step("assistant_message", "一只猫。", kind="answer")
    markdown, _ = opened(history.build(language="zh-CN"))
    assert "## 提问 · 2026-12-02 00:01 UTC" in markdown and "## 回答 · " in markdown
    assert "下载于 2026-12-02 01:30 UTC" in markdown


def test_names_are_safe_and_never_collide(history):
    question = history.step("user_message", "Compare")
    names = ["../../etc/passwd.jpg", "a.jpg", "a.jpg", "发票 [2].JPG"]
    colours = ["red", "green", "blue", "white"]
    elements = [
        history.upload(question, name, jpeg(colour)) for name, colour in zip(names, colours)
    ]
    history.prepare(question, [(element, None, jpeg()) for element in elements])

    markdown, images = opened(history.build())

    assert list(images) == [
        "images/001-etc_passwd.jpg",
        "images/002-a.jpg",
        "images/003-a.jpg",
        "images/004-发票_2.jpg",
    ]
    assert (
        "![发票 (2).JPG](images/004-%E5%8F%91%E7%A5%A8_2.jpg)" in markdown
    )  # a link any renderer follows
    assert images["images/002-a.jpg"] != images["images/003-a.jpg"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../x.png", "x.png"),
        ("..", "image"),
        ("a/b\\c.jpeg", "a_b_c.jpeg"),
        ("照片", "照片"),
        ("x.tar.gz", "x_tar.gz"),
        ("photo.verylongext", "photo_verylongext"),
        ("", "image"),
    ],
)
def test_safe_file_name(name, expected):
    assert safe_file_name(name) == expected


def test_a_video_goes_in_as_the_frames_the_model_saw(history):
    question = history.step("user_message", "What happens?")
    video = history.upload(
        question, "clip.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 1000, type_="video"
    )
    history.prepare(
        question,
        [
            (f"{video}#0", "clip.mp4, 00:00", jpeg("red")),
            (f"{video}#1", "clip.mp4, 00:05", jpeg("blue")),
        ],
    )

    markdown, images = opened(history.build())

    # flat colours: prepared as PNG
    assert list(images) == ["images/001-clip_mp4_00_00.png", "images/002-clip_mp4_00_05.png"]
    assert "📎 clip.mp4 — the 2 image(s) the model saw of it:" in markdown
    assert "![clip.mp4, 00:05](images/002-clip_mp4_00_05.png)" in markdown


def test_a_missing_original_falls_back_to_the_prepared_copy_else_is_named(history, tmp_path):
    question = history.step("user_message", "Two photos")
    first = history.upload(question, "kept.jpg", jpeg("red"))
    second = history.upload(question, "lost.jpg", jpeg("blue"))
    history.prepare(question, [(first, None, jpeg("green")), (second, None, jpeg("green"))])
    for element in history.thread["elements"]:
        (history.files / element["objectKey"]).unlink()
    history.store.kept_files("t1", question)[1][1].unlink()  # the second's copy too

    markdown, images = opened(history.build())

    assert list(images) == [
        "images/001-kept.png"
    ]  # the copy's own type: flat colours are prepared as PNG
    assert (
        Image.open(io.BytesIO(images["images/001-kept.png"])).getpixel((5, 5))[1] > 100
    )  # the green copy
    assert "*lost.jpg: not kept in the history*" in markdown


def test_a_chat_past_the_cap_leaves_out_the_later_images_and_says_so(history):
    question = history.step("user_message", "Big photos")
    elements = [history.upload(question, f"big{n}.jpg", big_file(300_000)) for n in range(4)]
    history.prepare(question, [(element, None, jpeg()) for element in elements])
    history.step("assistant_message", "Four photos.", kind="answer")
    cap = 1024 * 1024  # room for three of them

    download = history.build(max_bytes=cap)
    markdown, images = opened(download)

    assert download.path.stat().st_size <= cap
    assert list(images) == ["images/001-big0.jpg", "images/002-big1.jpg", "images/003-big2.jpg"]
    assert (download.images, download.left_out) == (3, 1)
    assert "*big3.jpg: left out, a download holds at most 1 MB*" in markdown
    assert "Four photos." in markdown


def test_a_chat_whose_text_alone_is_past_the_cap_is_refused(history):
    history.step("user_message", "x" * 2_000_000)
    with pytest.raises(RequestRefused) as refused:
        history.build(max_bytes=1024 * 1024)
    assert refused.value.key == "error.download_too_big"


def test_an_upload_the_model_never_saw_is_only_named(history):
    question = history.step("user_message", "What is this?")
    history.upload(question, "notes.png", b"<html>not an image</html>")  # refused: nothing prepared
    markdown, images = opened(history.build())
    assert not images and "📎 notes.png (not sent to the model)" in markdown


def test_the_download_request_and_its_reply_are_left_out(history):
    history.step("user_message", "Hello")
    history.step("assistant_message", "Hi.", kind="answer")
    marked = history.step("user_message", "", kind="download")
    history.step("assistant_message", "📦 Your chat as a zip", kind="download")
    unmarked = history.step(
        "user_message", ""
    )  # this download's request, not yet marked in the database

    markdown, _ = opened(history.build(skip=frozenset({unmarked})))

    assert markdown.count("## Question") == 1 and "📦" not in markdown
    assert marked and not has_questions({"steps": [history.thread["steps"][2]]})


class Layer:
    def __init__(self, threads: dict[str, dict]) -> None:
        self.threads = threads

    async def get_thread_author(self, thread_id: str) -> str:
        if thread_id not in self.threads:
            raise ValueError(thread_id)
        return self.threads[thread_id]["userIdentifier"]

    async def get_thread(self, thread_id: str):
        return self.threads.get(thread_id)


@pytest.mark.parametrize(
    ("thread_id", "user"), [("t1", "bob"), ("nope", "alice"), (None, "alice"), ("t1", None)]
)
async def test_only_the_owner_gets_the_thread(thread_id, user):
    layer = Layer({"t1": {"id": "t1", "userIdentifier": "alice", "steps": []}})
    assert (await owned_thread(layer, "t1", "alice"))["id"] == "t1"
    with pytest.raises(RequestRefused) as refused:
        await owned_thread(layer, thread_id, user)
    assert refused.value.key == "error.download_unavailable"
