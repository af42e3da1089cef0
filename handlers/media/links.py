"""Images behind links in a message, fetched by the app — never by vLLM.

Owns: finding http(s) links in a message and fetching one without letting a
link reach inside our network (SSRF). Does not own deciding whether the body
is an image: the caller hands it to `handlers.media.images.prepare_image`, which
decodes it.

How a fetch stays outside:
- only http and https on ports 80 and 443 (a link's own port could reach a
  service that is public but not a web server, e.g. a cloud's metadata or
  mail port), and at most 3 redirects, each checked like the first;
- the host is resolved here (numeric spellings such as `2130706433` or
  `0177.0.0.1` are read as the IPv4 address a browser would read), and every
  address it resolves to must be public: not loopback, private, link-local,
  multicast, reserved, unspecified or shared (100.64/10), nor an IPv6 form
  wrapping one (IPv4-mapped, 6to4, NAT64) or outside global unicast
  (IPv4-compatible, site-local, unallocated), nor in `DENIED_NETWORKS`, the
  internal addresses Python's `is_global` calls public;
- the connection goes to that checked address (the URL is rewritten to it),
  with the original Host header and TLS server name, so DNS rebinding cannot
  swap the address between the check and the connect, and certificates are
  still verified against the host name;
- the body is streamed and abandoned as soon as it passes `max_bytes`,
  whatever Content-Length said or however it was compressed
  (`handlers.media.link_body`), and the whole fetch has one deadline.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from urllib.parse import unquote, urlsplit, urlunsplit

import certifi
import httpx

from handlers.core.errors import InvalidAttachment
from handlers.media.link_body import read_capped

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], "list[str] | Awaitable[list[str]]"]

ALLOWED_SCHEMES = frozenset({"http", "https"})
ALLOWED_PORTS = frozenset({80, 443})  # a link without a port uses its scheme's, one of these
MAX_REDIRECTS = 3
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
HEADERS = {
    "User-Agent": "pixtral-chat image fetcher",
    "Accept": "image/*, */*;q=0.5",
    "Accept-Encoding": "gzip, deflate",
}
NAME_LENGTH = 80
# Internal addresses that Python 3.11's `is_global` calls public.
DENIED_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "168.63.129.16/32",  # Azure's WireServer: VM agent, metadata and DNS for every VM
        "192.0.0.0/24",  # IETF protocol assignments; Oracle Cloud's metadata is 192.0.0.192
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215): reaches private IPv4 through a gateway
    )
)

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_NUMERIC_HOST = re.compile(r"[0-9a-fx.]+")
# Stop at spaces, quotes, angle brackets and CJK punctuation (。，「」（） …),
# which people type straight after a link.
_LINK = re.compile(r"https?://[^\s<>\"'`\u3000-\u303f\uff00-\uffef]+", re.IGNORECASE)
_CLOSERS = {")": "(", "]": "["}


def find_image_links(text: str) -> list[str]:
    """The http(s) links in `text`, in order, without repeats. Trailing
    sentence punctuation and an unmatched closing bracket (Markdown's
    `[cat](https://…/cat.png)`) are not part of the link."""
    return list(dict.fromkeys(_trim(match.group()) for match in _LINK.finditer(text)))


def _trim(link: str) -> str:
    while True:
        link = link.rstrip(".,;:!?*_~")
        closer = link[-1:]
        if closer in _CLOSERS and link.count(closer) > link.count(_CLOSERS[closer]):
            link = link[:-1]
        else:
            return link


def link_name(url: str) -> str:
    """What the person sees for a link: host and last path segment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return url[:NAME_LENGTH]
    last = unquote(parts.path.rstrip("/").rpartition("/")[2])
    name = f"{host}/{last}" if last else host or url
    return name if len(name) <= NAME_LENGTH else name[: NAME_LENGTH - 1] + "…"


async def fetch_link(
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    resolver: Resolver | None = None,
    allow: frozenset[str] = frozenset(),
    ports: frozenset[int] = ALLOWED_PORTS,
) -> tuple[str, bytes]:
    """(display name, body) of `url`, fetched as the module doc describes.

    `resolver` maps a host name to IP strings (sync or async; default: the
    system's). `allow` lists addresses let through although not public, and
    `ports` the ports links may name — both for tests against servers on
    loopback only. Refuses, as `InvalidAttachment`: `link.bad_url`,
    `link.bad_scheme`, `link.bad_port`, `link.blocked_address`, `link.unreachable`,
    `link.too_many_redirects`, `link.http_error`, `link.too_large`,
    `link.bad_encoding`, `link.damaged_encoding`, `link.timeout`.
    """
    name = link_name(url)
    allowed = frozenset(ipaddress.ip_address(address) for address in allow)
    try:
        tls = await asyncio.to_thread(_tls_context)
        async with (
            asyncio.timeout(timeout),
            httpx.AsyncClient(
                trust_env=False,
                follow_redirects=False,
                timeout=timeout,
                headers=HEADERS,
                verify=tls,
            ) as client,
        ):
            return name, await _follow(client, url, name, max_bytes, resolver, allowed, ports)
    except (TimeoutError, httpx.TimeoutException):
        raise InvalidAttachment("link.timeout", name=name, seconds=f"{timeout:g}") from None
    except httpx.HTTPError:
        raise InvalidAttachment("link.unreachable", name=name) from None


