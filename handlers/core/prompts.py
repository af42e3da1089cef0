"""Prompts are text files under `prompts/`, loaded by name.

Keeping them out of the code lets the team tune wording without touching
logic, and lets a test check that every name the code asks for exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

PROMPTS_DIR = Path(__file__).resolve().parents[2] / "prompts"

LANGUAGE_NAMES = {"en": "English", "zh": "Simplified Chinese (简体中文)"}


@dataclass(frozen=True)
class Preset:
    """A task people come for, offered as a Chainlit command (e.g. `/count`)."""

    id: str
    icon: str  # a lucide icon name, as Chainlit commands expect


PRESETS = (
    Preset("describe", "image"),
    Preset("count", "list-ordered"),
    Preset("ask", "circle-help"),
    Preset("read", "scan-text"),
    Preset("compare", "columns-2"),
)
PRESET_IDS = frozenset(preset.id for preset in PRESETS)


@cache
def load_prompt(name: str) -> str:
    """The text of `prompts/<name>.md`; `name` may contain one folder (`presets/count`)."""
    return (PROMPTS_DIR / f"{name}.md").read_text(encoding="utf-8").strip()


def preset_instruction(preset_id: str) -> str:
    if preset_id not in PRESET_IDS:
        raise KeyError(preset_id)
    return load_prompt(f"presets/{preset_id}")


def system_prompt(answer_language: str, ui_language: str) -> str:
    """The system prompt plus the language rule.

    `answer_language` is the person's setting: "auto" follows their message
    (falling back to the UI language when they only picked a preset), "en" or
    "zh" pins it.
    """
    if answer_language == "auto":
        rule = load_prompt("language_auto").format(ui_language=ui_language)
    else:
        rule = load_prompt("language_fixed").format(language=LANGUAGE_NAMES[answer_language])
    return f"{load_prompt('system')}\n\n{rule}"
