"""The Chainlit callbacks, in a Chainlit context, against the fake vLLM server."""

from __future__ import annotations

import asyncio
import shutil

import chainlit as cl
import chainlit.auth
import httpx
import pytest
from chainlit.auth import create_jwt
from chainlit.server import app as chainlit_server
from fastapi import HTTPException

import chainlit_app
from handlers.core.i18n import translate
from handlers.core.prompts import preset_instruction, system_prompt
from tests.app_helpers import asked_text, photo, sent_images, sent_text, settle, streaming
from tests.chainlit_harness import ChatHarness
from tests.waiting import eventually


async def test_an_uploaded_photo_is_answered(chat, app, tmp_path):
    await chat.send("What is this?", [photo(tmp_path, "IMG_0001.jpg", size=(4000, 3000))])
    assert chat.last_text() == app.reply
    (image,) = sent_images(app.requests[-1])
    assert image.size == (1000, 750)  # its ¼ scale, 2.3 % short of 1024 px
    first = app.requests[-1]["messages"][0]
    assert first["role"] == "user" and first["content"][0]["text"] == system_prompt(
        "auto", "English"
    )


async def test_a_follow_up_still_sends_the_photo_and_the_answer(chat, app, tmp_path):
    await chat.send("What is this?", [photo(tmp_path, "a.jpg")])
    await chat.send("What colour is it?")
    follow_up = app.requests[-1]
    assert len(sent_images(follow_up)) == 1
    assert [m["role"] for m in follow_up["messages"]] == ["user", "assistant", "user"]
    assert follow_up["messages"][1]["content"] == app.reply


async def test_images_beyond_the_budget_become_placeholders_and_the_person_is_told(
    chat, app, tmp_path
):
    await chat.send("first", [photo(tmp_path, "one.jpg"), photo(tmp_path, "two.jpg")])
    await chat.send("second", [photo(tmp_path, "three.jpg"), photo(tmp_path, "four.jpg")])
    await chat.send("third", [photo(tmp_path, "five.jpg")])
    request = app.requests[-1]
    assert len(sent_images(request)) == 2  # hidden in one step, down to half the limit of 4
    assert "[earlier image: one.jpg]" in sent_text(request)
    assert "[earlier image: three.jpg]" in sent_text(request)
    assert "[earlier image: four.jpg]" not in sent_text(request)
    assert any(
        "one.jpg" in text and "three.jpg" in text and "out of" in text for text in chat.texts()
    )


async def test_more_images_than_allowed_in_one_message(chat, app, tmp_path):
    files = [photo(tmp_path, f"p{n}.jpg", size=(300, 200)) for n in range(6)]
    await chat.send("compare", files)
    assert len(sent_images(app.requests[-1])) == 4
    warning = next(t for t in chat.texts() if "p4.jpg" in t)
    assert "p5.jpg" in warning and "4" in warning
    assert chat.last_text() == app.reply


async def test_a_fake_png_is_refused_and_the_rest_is_answered(chat, app, tmp_path):
    fake = tmp_path / "screenshot.png"
    fake.write_text("<html><body>not an image</body></html>")
    await chat.send("What do these show?", [fake, photo(tmp_path, "real.jpg")])
    assert any("screenshot.png" in text for text in chat.texts())
    assert len(sent_images(app.requests[-1])) == 1
    assert chat.last_text() == app.reply


