"""Image links: finding them, and fetching them without reaching inside (SSRF).

The servers are real HTTP(S) on 127.0.0.1. Loopback is refused by default, so
tests that mean to reach them pass `allow=` with their address (and `fetch`
allows the link's own port, as the servers' ports are not 80 or 443); every other
test shows a refusal, and none of them touches the network beyond loopback.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from handlers.core.errors import InvalidAttachment
from handlers.media.images import prepare_image
from handlers.media.links import ALLOWED_PORTS, fetch_link, find_image_links, is_public, link_name
from tests.mediacorpus import image_bytes

LOOPBACK = frozenset({"127.0.0.1"})
PNG = image_bytes("PNG")


class Routes(BaseHTTPRequestHandler):
    """GET routes for the tests; every request's path and headers are recorded."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.seen.append((self.path, dict(self.headers)))
        route, _, arg = self.path.lstrip("/").partition("/")
        getattr(self, f"route_{route.replace('-', '_')}", self.route_missing)(arg)

    def route_img(self, _: str) -> None:
        self.reply(200, PNG, "image/png")

    def route_gzipped(self, encoding: str) -> None:
        body = gzip.compress(PNG) if "gzip" in encoding else zlib.compress(PNG)
        self.send_response(200)
        self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def route_text(self, _: str) -> None:
        self.reply(200, b"<html>not a picture</html>", "text/html")

    def route_status(self, code: str) -> None:
        self.reply(int(code), b"no", "text/plain")

    def route_redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location.replace("~", "/"))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def route_chain(self, hops: str) -> None:
        left = int(hops)
        self.route_redirect(f"/chain/{left - 1}" if left else "/img")

    def route_loop(self, _: str) -> None:
        self.route_redirect("/loop")

    def route_declared_big(self, _: str) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(50_000_000))
        self.end_headers()
        self.wfile.write(b"x" * 1000)

    def route_endless(self, _: str) -> None:
        """No Content-Length: the body runs until the connection closes (here: ~forever)."""
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        for _ in range(2000):  # 128 MB if nobody hangs up
            self.wfile.write(b"\x89" * 65536)
        self.server.endless_finished = True

    def route_slow(self, _: str) -> None:
        time.sleep(3)
        self.route_img("")

    def route_drip(self, _: str) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        for _ in range(100):
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(0.05)

    def route_missing(self, _: str) -> None:
        self.reply(404, b"", "text/plain")

    def reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Routes)
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.endless_finished = False
        if tls:
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    @property
    def port(self) -> int:
        return self.server_address[1]

    def handle_error(self, request, client_address) -> None:
        pass  # clients hanging up mid-body is what several tests are about


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = Server()
    threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def stub(mapping: dict[str, list[str]]):
    """A resolver answering from `mapping` (an unknown name has no addresses)."""
    return lambda host: mapping.get(host, [])


def own_port(url: str) -> frozenset[int]:
    try:
        port = urlsplit(url).port
    except ValueError:
        return ALLOWED_PORTS
    return ALLOWED_PORTS | {port} if port else ALLOWED_PORTS


async def fetch(url: str, **options):
    options = {"max_bytes": 1_000_000, "timeout": 5.0, "ports": own_port(url), **options}
    return await fetch_link(url, **options)


async def refusal(url: str, **options) -> InvalidAttachment:
    with pytest.raises(InvalidAttachment) as caught:
        await fetch(url, **options)
    return caught.value


# --- finding links ----------------------------------------------------------


def test_finds_links_in_order_without_punctuation_or_repeats():
    text = (
        "Look at https://a.example/cat.png. Then (https://b.example/p_(1).jpg) and "
        "[dog](https://c.example/dog.webp)! 看这个https://d.example/图.png，谢谢 "
        "again https://a.example/cat.png ftp://e.example/x.png"
    )
    assert find_image_links(text) == [
        "https://a.example/cat.png",
        "https://b.example/p_(1).jpg",
        "https://c.example/dog.webp",
        "https://d.example/图.png",
    ]


def test_no_links():
    assert find_image_links("no links here, just http and www.example.com") == []


