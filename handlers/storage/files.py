"""Element files on local disk, for Chainlit's data layer.

Chainlit ships S3, GCS and Azure clients only. This one keeps each persisted
element at `<root>/<object key>` (the app passes `data_dir / "files"`; Chainlit
chooses keys of the form `<user id>/<element id>/<file name>`) and gives
Chainlit a URL on the app's own route, never a filesystem path, so a browser can
reach a file only through the owner check in `handlers.web.file_routes`.

It owns the mapping between keys, paths and URLs. It does not decide who may
read a file, and it ignores the MIME type Chainlit passes (the browser's claim):
the route sniffs the bytes when it serves them.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from chainlit.data.storage_clients.base import BaseStorageClient

URL_PREFIX = "/files"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_SEGMENT = 100


class UnsafeObjectKey(ValueError):
    """A key that is empty or not in the form `safe_key` produces."""


def safe_key(object_key: str) -> str:
    """`object_key` made safe to use as a relative path and in a URL: each segment
    keeps only ASCII letters, digits, '.', '_' and '-', loses leading dots (so no
    '..'), and is cut to 100 characters. Empty segments are dropped."""
    segments = [_safe_segment(part) for part in object_key.split("/") if part]
    if not segments:
        raise UnsafeObjectKey("empty object key")
    return "/".join(segments)


class LocalStorageClient(BaseStorageClient):
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path_for(self, object_key: str) -> Path:
        """Where a stored key lives; refuses keys that `safe_key` would change, so a
        key taken from a URL cannot point outside `root`."""
        if safe_key(object_key) != object_key:
            raise UnsafeObjectKey("object key is not in safe form")
        return self.root.joinpath(*object_key.split("/"))

    async def upload_file(
        self,
        object_key: str,
        data: bytes | str,
        mime: str = "application/octet-stream",
        overwrite: bool = True,
        content_disposition: str | None = None,
    ) -> dict[str, Any]:
        """Store `data` (text as UTF-8); returns the key actually used, which is
        `safe_key(object_key)`, and its URL."""
        key = safe_key(object_key)
        path = self.path_for(key)
        if not overwrite and path.exists():
            raise FileExistsError(f"already stored: {key}")
        content = data.encode() if isinstance(data, str) else data
        await asyncio.to_thread(_write_whole, path, content)
        return {"object_key": key, "url": await self.get_read_url(key)}

    async def delete_file(self, object_key: str) -> bool:
        """Remove the file and any directories it leaves empty; False if it was not there."""
        path = self.path_for(object_key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        for parent in path.parents:
            if parent == self.root or any(parent.iterdir()):
                break
            parent.rmdir()
        return True

    async def get_read_url(self, object_key: str) -> str:
        """A root-relative URL on the app's file route; valid only for the thread's owner."""
        self.path_for(object_key)
        return f"{URL_PREFIX}/{object_key}"

    async def close(self) -> None:
        """Nothing to release: every call opens and closes its own file."""


def make_private(folder: Path) -> None:
    """Make `folder` (DATA_DIR: chats, uploads, prepared images, the database)
    reachable by the app's own account only, also when it existed before."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)


def _safe_segment(segment: str) -> str:
    cleaned = _UNSAFE.sub("_", segment).lstrip(".")[:_MAX_SEGMENT]
    return cleaned or "_"


def _write_whole(path: Path, content: bytes) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
