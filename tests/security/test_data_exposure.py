"""Attacks on what the app leaves behind or lets slip: credentials in error
messages, a deleted chat's images on disk, files other local users can read.

Performed through the app's own interfaces: the chat (tests/chainlit_harness.py)
against the fake vLLM server on loopback, and Chainlit's HTTP routes.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from handlers.core.i18n import translate

PASSWORD = "s3cret-pass"
ROOT = Path(__file__).resolve().parents[2]


def with_credentials(base_url: str) -> str:
    parts = urlsplit(base_url)
    return parts._replace(netloc=f"vllm-user:{PASSWORD}@{parts.netloc}").geturl()


async def test_a_colleague_reading_an_error_learns_nothing_of_the_servers_url(start_app, fake_vllm):
    from tests.chainlit_harness import ChatHarness

    await start_app(VLLM_BASE_URL=with_credentials(fake_vllm.base_url))
    chat = ChatHarness()
    await chat.start()
    fake_vllm.go_down()
    await chat.send("hello")
    shown = chat.last_text()
    assert shown == translate("error.model_unreachable", "en-US")
    assert PASSWORD not in shown and "127.0.0.1" not in shown


def test_another_local_account_cannot_read_the_env_file_setup_writes(tmp_path):
    """scripts/setup.sh run for real in a copy of the project, with a stand-in
    .venv whose pip does nothing (no network, no install)."""
    for name in ("scripts/setup.sh", ".env.example", "requirements.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    python = tmp_path / ".venv/bin/python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\n[ "$1" = "-m" ] && exit 0\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    run = functools.partial(
        subprocess.run,
        ["bash", "scripts/setup.sh"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        env={"PATH": os.environ["PATH"]},
    )
    run(preexec_fn=lambda: os.umask(0o022))
    env = tmp_path / ".env"
    assert "CHAINLIT_AUTH_SECRET=" in env.read_text()
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    env.chmod(0o644)  # an install from before: setup (start.sh runs it) tightens it
    run()
    assert stat.S_IMODE(env.stat().st_mode) == 0o600


async def test_another_local_account_cannot_read_the_chat_database_or_data_dir(start_app, tmp_path):
    from tests.chainlit_harness import ChatHarness

    data = tmp_path / "data"
    data.mkdir(mode=0o755)  # as an older install, or a umask of 022, left it
    old_umask = os.umask(0o022)
    try:
        await start_app(DATA_DIR=str(data))
        chat = ChatHarness()
        await chat.start()
        await chat.send("hello")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    databases = list(data.glob("chat.db*"))
    assert databases and {stat.S_IMODE(f.stat().st_mode) for f in databases} == {0o600}


async def test_a_deleted_chat_leaves_no_prepared_images_on_disk(start_app, monkeypatch, tmp_path):
    import chainlit as cl
    import httpx
    from chainlit.auth import create_jwt
    from chainlit.server import app as chainlit_server

    import chainlit_app
    from tests.app_helpers import photo, settle
    from tests.chainlit_harness import ChatHarness

    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "deleted-chat-test-secret-" + "x" * 20)
    await start_app()
    await chainlit_app.services().users.add("alice", "alice's own password")
    alice = await chainlit_app.services().data_layer.create_user(cl.User(identifier="alice"))
    chat = ChatHarness(user=alice)
    await chat.start()
    await chat.send("What is this?", [photo(tmp_path, "passport.jpg")])
    await settle()
    prepared = tmp_path / "data" / "prepared"
    assert [p for p in prepared.rglob("*") if p.is_file()], list(
        tmp_path.rglob("*")
    )  # kept for a resume

    token = create_jwt(
        cl.User(identifier="alice", metadata={"provider": "password", "signed_in_at": time.time()})
    )
    transport = httpx.ASGITransport(app=chainlit_server)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        response = await client.request(
            "DELETE",
            "/project/thread",
            json={"threadId": chat.session.thread_id},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 200, response.text
    assert list(prepared.rglob("*")) == []


async def test_a_download_asked_in_another_persons_thread_gets_nothing_of_it(
    live_app, tabs, fake_vllm
) -> None:
    """The page names its thread when it connects: Mallory names Alice's to ask for
    `/download` there. Chainlit refuses the connection; in a new chat of her own
    (not saved yet), `/download` refuses too, and gives nothing of Alice's."""
    import socketio

    thread_id = str(uuid.uuid4())
    alice = await tabs("alice", thread_id=thread_id)
    asked = await alice.send("My salary slip says 4321.")
    await alice.answered(asked)
    await live_app.rows(
        'SELECT id FROM threads WHERE id = :id AND "userIdentifier" = :who',
        id=thread_id,
        who="alice",
    )

    with pytest.raises(socketio.exceptions.ConnectionError):
        await tabs("mallory", thread_id=thread_id)
    mallory = await tabs("mallory")
    request = await mallory.send("", command="download")
    await mallory.answered(request)
    assert translate("error.download_unavailable", "en-US") in mallory.said()
    seen = repr(mallory.events)
    assert "4321" not in seen and ".zip" not in seen