async def _follow(
    client: httpx.AsyncClient,
    url: str,
    name: str,
    max_bytes: int,
    resolver: Resolver | None,
    allowed: frozenset[Address],
    ports: frozenset[int],
) -> bytes:
    target = _parse(url, name, ports)
    for _ in range(MAX_REDIRECTS + 1):
        address = await _checked_address(target.host, name, resolver, allowed)
        async with client.stream(
            "GET",
            target.copy_with(host=address),
            extensions=_tls_name(target),
            headers={"Host": target.netloc.decode("ascii")},
        ) as response:
            location = response.headers.get("location")
            if response.status_code in REDIRECT_STATUSES and location:
                target = _parse(str(target.join(location)), name, ports)
                continue
            if not response.is_success:
                raise InvalidAttachment("link.http_error", name=name, status=response.status_code)
            return await read_capped(response, name, max_bytes)
    raise InvalidAttachment("link.too_many_redirects", name=name, limit=MAX_REDIRECTS)


def _parse(url: str, name: str, ports: frozenset[int]) -> httpx.URL:
    """The URL to fetch: scheme and port checked, credentials dropped, numeric
    IPv4 spelled out."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        raise InvalidAttachment("link.bad_url", name=name) from None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise InvalidAttachment("link.bad_scheme", name=name, scheme=parts.scheme or "?")
    if not host:
        raise InvalidAttachment("link.bad_url", name=name)
    if port is not None and port not in ports:
        raise InvalidAttachment("link.bad_port", name=name, port=port)
    host = str(_numeric_ipv4(host) or host)
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port is not None else "")
    try:
        return httpx.URL(urlunsplit(parts._replace(netloc=netloc)))
    except httpx.InvalidURL:
        raise InvalidAttachment("link.bad_url", name=name) from None


def _numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The address browsers read in `2130706433`, `0177.0.0.1` or `0x7f.1`."""
    if not _NUMERIC_HOST.fullmatch(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


async def _checked_address(
    host: str, name: str, resolver: Resolver | None, allowed: frozenset[Address]
) -> str:
    """The address to connect to; every address `host` has must be public."""
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        addresses = await _resolve(host, name, resolver)
    for address in addresses:
        if address not in allowed and not is_public(address):
            raise InvalidAttachment("link.blocked_address", name=name)
    return str(addresses[0])


async def _resolve(host: str, name: str, resolver: Resolver | None) -> list[Address]:
    try:
        found = (resolver or _system_resolver)(host)
        found = await found if inspect.isawaitable(found) else found
        addresses = [ipaddress.ip_address(address) for address in found]
    except (OSError, ValueError):
        raise InvalidAttachment("link.unreachable", name=name) from None
    if not addresses:
        raise InvalidAttachment("link.unreachable", name=name)
    return addresses


async def _system_resolver(host: str) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    # A Python built without IPv6 gives (int, bytes) for an IPv6 address: nothing to reach.
    return [info[4][0] for info in infos if isinstance(info[4][0], str)]


def is_public(address: Address) -> bool:
    """Whether `address` is on the public internet, looking inside IPv6 forms
    that carry an IPv4 address (a mapped 127.0.0.1 is still loopback). Of the
    rest of IPv6 only global unicast (2000::/3) can be public."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or _nat64(address)
        if inner is not None:
            return is_public(inner)
        if address.sixtofour is not None and not is_public(address.sixtofour):
            return False
        if address not in _GLOBAL_UNICAST:
            return False
    if any(address in network for network in DENIED_NETWORKS):
        return False
    return address.is_global and not address.is_multicast


def _nat64(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every fetch: building one reads and parses the CA
    bundle, which httpx would otherwise do on the event loop for each link
    (docs/benchmarks.md, "Smaller measurements")."""
    return ssl.create_default_context(cafile=certifi.where())


def _tls_name(target: httpx.URL) -> dict[str, str]:
    """Send the host name, not the pinned address, as TLS SNI (and verify the
    certificate against it). An IP literal has no name to send."""
    if target.scheme != "https" or _is_ip(target.host):
        return {}
    return {"sni_hostname": target.host}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
