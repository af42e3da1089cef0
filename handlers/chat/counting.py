"""`/count` as structured output: the JSON schema vLLM is asked to follow, and
reading what came back.

Owns: the one copy of the schema (`SCHEMA`) and the `response_format` built from
it, parsing the model's text into a `Count` (or None when it is not one: cut at
the length limit, a server that ignored the schema, a model that wrote prose),
and following the JSON while it streams (`CountStream`: a status to show, and
what the answer becomes at the end), with the items `handlers.chat.turn` yields for
it (`CountStatus`, then one `Final` with its CSV as an `Attachment`).

vLLM 0.33 enforces `response_format` `{"type": "json_schema", ...}` with its
grammar backend; the older `guided_json` field is ignored there without an
error, so it is never sent. The schema is enforced but the parse below still
checks every field: the app must not depend on a server honouring it.

The image a row is about is its number in the message (1 for the first attached):
Pixtral sees images, not their file names; the app maps numbers to names.

Does not own: rendering the table or the CSV (`handlers.chat.count_table`), talking
to the server (`handlers.chat.llm`), or any UI.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeGuard

from handlers.chat.count_table import Count, Row, as_written, build_table, to_csv, to_markdown
from handlers.core.i18n import translate

MAX_NAME_CHARS = 80
MAX_NOTE_CHARS = 200
MAX_ROWS = 60
MAX_COUNT = 100_000

SCHEMA: dict = {
    "type": "object",
    "properties": {
        "objects": {
            "type": "array",
            "maxItems": MAX_ROWS,
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS},
                    "count": {"type": "integer", "minimum": 0, "maximum": MAX_COUNT},
                    "image": {"type": "integer", "minimum": 1, "maximum": 64},
                    "note": {"type": "string", "maxLength": MAX_NOTE_CHARS},
                },
                "required": ["name", "count"],
                "additionalProperties": False,
            },
        },
        "total": {"type": "integer", "minimum": 0},
        "uncertain": {
            "type": "array",
            "maxItems": 20,
            "items": {"type": "string", "maxLength": MAX_NOTE_CHARS},
        },
    },
    "required": ["objects", "total", "uncertain"],
    "additionalProperties": False,
}

RESPONSE_FORMAT: dict = {
    "type": "json_schema",
    "json_schema": {"name": "count", "schema": SCHEMA, "strict": True},
}

CSV_NAME = "counts.csv"


def parse_count(text: str) -> Count | None:
    """The count in the model's text, or None if it is not valid JSON of the schema's shape.

    Raw control characters in strings are let through (`strict=False`): vLLM's
    xgrammar grammar allows a tab inside a JSON string, which strict JSON does not.
    """
    try:
        data = json.loads(text, strict=False)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("objects"), list):
        return None
    rows = [row for row in map(_row, data["objects"]) if row is not None]
    total, uncertain = data.get("total"), data.get("uncertain", [])
    if len(rows) != len(data["objects"]) or not _is_count(total) or not isinstance(uncertain, list):
        return None
    if not all(isinstance(item, str) for item in uncertain):
        return None
    uncertain = [_clean(item) for item in uncertain]
    return Count(tuple(rows), total, tuple(item for item in uncertain if item))


def _row(item: object) -> Row | None:
    if not isinstance(item, dict):
        return None
    name, count = item.get("name"), item.get("count")
    image, note = item.get("image"), item.get("note", "")
    if not isinstance(name, str) or not _clean(name) or not _is_count(count):
        return None
    if image is not None and not (_is_count(image) and image >= 1):
        return None
    if not isinstance(note, str):
        return None
    return Row(_clean(name), count, image, _clean(note))


def _clean(text: str) -> str:
    """A string as the table can keep it. JSON escapes let a model write any code
    point: a lone surrogate ("\\ud800") cannot be stored or sent as UTF-8, and a
    control character ("\\u0000") is refused by PostgreSQL; they go."""
    kept = (
        " " if unicodedata.category(ch) == "Cc" else ch
        for ch in text
        if unicodedata.category(ch) != "Cs"
    )
    return " ".join("".join(kept).split())


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True)
class Outcome:
    """What a count's answer shows at the end, and remembers as the model's turn."""

    text: str
    csv: bytes | None = None  # the same table, to attach
    notice: str | None = None  # a translation key: why it is not a table
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CountStatus:
    """A count under way: the answer shows `status`; `kept` is what it keeps if stopped now."""

    status: str
    kept: str


@dataclass(frozen=True)
class Attachment:
    name: str
    mime: str
    data: bytes


@dataclass(frozen=True)
class Final:
    """The answer's text at the end, replacing what it showed, with files to attach."""

    text: str
    files: tuple[Attachment, ...] = ()


class CountStream:
    """A count's JSON as it streams: a status while it arrives, the table at the end."""

    def __init__(self, image_names: Sequence[str], language: str) -> None:
        self.image_names, self.language = tuple(image_names), language
        self.pieces: list[str] = []

    def add(self, piece: str) -> None:
        self.pieces.append(piece)

    @property
    def raw(self) -> str:
        return "".join(self.pieces)

    def status(self) -> str:
        """'Counting…', with how many rows have arrived once there are some."""
        rows = self.raw.count('"name"')
        if rows:
            return translate("count.status_rows", self.language, rows=rows)
        return translate("count.status", self.language)

    def as_written(self) -> str:
        """What was said so far, shown as it came (the stop button, a failure)."""
        return as_written(self.raw)

    def finish(self, *, truncated: bool, max_tokens: int) -> Outcome:
        raw = self.raw
        if not raw.strip():
            return Outcome("", notice="count.no_answer")
        count = None if truncated else parse_count(raw)
        if count is None:
            key, params = (
                ("count.cut_off", {"max_tokens": max_tokens})
                if truncated
                else ("count.not_a_table", {})
            )
            return Outcome(as_written(raw), notice=key, params=params)
        table = build_table(count, self.image_names, self.language)
        return Outcome(to_markdown(table, self.language), to_csv(table))