def test_link_name_is_host_and_last_segment_without_credentials():
    assert link_name("https://user:pw@Img.Example:8443/a/b%20c.png?x=1") == "img.example/b c.png"
    assert link_name("http://img.example/") == "img.example"


# --- fetching ---------------------------------------------------------------


async def test_fetches_through_the_checked_address_with_the_original_host(server):
    resolve = stub({"images.example": ["127.0.0.1"]})
    name, body = await fetch(
        f"http://images.example:{server.port}/img/cat.png", resolver=resolve, allow=LOOPBACK
    )
    assert (name, body) == ("images.example/cat.png", PNG)
    assert server.seen[0][1]["Host"] == f"images.example:{server.port}"
    assert prepare_image(name, body, max_bytes=1_000_000).width == 40


async def test_dns_rebinding_cannot_swap_the_address(server):
    answers = iter([["127.0.0.1"], ["10.0.0.1"]])
    calls = []

    def rebinding(host: str) -> list[str]:
        calls.append(host)
        return next(answers)

    _, body = await fetch(
        f"http://images.example:{server.port}/img", resolver=rebinding, allow=LOOPBACK
    )
    assert body == PNG and calls == ["images.example"]  # resolved once, then pinned


async def test_follows_up_to_three_redirects_checking_each(server):
    resolve = stub({"a.example": ["127.0.0.1"]})
    _, body = await fetch(
        f"http://a.example:{server.port}/chain/2", resolver=resolve, allow=LOOPBACK
    )
    assert body == PNG and [path for path, _ in server.seen][-1] == "/img"


async def test_redirect_loop_is_refused(server):
    error = await refusal(f"http://127.0.0.1:{server.port}/loop", allow=LOOPBACK)
    assert error.key == "link.too_many_redirects"
    assert len(server.seen) == 4  # the first request and three redirects


async def test_a_fourth_redirect_is_too_many(server):
    error = await refusal(f"http://127.0.0.1:{server.port}/chain/3", allow=LOOPBACK)
    assert error.key == "link.too_many_redirects"


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.2/",
        "http://[::1]/",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
        "http://2130706434/",
        "http://localhost/",
    ],
)
async def test_redirect_inside_is_refused(server, location):
    error = await refusal(
        f"http://127.0.0.1:{server.port}/redirect/{location.replace('/', '~')}",
        allow=LOOPBACK,
        resolver=stub({"localhost": ["127.0.0.1", "::1"]}),
    )
    assert error.key == "link.blocked_address"


@pytest.mark.parametrize("location", ["file:///etc/passwd", "gopher://127.0.0.1:70/"])
async def test_redirect_to_another_scheme_is_refused(server, location):
    error = await refusal(
        f"http://127.0.0.1:{server.port}/redirect/{location.replace('/', '~')}", allow=LOOPBACK
    )
    assert error.key == "link.bad_scheme"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://0.0.0.0/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://[::127.0.0.1]/",
        "http://[2002:7f00:1::]/",
        "http://[64:ff9b::a00:1]/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://0x7f.1/",
        "http://127.1/",
        "https://10.1.2.3/x.png",
        "http://192.168.1.1:8080/",
        "http://168.63.129.16/",
        "http://192.0.0.192/",
    ],
)
async def test_inside_addresses_are_refused_before_connecting(url):
    error = await refusal(url)
    assert error.key == "link.blocked_address"


async def test_mapped_loopback_is_refused_even_when_loopback_is_allowed(server):
    error = await refusal(f"http://[::ffff:127.0.0.1]:{server.port}/img", allow=LOOPBACK)
    assert error.key == "link.blocked_address" and not server.seen


async def test_host_name_resolving_inside_is_refused(server):
    resolve = stub({"evil.example": ["93.184.216.34", "10.0.0.7"]})
    error = await refusal(f"http://evil.example:{server.port}/img", resolver=resolve)
    assert error.key == "link.blocked_address" and not server.seen


async def test_default_resolver_is_used_and_refuses_localhost():
    error = await refusal("http://localhost/")
    assert error.key == "link.blocked_address"


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.png", "file:///etc/passwd", "javascript:alert(1)"]
)
async def test_other_schemes_are_refused(url):
    assert (await refusal(url)).key == "link.bad_scheme"


