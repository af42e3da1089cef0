"""The empty chat: the app's own logo and favicon, the starters, and a task chosen
before any image is attached (a starter click, or a `/` command alone)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import chainlit as cl
import httpx
from chainlit.auth import create_jwt
from chainlit.server import app as chainlit_server

from handlers.chat.welcome import STARTER_TASKS, starters
from handlers.core.i18n import translate
from handlers.core.prompts import preset_instruction
from tests.app_helpers import photo, sent_images, sent_text
from tests.chainlit_harness import ChatHarness

PUBLIC = Path(__file__).resolve().parent.parent / "public"


def _question(request: dict) -> str:
    """The text of the newest message in a recorded request: the question just asked."""
    content = request["messages"][-1]["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


async def _get(path: str, *, signed_in: bool = False) -> httpx.Response:
    cookies = {"access_token": create_jwt(cl.User(identifier="alice"))} if signed_in else {}
    transport = httpx.ASGITransport(app=chainlit_server)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://app", cookies=cookies
    ) as client:
        return await client.get(path)


async def test_the_logo_and_favicon_are_the_apps_own(app):
    for theme in ("light", "dark"):
        logo = await _get(f"/logo?theme={theme}")
        assert logo.status_code == 200 and logo.headers["content-type"].startswith("image/svg")
        assert logo.content == (PUBLIC / f"logo_{theme}.svg").read_bytes()
    assert (await _get("/logo?theme=light")).content != (await _get("/logo?theme=dark")).content
    favicon = await _get("/favicon")
    assert favicon.content == (PUBLIC / "favicon.svg").read_bytes()


async def test_the_page_title_is_the_apps_name(app):
    page = await _get("/")
    assert "<title>Visual Assistant</title>" in page.text
    assert "chainlit_banner" not in page.text  # the link preview shows our mark


async def test_the_settings_carry_five_starters_in_the_browsers_language(app, monkeypatch):
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "welcome-test-secret-" + "x" * 20)
    for language, label in (
        ("en-US", "Describe a photo"),
        ("zh-CN", "描述照片"),
        ("zh-TW", "描述照片"),
        ("fr-FR", "Describe a photo"),
    ):
        settings = (await _get(f"/project/settings?language={language}", signed_in=True)).json()
        shown = settings["starters"]
        assert [s["command"] for s in shown] == list(STARTER_TASKS)
        assert shown[0]["label"] == label
        assert all(s["icon"] == f"/public/icons/{s['command']}.svg" for s in shown)
    for task in STARTER_TASKS:
        assert (await _get(f"/public/icons/{task}.svg")).status_code == 200


def test_every_starter_has_its_own_text_in_both_languages():
    for language in ("en-US", "zh-CN"):
        shown = starters(language)
        assert len({s.label for s in shown}) == len({s.message for s in shown}) == 5
        assert not any(s.label.startswith("starter.") for s in shown)
    assert starters("zh-CN")[0].label != starters("en-US")[0].label


async def test_a_starter_with_no_image_asks_for_one_then_the_images_get_its_preset(
    chat, app, tmp_path
):
    await chat.send("Count the objects in my image", command="count")
    assert app.requests == []
    assert chat.last_text().endswith(translate("notice.awaiting.count", "en-US"))

    await chat.send("", [photo(tmp_path, "shelf.jpg")])  # no command, no words
    text = sent_text(app.requests[-1])
    assert preset_instruction("count") in text
    assert len(sent_images(app.requests[-1])) == 1
    assert app.requests[-1]["response_format"]["type"] == "json_schema"  # the count's own path
    assert "| **Total** |" in chat.last_text()


async def test_the_awaited_task_is_used_once(chat, app, tmp_path):
    await chat.send("", command="read")
    await chat.send("what does it say?", [photo(tmp_path, "sign.jpg")])
    assert preset_instruction("read") in sent_text(app.requests[-1])
    await chat.send("and this one?", [photo(tmp_path, "other.jpg")])
    assert preset_instruction("read") not in _question(app.requests[-1])


async def test_a_text_question_in_between_keeps_the_task_waiting(chat, app, tmp_path):
    await chat.send("", command="compare")
    await chat.send("What can you do?")
    assert preset_instruction("compare") not in sent_text(app.requests[-1])
    await chat.send("", [photo(tmp_path, "a.jpg"), photo(tmp_path, "b.jpg", colour="blue")])
    assert preset_instruction("compare") in _question(app.requests[-1])


async def test_another_task_chosen_replaces_the_awaited_one(chat, app, tmp_path):
    await chat.send("", command="count")
    await chat.send("", command="describe")
    assert chat.last_text().endswith(translate("notice.awaiting.describe", "en-US"))
    await chat.send("", [photo(tmp_path, "room.jpg")])
    text = sent_text(app.requests[-1])
    assert preset_instruction("describe") in text and preset_instruction("count") not in text


async def test_a_chinese_starter_asks_in_chinese(app):
    chat = ChatHarness("zh-CN")
    await chat.start()
    await chat.send("请识别图片中的文字", command="read")
    assert chat.last_text().endswith(translate("notice.awaiting.read", "zh-CN"))
    assert "拖放" in chat.last_text()


def test_the_committed_logo_files_are_what_the_script_draws(tmp_path, monkeypatch):
    """public/'s logo, favicon, icons and theme come from scripts/draw_logo.py: an edit by
    hand would be lost the next time someone runs it."""
    spec = importlib.util.spec_from_file_location(
        "draw_logo", PUBLIC.parent / "scripts" / "draw_logo.py"
    )
    draw_logo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(draw_logo)
    monkeypatch.setattr(draw_logo, "PUBLIC", tmp_path)
    draw_logo.main()
    drawn = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert drawn  # the script wrote something
    for name in drawn:
        assert (tmp_path / name).read_bytes() == (PUBLIC / name).read_bytes(), name
