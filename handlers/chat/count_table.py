"""A count as a table in the person's language: Markdown for the chat, CSV to download.

Owns: turning a `Count` into rows (one per kind of object; one column per
image when several were attached, labelled with their names), the total row
(added up here from the rows, not taken on trust from the model), the
uncertainties listed under the table, and writing it as Markdown or CSV.
Pure code: no I/O, no Chainlit.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

from handlers.core.i18n import translate


@dataclass(frozen=True)
class Row:
    name: str
    count: int
    image: int | None = None  # 1-based, as the model numbers the images
    note: str = ""


@dataclass(frozen=True)
class Count:
    objects: tuple[Row, ...]
    total: int
    uncertain: tuple[str, ...] = ()


Cell = str | int | None  # None: the model said nothing for this cell


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    total: tuple[Cell, ...]  # the last row, "Total" first
    uncertain: tuple[str, ...] = ()
    has_notes: bool = False  # the last column is the model's notes


def build_table(count: Count, image_names: Sequence[str], language: str) -> Table:
    """Rows merged by name (case-insensitively, first spelling kept), in the model's order."""
    columns = _column_names(image_names) if len(image_names) > 1 else []
    merged: dict[str, dict] = {}
    for row in count.objects:
        entry = merged.setdefault(
            row.name.casefold(), {"name": row.name, "cells": {}, "other": 0, "notes": []}
        )
        index = row.image - 1 if row.image is not None else None
        if columns and index is not None and index < len(columns):
            entry["cells"][index] = entry["cells"].get(index, 0) + row.count
        else:
            entry["other"] += row.count
        if row.note and row.note not in entry["notes"]:
            entry["notes"].append(row.note)
    with_notes = any(entry["notes"] for entry in merged.values())
    rows = tuple(_cells(entry, len(columns), with_notes) for entry in merged.values())
    header = [translate("count.object", language)]
    header += (
        [*columns, translate("count.total", language)]
        if columns
        else [translate("count.count", language)]
    )
    header += [translate("count.note", language)] if with_notes else []
    total = _total_row(rows, len(columns), with_notes, language)
    uncertain = list(count.uncertain)
    counted = total[len(columns) + 1]
    if count.total != counted:
        uncertain.append(
            translate("count.model_total", language, total=count.total, counted=counted)
        )
    return Table(tuple(header), rows, total, tuple(uncertain), with_notes)


def _column_names(image_names: Sequence[str]) -> list[str]:
    """The images' names, made unique ("photo.jpg", "photo.jpg (2)")."""
    seen: dict[str, int] = {}
    names = []
    for name in image_names:
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return names


def _cells(entry: dict, images: int, with_notes: bool) -> tuple[Cell, ...]:
    cells: list[Cell] = [entry["name"]]
    if images:
        per_image = entry["cells"]
        # A row the model tied to no image has no per-image cells, only its total.
        cells += [per_image.get(i, 0) if per_image else None for i in range(images)]
    cells.append(sum(entry["cells"].values()) + entry["other"])
    if with_notes:
        cells.append("; ".join(entry["notes"]))
    return tuple(cells)


def _total_row(
    rows: tuple[tuple[Cell, ...], ...], images: int, with_notes: bool, language: str
) -> tuple[Cell, ...]:
    sums = [sum(_number(row[column]) for row in rows) for column in range(1, images + 2)]
    return (translate("count.total", language), *sums, *([""] if with_notes else []))


def _number(cell: Cell) -> int:
    """A cell of a count column as a number: None (the model said nothing) is 0."""
    assert not isinstance(cell, str), "only the name and note columns hold text"
    return cell or 0


def to_markdown(table: Table, language: str) -> str:
    """The table, its total row in bold, then the uncertainties as a list."""
    if not table.rows:
        text = translate("count.nothing", language)
    else:
        numeric = len(table.header) - 1 - table.has_notes
        align = ["---"] + ["---:"] * numeric + ["---"] * (len(table.header) - 1 - numeric)
        lines = [_line(table.header), _line(align, escape=False)]
        lines += [_line(row) for row in table.rows]
        lines.append(
            _line(
                [f"**{_text(cell)}**" if _text(cell) else "" for cell in table.total], escape=False
            )
        )
        text = "\n".join(lines)
    if table.uncertain:
        items = "\n".join(f"- {_escape(item)}" for item in table.uncertain)
        text += f"\n\n**{translate('count.uncertain', language)}**\n\n{items}"
    return text


def _line(cells: Sequence[Cell], *, escape: bool = True) -> str:
    texts = [_escape(_text(cell)) if escape else _text(cell) for cell in cells]
    return "| " + " | ".join(text or "–" for text in texts) + " |"


def _text(cell: Cell) -> str:
    return "" if cell is None else str(cell)


def _escape(text: str) -> str:
    """One line of a Markdown table cell: no line breaks, no column breaks."""
    return " ".join(text.split()).replace("\\", "\\\\").replace("|", "\\|")


def to_csv(table: Table) -> bytes:
    """UTF-8 with a BOM, so spreadsheet programs read Chinese names right."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([_safe(name) for name in table.header])
    for row in [*table.rows, table.total]:
        writer.writerow([_safe(_text(cell)) if not isinstance(cell, int) else cell for cell in row])
    return out.getvalue().encode("utf-8-sig")


def _safe(text: str) -> str:
    """A cell a spreadsheet would run as a formula (an image can say "=HYPERLINK(...)")
    is kept as text."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def as_written(raw: str) -> str:
    """The model's text shown as it came: JSON (whole or cut short) in a code block."""
    text = raw.strip()
    if not text:
        return ""
    if text[0] in "{[":
        return f"```json\n{text.replace('```', '` ` `')}\n```"
    return text
