"""The app's own strings, in the person's language.

They live beside Chainlit's UI strings, under an `"app"` key in
`.chainlit/translations/<language>.json`, so one folder holds every string a
translator has to touch. Lookup falls back from `zh-TW` to another `zh-*` file
that has app strings, then to en-US; a key missing everywhere is a bug, and
shows as the key itself rather than crashing a reply.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from pathlib import Path
from typing import Any

TRANSLATIONS_DIR = Path(__file__).resolve().parents[2] / ".chainlit" / "translations"
DEFAULT_LANGUAGE = "en-US"

log = logging.getLogger(__name__)


def translate(key: str, language: str | None, **params: Any) -> str:
    """The string for dotted `key` in `language`, formatted with `params`."""
    template = _lookup(key, resolve_language(language)) or _lookup(key, DEFAULT_LANGUAGE)
    if template is None:
        log.error("missing translation key %s", key)
        return key
    try:
        return template.format(**params)
    except (KeyError, IndexError, ValueError):
        log.error("translation %s does not fit its parameters %s", key, sorted(params))
        return template


def resolve_language(language: str | None) -> str:
    """The translation file to use for a browser language such as `zh-Hans-CN`."""
    if not language:
        return DEFAULT_LANGUAGE
    available = _languages_with_app_strings()
    if language in available:
        return language
    base = language.split("-")[0].lower()
    for candidate in sorted(available):
        if candidate.split("-")[0].lower() == base:
            return candidate
    return DEFAULT_LANGUAGE


def is_chinese(language: str | None) -> bool:
    return resolve_language(language).lower().startswith("zh")


def _lookup(key: str, language: str) -> str | None:
    node: Any = _app_strings(language)
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, str) else None


@cache
def _app_strings(language: str) -> dict[str, Any]:
    path = TRANSLATIONS_DIR / f"{language}.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8")).get("app", {})


@cache
def _languages_with_app_strings() -> frozenset[str]:
    return frozenset(p.stem for p in TRANSLATIONS_DIR.glob("*.json") if _app_strings(p.stem))
