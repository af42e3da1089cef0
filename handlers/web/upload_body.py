"""An upload's form read as Starlette reads it, with its file shown to the app as it arrives.

Why: FastAPI hands a route its `UploadFile` only once the whole body is in, so
a photo's preparation could start only then (`handlers/chat/uploads.py`,
`Arrival`). Here Starlette's own multipart parser reads the body — same
spooling, same errors, same limits but one file a request — and each piece of
the `file` field is also passed to `follow(filename, piece)` the moment it is
parsed. The piece's part is read from the parser's `_current_part`, Starlette
1.x's own state: `tests/test_uploads.py` fails if a Starlette upgrade moves it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing

from fastapi import HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

FIELD = "file"  # the field Chainlit's frontend uploads under
Follow = Callable[[str, bytes], None]


class _FollowingParser(MultiPartParser):
    def __init__(self, request: Request, body: AsyncGenerator[bytes], follow: Follow) -> None:
        # Request.form()'s limits, but one file: the frontend sends one a request.
        super().__init__(request.headers, body, max_files=1)
        self._follow = follow

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        super().on_part_data(data, start, end)
        part = self._current_part
        if part.file is not None and part.field_name == FIELD and part.file.filename:
            self._follow(part.file.filename, data[start:end])


async def read_upload(request: Request, follow: Follow) -> UploadFile:
    """The form's `file`, answering a body that is not one as FastAPI and
    Starlette would have: 400 for broken multipart data, 422 with no file."""
    content_type, _ = parse_options_header(request.headers.get("content-type"))
    form = FormData()
    if content_type == b"multipart/form-data":
        try:
            async with aclosing(request.stream()) as body:
                form = await _FollowingParser(request, body, follow).parse()
        except MultiPartException as exc:
            raise HTTPException(status_code=400, detail=exc.message) from exc
    upload = form.get(FIELD)
    if not isinstance(upload, StarletteUploadFile):
        await form.close()
        missing = {"type": "missing", "loc": ("body", FIELD), "msg": "Field required"}
        raise RequestValidationError([{**missing, "input": None}])
    # FastAPI's UploadFile, which Chainlit's route takes: Starlette's with a schema.
    return UploadFile(
        upload.file, size=upload.size, filename=upload.filename, headers=upload.headers
    )