async def test_only_a_bad_file_sends_nothing_to_the_server(chat, app, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    await chat.send("", [empty])
    assert app.requests == []
    assert len(chat.texts()) == 1 and "empty.jpg" in chat.texts()[0]


async def test_images_alone_are_described(chat, app, tmp_path):
    """On the user turn itself: the system prompt quotes the same preset's words."""
    await chat.send("", [photo(tmp_path, "holiday.jpg")])
    assert asked_text(app.requests[-1]) == preset_instruction("describe")


async def test_a_preset_command_shapes_the_question(chat, app, tmp_path):
    await chat.send("only the cars", [photo(tmp_path, "street.jpg")], command="count")
    text = sent_text(app.requests[-1])
    assert "Answer with JSON only" in text and "only the cars" in text


async def test_a_preset_with_no_image_asks_for_one(chat, app):
    await chat.send("", command="read")
    assert app.requests == []
    assert chat.last_text().endswith(translate("notice.awaiting.read", "en-US"))


async def test_old_turns_are_dropped_to_fit_the_context(app, start_app, tmp_path):
    await start_app(MAX_MODEL_LEN="12000", MAX_TOKENS="500")
    chat = ChatHarness()
    await chat.start()
    for n in range(4):
        await chat.send(f"photo {n}", [photo(tmp_path, f"big{n}.jpg", size=(2048, 2048))])
    request = app.requests[-1]
    assert len(sent_images(request)) == 2  # 2 × 4160 tokens fit in 11500, 3 do not
    assert "photo 3" in sent_text(request) and "photo 0" not in sent_text(request)
    assert any("oldest" in text for text in chat.texts())


async def test_editing_a_message_cuts_history_back(chat, app, tmp_path):
    first = await chat.send("What is this?", [photo(tmp_path, "cat.jpg")])
    await chat.send("Is it a cat?")
    first.content = "How many animals are there?"
    await chat.resend(first)
    request = app.requests[-1]
    assert [m["role"] for m in request["messages"]] == ["user"]
    assert "How many animals" in sent_text(request) and "Is it a cat" not in sent_text(request)
    assert len(sent_images(request)) == 1


async def test_stop_keeps_the_partial_answer_and_the_chat_goes_on(chat, app, tmp_path):
    app.token_delay = 0.05
    app.reply = "word " * 200
    task = asyncio.create_task(chat.send("Tell me everything", [photo(tmp_path, "x.jpg")]))
    await eventually(lambda: streaming(chat), "the answer is streaming")
    task.cancel()  # what Chainlit's stop button does to the running task
    with pytest.raises(asyncio.CancelledError):
        await task
    partial = chat.last_text()
    assert partial.startswith("word") and len(partial) < len(app.reply)
    await eventually(lambda: app.streams_aborted, "the fake counts the aborted stream")
    assert app.streams_aborted == 1 and app.open_streams == 0
    app.token_delay, app.reply = 0.0, "Done."
    await chat.send("Go on")
    assert chat.last_text() == "Done."
    history = app.requests[-1]["messages"]
    assert history[1]["role"] == "assistant" and history[1]["content"] == partial


async def test_server_down_is_said_and_recovers_without_restart(chat, app):
    app.go_down()
    await chat.send("hello")
    assert chat.last_text() == translate("error.model_unreachable", "en-US")
    app.come_up()
    await chat.send("hello again")
    assert chat.last_text() == app.reply


async def test_a_wrong_api_key_is_explained(chat, app):
    app.api_key = "the-real-key"
    await chat.send("hello")
    assert "VLLM_API_KEY" in chat.last_text()
    assert chat.visible_messages()[-1]["isError"]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        # vLLM 0.32's own words (tests/real/test_contract.py checks them against the real server)
        (
            "At most 4 image(s) may be provided in one prompt. (parameter=image)",
            "MAX_IMAGES_PER_REQUEST",
        ),
        (
            "This model's maximum context length is 65536 tokens. However, your prompt contains 70000 "
            "input tokens, which exceeds this limit even without any output tokens. Please reduce the "
            "length of the input prompt. (parameter=input_tokens, value=70000)",
            "MAX_MODEL_LEN",
        ),
        ("Failed to load image: cannot identify image file", "different image"),
    ],
)
async def test_vllm_400s_say_what_to_do(chat, app, tmp_path, message, expected):
    app.fail_next(400, message=message)
    await chat.send("look", [photo(tmp_path, "a.jpg")])
    assert expected in chat.last_text()
    await chat.send("and now?")  # the refused message was not kept: the chat goes on
    assert chat.last_text() == app.reply and len(sent_images(app.requests[-1])) == 0


async def test_server_errors_are_reported(chat, app):
    app.fail_next(500)
    await chat.send("hello")
    assert "500" in chat.last_text()


async def test_a_timeout_is_reported(app, start_app):
    await start_app(VLLM_TIMEOUT="0.3")
    chat = ChatHarness()
    await chat.start()
    app.ttft = 1.0
    await chat.send("hello")
    assert "did not answer in time" in chat.last_text()


async def test_a_dropped_stream_keeps_the_partial_answer_with_a_note(chat, app):
    app.drop_after(3)
    await chat.send("hello")
    shown = chat.last_text()
    assert shown.startswith("".join(app.reply.split(" ")[:1]))
    assert "connection to the model server" in shown


async def test_the_in_stream_error_event_keeps_the_partial_answer(chat, app):
    app.error_event_after(2, message="CUDA out of memory")
    await chat.send("hello")
    assert "CUDA out of memory" in chat.last_text()


async def test_messages_follow_the_browser_language(app, tmp_path):
    chat = ChatHarness(language="zh-CN")
    await chat.start()
    commands = next(data for event, data in chat.events if event == "set_commands")
    assert any(c["id"] == "count" and "数量" in c["description"] for c in commands)
    app.go_down()
    await chat.send("这是什么？")
    assert "无法连接模型服务器" in chat.last_text()
    app.come_up()


