"""`/download` through the app's callbacks: a live chat, a resumed one, someone else's."""

from __future__ import annotations

import os
import zipfile

import chainlit as cl
from PIL import Image

import chainlit_app
from handlers.core.i18n import translate
from tests.app_helpers import photo, settle
from tests.chainlit_harness import ChatHarness


async def signed_in(name: str):
    return await chainlit_app.services().data_layer.create_user(cl.User(identifier=name))


async def download(chat: ChatHarness) -> tuple[str, dict[str, bytes]]:
    """Ask for the download; chat.md and the images in the zip it was sent."""
    await chat.send("", command="download")
    await settle()
    sent = [
        data for event, data in chat.events if event == "element" and data["name"].endswith(".zip")
    ]
    assert len(sent) == 1, chat.texts()
    stored = chat.session.files[sent[0]["chainlitKey"]]
    with zipfile.ZipFile(stored["path"]) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    return files.pop("chat.md").decode("utf-8"), files


async def test_a_live_chat_downloads_with_its_photo(app, tmp_path):
    alice = await signed_in("alice")
    chat = ChatHarness(user=alice)
    await chat.start()
    upload = photo(tmp_path, "receipt.jpg", size=(3000, 2000))
    await chat.send("What is on it?", [upload])
    await settle()

    markdown, images = await download(chat)

    assert list(images) == ["images/001-receipt.jpg"]
    assert (
        images["images/001-receipt.jpg"] == upload.read_bytes()
    )  # the original, not the copy sent
    assert "What is on it?" in markdown and app.reply in markdown
    assert "![receipt.jpg](images/001-receipt.jpg)" in markdown
    assert chat.last_text() == translate("download.ready", "en-US", images=1)
    assert len(app.requests) == 1  # the download asked nothing of the model


async def test_the_download_command_is_offered_in_the_persons_language(app):
    chat = ChatHarness("zh-CN")
    await chat.start()
    commands = [data for event, data in chat.events if event == "set_commands"][-1]
    offered = {command["id"]: command["description"] for command in commands}
    assert offered["download"] == translate("download.command", "zh-CN")


async def test_a_resumed_chat_downloads_and_the_request_is_not_a_question(app, start_app, tmp_path):
    alice = await signed_in("alice")
    chat = ChatHarness(user=alice)
    await chat.start()
    await chat.send("这是什么？", [photo(tmp_path, "猫.jpg")])
    await download(chat)
    thread_id = chat.session.thread_id

    await start_app()
    thread = await chainlit_app.services().data_layer.get_thread(thread_id)
    resumed = ChatHarness("zh-CN", user=alice, thread_id=thread_id)
    await resumed.resume(thread)
    await resumed.send("还有呢？")
    await settle()
    roles = [m["role"] for m in app.requests[-1]["messages"]]
    assert roles == ["user", "assistant", "user"]  # the earlier /download is not replayed

    markdown, images = await download(resumed)
    assert list(images) == ["images/001-猫.jpg"]
    assert markdown.count("## 提问") == 2 and "这是什么？" in markdown and "还有呢？" in markdown
    assert translate("download.ready", "zh-CN", images=1) not in markdown  # nor the first download


async def test_someone_elses_chat_is_not_downloaded(app, tmp_path):
    alice, bob = await signed_in("alice"), await signed_in("bob")
    chat = ChatHarness(user=alice)
    await chat.start()
    await chat.send("Secret plan", [photo(tmp_path, "plan.jpg")])
    await settle()

    # Chainlit refuses a socket naming another's thread; were one to get through
    # (its first message not yet stored), the download still checks the owner.
    intruder = ChatHarness(user=bob, thread_id=chat.session.thread_id)
    await intruder.start()
    await chainlit_app.on_message(intruder.message("", command="download"))
    await settle()

    assert not [data for event, data in intruder.events if event == "element"]
    assert intruder.last_text() == translate("error.download_unavailable", "en-US")


async def test_nothing_to_download_yet_is_said(app):
    alice = await signed_in("alice")
    chat = ChatHarness(user=alice)
    await chat.start()
    await chat.send("", command="download")
    await settle()
    assert chat.last_text() == "ℹ️ " + translate("download.nothing", "en-US")


async def test_a_chat_past_the_download_cap_comes_without_its_later_images_and_says_so(
    start_app, tmp_path
):
    await start_app(MAX_DOWNLOAD_MB="1")
    alice = await signed_in("alice")
    chat = ChatHarness(user=alice)
    await chat.start()
    noisy = tmp_path / "noisy.jpg"
    Image.frombytes("RGB", (1000, 1000), os.urandom(3_000_000)).save(noisy, "JPEG", quality=95)
    assert noisy.stat().st_size > 1024 * 1024
    await chat.send("What is this?", [noisy])
    await settle()

    markdown, images = await download(chat)

    assert not images and "noisy.jpg" in markdown
    assert chat.last_text() == translate(
        "download.ready_left_out", "en-US", images=0, left_out=1, limit=1
    )
