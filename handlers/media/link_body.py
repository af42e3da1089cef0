"""The body of a fetched link, read within a size limit however it was sent.

Owns: reading an httpx response's body, inflating it if it was compressed, and
refusing it the moment it passes `max_bytes`. Does not own the fetch, its
address checks or its deadline (`handlers.media.links`).

httpx would inflate each chunk whole before anyone could count it: 591 bytes of
`gzip, gzip` become 256 MiB in one call, on the event loop. So the raw bytes are
read and inflated here: one layer of gzip or deflate (stacked and other
encodings are refused), `DECODE_STEP` bytes at a time, each step counted
against the limit and followed by a turn of the event loop.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator

import httpx

from handlers.core.errors import InvalidAttachment

# The body encodings inflated here (zlib's window bits for each); any other is refused.
ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
DECODE_STEP = 1 << 20  # most bytes inflated at once: a few ms on the event loop


async def read_capped(response: httpx.Response, name: str, max_bytes: int) -> bytes:
    """The body, inflated if it was compressed, refused as soon as it is larger
    than `max_bytes` — counted as it is inflated, never after."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise InvalidAttachment("link.too_large", name=name, limit_mb=max_bytes // 2**20)
    inflate = _inflater(response.headers.get("content-encoding", ""), name)
    body = bytearray()
    async for piece in _decoded(response.aiter_raw(), inflate, name):
        body += piece
        if len(body) > max_bytes:
            raise InvalidAttachment("link.too_large", name=name, limit_mb=max_bytes // 2**20)
    return bytes(body)


def _inflater(header: str, name: str) -> zlib._Decompress | None:
    """A zlib decompressor for the body's one encoding, None for none; stacked
    (`gzip, gzip`) and unknown encodings are refused."""
    encodings = [e.strip().lower() for e in header.split(",")]
    encodings = [e for e in encodings if e not in ("", "identity")]
    if not encodings:
        return None
    if len(encodings) > 1 or encodings[0] not in ENCODINGS:
        raise InvalidAttachment("link.bad_encoding", name=name, encoding=header.strip()[:40])
    return zlib.decompressobj(ENCODINGS[encodings[0]])


async def _decoded(
    chunks: AsyncIterator[bytes], inflate: zlib._Decompress | None, name: str
) -> AsyncIterator[bytes]:
    """The body's bytes as sent, or inflated `DECODE_STEP` bytes at a time
    (yielding to the event loop between steps). Bytes after the end of the
    compressed stream are ignored."""
    async for chunk in chunks:
        if inflate is None:
            yield chunk
            continue
        while not inflate.eof:
            try:
                piece = inflate.decompress(chunk, DECODE_STEP)
            except zlib.error:
                raise InvalidAttachment("link.damaged_encoding", name=name) from None
            chunk = inflate.unconsumed_tail
            if piece:
                yield piece
                await asyncio.sleep(0)
            if not chunk and len(piece) < DECODE_STEP:
                break  # all of this chunk inflated; a full step may have left more