async def test_the_answer_language_setting_reaches_the_model(chat, app):
    chat.enter()
    await chainlit_app.on_settings_update({"answer_language": "zh"})
    await chat.send("What is this?")
    assert "Simplified Chinese" in app.requests[-1]["messages"][0]["content"][0]["text"]


async def test_a_new_chat_frees_the_conversation_at_once(chat, app, tmp_path):
    await chat.send("hi", [photo(tmp_path, "a.jpg")])
    assert len(chainlit_app._chats) == 1
    chat.enter()
    chat.session.to_clear = True  # what the "new chat" button makes Chainlit do
    await chainlit_app.on_chat_end()
    assert len(chainlit_app._chats) == 0


async def test_a_disconnect_stops_generation_and_memory_is_freed_after_the_grace(
    chat, app, tmp_path, monkeypatch
):
    monkeypatch.setattr(chainlit_app._chats, "grace_seconds", 0.5)
    app.token_delay = 0.05
    app.reply = "word " * 200
    task = asyncio.create_task(chat.send("Tell me everything", [photo(tmp_path, "x.jpg")]))
    chat.session.current_task = task  # as Chainlit's socket handler does
    await eventually(lambda: streaming(chat), "the answer is streaming")
    chat.enter()
    await chainlit_app.on_chat_end()  # the browser tab was closed
    assert len(chainlit_app._chats) == 1  # kept while the browser may reconnect
    assert chainlit_app._chats.forget_pending(chat.session.id)
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: app.streams_aborted, "the fake counts the aborted stream")
    assert app.streams_aborted == 1 and app.open_streams == 0
    await eventually(lambda: not len(chainlit_app._chats), "the grace is over and the chat freed")
    assert not chainlit_app._chats.forget_pending(chat.session.id)


async def test_a_reconnect_within_the_grace_keeps_the_conversation(chat, app, tmp_path):
    """With the default grace (a minute) the reconnect surely comes within it; the
    registry shows the forget was scheduled, then called off, with no time to wait out."""
    await chat.send("What is this?", [photo(tmp_path, "a.jpg")])
    chat.enter()
    await chainlit_app.on_chat_end()
    assert chainlit_app._chats.forget_pending(chat.session.id)
    await chat.send("And the colour?")  # the same session, back before the grace ran out
    assert not chainlit_app._chats.forget_pending(chat.session.id)
    assert len(chainlit_app._chats) == 1
    await chat.send("Anything else?")
    assert len(sent_images(app.requests[-1])) == 1


async def signed_in(name: str):
    return await chainlit_app.services().data_layer.create_user(cl.User(identifier=name))


async def test_a_resumed_chat_still_sends_its_photo_after_a_restart(app, start_app, tmp_path):
    alice = await signed_in("alice")
    chat = ChatHarness(user=alice)
    await chat.start()
    await chat.send("What is this?", [photo(tmp_path, "receipt.jpg", size=(3000, 2000))])
    await chat.send("Thanks")
    await settle()
    thread_id = chat.session.thread_id

    await start_app()
    thread = await chainlit_app.services().data_layer.get_thread(thread_id)
    assert thread["userIdentifier"] == "alice"
    resumed = ChatHarness(user=alice, thread_id=thread_id)
    await resumed.resume(thread)
    await resumed.send("What was the total on it?")

    request = app.requests[-1]
    assert len(sent_images(request)) == 1 and max(sent_images(request)[0].size) == 1024
    roles = [m["role"] for m in request["messages"]]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    assert "What is this?" in sent_text(request)


async def test_resume_falls_back_to_the_original_upload(app, start_app, tmp_path):
    alice = await signed_in("alice")
    chat = ChatHarness(user=alice)
    await chat.start()
    first = await chat.send("What is this?", [photo(tmp_path, "a.jpg")])
    await settle()
    shutil.rmtree(tmp_path / "data" / "prepared")  # e.g. history from before prepared copies

    await start_app()
    thread = await chainlit_app.services().data_layer.get_thread(chat.session.thread_id)
    resumed = ChatHarness(user=alice, thread_id=chat.session.thread_id)
    await resumed.resume(thread)
    await resumed.send("And now?")
    assert len(sent_images(app.requests[-1])) == 1
    kept = chainlit_app.services().store.load(chat.session.thread_id, first.id)
    assert kept is not None and len(kept[1]) == 1  # the next resume reads it back, unprepared


async def test_notices_and_errors_are_not_replayed_to_the_model_on_resume(app, start_app, tmp_path):
    alice = await signed_in("alice")
    chat = ChatHarness(user=alice)
    await chat.start()
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    await chat.send("What is this?", [bad, photo(tmp_path, "a.jpg")])
    app.fail_next(500)
    await chat.send("Again?")
    await settle()

    await start_app()
    thread = await chainlit_app.services().data_layer.get_thread(chat.session.thread_id)
    resumed = ChatHarness(user=alice, thread_id=chat.session.thread_id)
    await resumed.resume(thread)
    await resumed.send("Go on")
    assistant_turns = [
        m["content"] for m in app.requests[-1]["messages"] if m["role"] == "assistant"
    ]
    assert assistant_turns == [app.reply]


