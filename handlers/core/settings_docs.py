"""`.env.example` and the README's settings table, written from the settings table.

Both are generated so that neither can drift from `handlers.core.settings`:
`python -m handlers.core.settings_docs` rewrites them, `--check` only says which
differ (tests/test_settings_docs.py fails the same way). Owns the layout of the
two files, not what they say: every name, default and sentence comes from the
table. Reads and writes files only when run as a command.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from handlers.core.settings import FOREIGN_VARIABLES, Variable, variables

ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = ROOT / ".env.example"
README = ROOT / "README.md"
COMMAND = ".venv/bin/python -m handlers.core.settings_docs"
BEGIN = f"<!-- the settings table: written by `{COMMAND}` from handlers/core/settings.py -->"
END = "<!-- end of the settings table -->"
WIDTH = 100

ENV_HEADER = """\
# Visual Assistant settings. scripts/setup.sh copies this file to .env; edit that.
# The process environment wins over .env. Every variable is optional: the values
# shown are the defaults, and an empty value means the default too.
# (Written from handlers/core/settings.py by python -m handlers.core.settings_docs.)
"""
_LINK = re.compile(r"\[([^\]]+)\]\([^)]+\)")


def env_value(value: Any) -> str:
    """A default as it is written in a `.env` file (and read back by its cast)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, frozenset)):
        return ",".join(value if isinstance(value, tuple) else sorted(value))
    return str(value)


def env_example() -> str:
    """The whole `.env.example`: the header, then each section's variables."""
    parts = [ENV_HEADER]
    for variable in variables():
        if variable.section:
            parts.append(f"\n# ---- {variable.section} ----\n")
        parts.append(_env_entry(variable))
    parts.append("\n# ---- Read by Chainlit, not by the app ----\n")
    for foreign in FOREIGN_VARIABLES:
        if foreign.help:
            parts.append(_comment(f"{foreign.name} — {foreign.help}."))
    return "".join(parts)


def _env_entry(variable: Variable) -> str:
    """A variable's help as a comment, then `NAME=default` (empty when derived)."""
    value = "" if variable.derive else env_value(variable.default)
    text = f"{variable.help}."
    if not value and variable.shown:
        text += f" Empty: {_unwrapped(variable.shown)}."
    return _comment(text) + f"{variable.name}={_plain(value)}\n"


def _unwrapped(shown: str) -> str:
    """`*(nobody)*`, the docs' way to show a default that is not a value, as `nobody`."""
    return shown[2:-2] if shown.startswith("*(") and shown.endswith(")*") else shown


def _comment(markdown: str) -> str:
    lines = textwrap.wrap(
        _plain(markdown), WIDTH - 2, break_long_words=False, break_on_hyphens=False
    )
    return "".join(f"# {line}\n" for line in lines)


def _plain(markdown: str) -> str:
    """Markdown as a `.env` comment: links become their text, code loses its backticks."""
    return _LINK.sub(r"\1", markdown).replace("`", "")


def markdown_table() -> str:
    """The README's table: every variable, its default and its meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for variable in variables():
        shown = variable.shown or f"`{env_value(variable.default)}`"
        rows.append(f"| `{variable.name}` | {shown} | {variable.help} |")
    for foreign in FOREIGN_VARIABLES:
        if foreign.help:
            rows.append(f"| `{foreign.name}` | {foreign.shown} | {foreign.help} |")
    return "\n".join(rows) + "\n"


def readme_with_table(readme: str) -> str:
    """`readme` with the text between the table's markers written afresh."""
    before, begin, rest = readme.partition(BEGIN + "\n")
    _, end, after = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"README.md has no {BEGIN!r} … {END!r} block")
    return f"{before}{BEGIN}\n{markdown_table()}{END}{after}"


def generated() -> dict[Path, str]:
    """Each generated file and the text it should hold now."""
    return {
        ENV_EXAMPLE: env_example(),
        README: readme_with_table(README.read_text(encoding="utf-8")),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m handlers.core.settings_docs", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--check", action="store_true", help="only say which files differ")
    args = parser.parse_args(argv)
    texts = generated()
    stale = [path for path, text in texts.items() if path.read_text("utf-8") != text]
    for path in stale:
        if args.check:
            print(f"{path.relative_to(ROOT)} differs from the settings table; run {COMMAND}")
        else:
            path.write_text(texts[path], encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
