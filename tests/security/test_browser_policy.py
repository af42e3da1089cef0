"""A page on another origin uses the person's cookie; an answer tries to make the browser fetch.

Through the app served on a loopback port (tests/security/conftest.py): the
requests carry the headers a browser adds (`Origin`, the cookie); what the
browser would then allow is decided by the headers the app answers with.
The browser itself refusing a remote image is tests/e2e/test_csp.py.
"""

from __future__ import annotations

import base64
import hashlib
import re

import aiohttp
import pytest
import socketio

from tests.security.conftest import Tab, cookie_for

EVIL = "http://evil.example"


async def test_a_page_elsewhere_cannot_read_the_persons_data(live_app) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.options(
            f"{live_app.base_url}/user",
            headers={
                "Origin": EVIL,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "content-type",
            },
        ) as preflight:
            assert "access-control-allow-origin" not in preflight.headers
        async with http.get(
            f"{live_app.base_url}/user", headers={"Origin": EVIL, "Cookie": cookie_for("alice")}
        ) as read:
            assert read.status == 200  # the browser is what refuses the page its answer:
            assert "access-control-allow-origin" not in read.headers


@pytest.mark.app_env(ALLOWED_ORIGINS="http://portal.example")
async def test_only_an_allowed_origin_gets_cors_answers(live_app) -> None:
    async with aiohttp.ClientSession() as http:
        for origin, allowed in (("http://portal.example", True), (EVIL, False)):
            async with http.get(
                f"{live_app.base_url}/user",
                headers={"Origin": origin, "Cookie": cookie_for("alice")},
            ) as read:
                assert (read.headers.get("access-control-allow-origin") == origin) is allowed


async def test_a_page_elsewhere_cannot_open_the_chat_socket(live_app) -> None:
    stranger = Tab(live_app, "alice")
    try:
        with pytest.raises(socketio.exceptions.ConnectionError):
            await stranger.connect(origin=EVIL)
    finally:
        await stranger.close()
    own = Tab(live_app, "alice")
    try:
        await own.connect(origin=live_app.base_url)
        assert own.sio.connected
    finally:
        await own.close()


async def test_the_page_allows_only_its_own_scripts_and_images(live_app) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{live_app.base_url}/") as page:
        html, policy = await page.text(), page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["img-src"] == "'self' data: blob:"
    assert directives["frame-ancestors"] == "'none'"
    inline = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", html, re.DOTALL)
    assert inline  # Chainlit's page has some; each is allowed by its hash, nothing else inline
    hashes = {
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in inline
    }
    assert set(directives["script-src"].split()) == {"'self'"} | hashes
    assert (
        "'unsafe-inline'" not in directives["script-src"]
        and "'unsafe-eval'" not in directives["script-src"]
    )