async def test_password_sign_in_checks_the_users_table(app):
    await chainlit_app.services().users.add("carol", "a long enough password")
    user = await chainlit_app.password_login("carol", "a long enough password")
    assert user is not None and user.identifier == "carol"
    assert await chainlit_app.password_login("carol", "wrong password") is None
    assert await chainlit_app.password_login("nobody", "a long enough password") is None


async def test_removing_a_person_ends_their_sessions_at_once(start_app, monkeypatch):
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "revocation-test-secret-" + "x" * 20)
    await start_app()
    users = chainlit_app.services().users
    await users.add("bob", "a long enough password")
    header_token = create_jwt(cl.User(identifier="carol", metadata={"provider": "header"}))
    transport = httpx.ASGITransport(app=chainlit_server)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        login = await client.post(
            "/login", data={"username": "bob", "password": "a long enough password"}
        )
        assert login.status_code == 200, login.text
        token = client.cookies["access_token"]
        assert (await client.get("/user")).status_code == 200
        assert (
            await chainlit.auth.get_current_user(token)
        ).identifier == "bob"  # as socket.io checks

        await users.remove("bob")
        assert (await client.get("/user")).status_code == 401
        with pytest.raises(HTTPException) as refused:
            await chainlit.auth.get_current_user(token)
        assert refused.value.status_code == 401
        # Signed in by a trusted proxy: not the app's to revoke.
        client.cookies.clear()
        carol = await client.get("/user", headers={"Authorization": f"Bearer {header_token}"})
        assert carol.status_code == 200


async def test_a_tab_still_open_after_the_removal_cannot_chat(
    start_app, fake_vllm, monkeypatch, tmp_path
):
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "revocation-test-secret-" + "x" * 20)
    await start_app()
    users = chainlit_app.services().users
    await users.add("bob", "a long enough password")
    bob = chainlit_app.sign_in.password_user("bob")
    tab = ChatHarness(user=bob)
    tab.session.token = create_jwt(bob)  # as Chainlit's socket connection keeps it
    await tab.start()
    await tab.send("Hello?")
    assert tab.last_text() == fake_vllm.reply

    await users.remove("bob")
    refused = await tab.send("Still there?", [photo(tmp_path, "a.jpg")])
    assert tab.last_text() == translate("error.signed_out", "en-US")
    assert len(fake_vllm.requests) == 1
    assert chainlit_app.services().store.load(tab.session.thread_id, refused.id) is None


async def test_prepared_images_that_cannot_be_kept_still_get_their_answer(
    app, start_app, tmp_path, monkeypatch, caplog
):
    chat = ChatHarness(user=await signed_in("alice"))
    await chat.start()
    store = chainlit_app.services().store
    unwritable = tmp_path / "not-a-folder"
    unwritable.write_bytes(b"")
    monkeypatch.setattr(store, "root", unwritable)  # every write under it fails
    first = await chat.send("What is this?", [photo(tmp_path, "a.jpg")])
    assert chat.last_text() == app.reply
    assert store.load(chat.session.thread_id, first.id) is None  # a resume prepares it again
    assert "could not keep the prepared images" in caplog.text


async def test_trusted_header_sign_in_is_off_unless_configured(start_app, monkeypatch):
    from chainlit.config import config

    monkeypatch.setattr(config.code, "header_auth_callback", None)
    await start_app()
    assert config.code.header_auth_callback is None
    secret = "proxy-secret-" + "x" * 32
    await start_app(AUTH_TRUSTED_HEADER="X-Forwarded-User", AUTH_PROXY_SECRET=secret)
    assert config.code.header_auth_callback is not None
    user = await chainlit_app._header_login(
        {"X-Forwarded-User": "dave", "X-Auth-Proxy-Secret": secret}
    )
    assert user is not None and user.identifier == "dave"
    assert await chainlit_app._header_login({"X-Auth-Proxy-Secret": secret}) is None


async def test_an_unexpected_failure_is_logged_and_apologised_for(chat, app, monkeypatch, caplog):
    async def broken(*args, **kwargs):
        raise RuntimeError("internal detail that must not reach the person")
        yield  # an async generator, like the real one

    monkeypatch.setattr(chainlit_app.services().assistant, "respond", broken)
    await chat.send("hello")
    assert "internal detail" not in chat.last_text()
    assert "Something went wrong on our side" in chat.last_text()
    assert "internal detail" in caplog.text