@pytest.mark.parametrize("url", ["http:///nohost.png", "http://[::1/", "http://a.example:99999/"])
async def test_malformed_links_are_refused(url):
    assert (await refusal(url)).key == "link.bad_url"


async def test_unknown_host_is_unreachable():
    error = await refusal("http://nowhere.example/", resolver=stub({}))
    assert error.key == "link.unreachable"


async def test_closed_port_is_unreachable():
    with Server() as unused:
        port = unused.port
    error = await refusal(f"http://127.0.0.1:{port}/img", allow=LOOPBACK)
    assert error.key == "link.unreachable"


async def test_http_error_carries_the_status(server):
    error = await refusal(f"http://127.0.0.1:{server.port}/status/404", allow=LOOPBACK)
    assert (error.key, error.params["status"]) == ("link.http_error", 404)


async def test_declared_oversize_is_refused_from_the_header(server):
    error = await refusal(f"http://127.0.0.1:{server.port}/declared-big", allow=LOOPBACK)
    assert error.key == "link.too_large"


async def test_oversize_without_content_length_is_cut_off(server):
    started = time.monotonic()
    error = await refusal(
        f"http://127.0.0.1:{server.port}/endless", allow=LOOPBACK, max_bytes=200_000
    )
    assert error.key == "link.too_large"
    assert time.monotonic() - started < 2 and not server.endless_finished


async def test_silent_server_times_out(server):
    started = time.monotonic()
    error = await refusal(f"http://127.0.0.1:{server.port}/slow", allow=LOOPBACK, timeout=0.5)
    assert error.key == "link.timeout" and time.monotonic() - started < 1.5


async def test_dripping_server_hits_the_overall_deadline(server):
    """Each byte arrives well within any per-read timeout; the whole fetch may not."""
    started = time.monotonic()
    error = await refusal(f"http://127.0.0.1:{server.port}/drip", allow=LOOPBACK, timeout=1.0)
    assert error.key == "link.timeout" and time.monotonic() - started < 2


async def test_slow_resolver_counts_against_the_deadline():
    async def hanging(host: str) -> list[str]:
        await asyncio.sleep(10)
        return []

    assert (await refusal("http://slow-dns.example/", resolver=hanging, timeout=0.3)).key == (
        "link.timeout"
    )


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "deflate", "identity,gzip"])
async def test_a_compressed_image_is_inflated(server, encoding):
    _, body = await fetch(f"http://127.0.0.1:{server.port}/gzipped/{encoding}", allow=LOOPBACK)
    assert body == PNG


async def test_a_web_page_is_fetched_but_refused_as_an_image(server):
    name, body = await fetch(f"http://127.0.0.1:{server.port}/text", allow=LOOPBACK)
    with pytest.raises(InvalidAttachment) as caught:
        prepare_image(name, body, max_bytes=1_000_000)
    assert caught.value.key == "attachment.unsupported"


# --- TLS: the pinned connection still speaks to, and checks, the host name --


def self_signed(tmp_path: Path, host: str) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return context


async def test_https_sends_the_host_name_as_sni_and_verifies_the_certificate(tmp_path):
    context = self_signed(tmp_path, "images.example")
    names: list[str | None] = []
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)
    httpd = Server(tls=context)
    threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()
    try:
        error = await refusal(
            f"https://images.example:{httpd.port}/img",
            resolver=stub({"images.example": ["127.0.0.1"]}),
            allow=LOOPBACK,
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert names == ["images.example"]  # reached 127.0.0.1, introduced itself as the host
    assert error.key == "link.unreachable"  # self-signed: verification is on


def test_is_public_looks_inside_ipv6_forms():
    import ipaddress

    public = ["8.8.8.8", "::ffff:8.8.8.8", "64:ff9b::808:808", "2606:4700::1111"]
    inside = [
        "::ffff:10.0.0.1",
        "64:ff9b::7f00:1",
        "2002:c0a8:101::",
        "fec0::1",
        "ff02::1",
        "2001:db8::1",
        "::",
    ]
    assert all(is_public(ipaddress.ip_address(a)) for a in public)
    assert not any(is_public(ipaddress.ip_address(a)) for a in inside)
