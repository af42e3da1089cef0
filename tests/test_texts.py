"""Every translation key and prompt the code names exists, in both languages."""

import json
import re
import string
from pathlib import Path

import pytest

from handlers.chat.welcome import STARTER_TASKS
from handlers.core.i18n import TRANSLATIONS_DIR, resolve_language, translate
from handlers.core.prompts import PRESETS, load_prompt, system_prompt

ROOT = Path(__file__).resolve().parent.parent
KEY_PATTERN = re.compile(
    r"""["']((?:error|download|notice|attachment|video|pdf|link|preset|settings|auth|history|progress|action|count)\.[a-z_0-9.]+)["']"""
)


def app_strings(language: str) -> dict:
    return json.loads((TRANSLATIONS_DIR / f"{language}.json").read_text(encoding="utf-8"))["app"]


def flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def keys_used_in_code() -> set[str]:
    used = set()
    for path in [ROOT / "chainlit_app.py", *(ROOT / "handlers").rglob("*.py")]:
        used.update(KEY_PATTERN.findall(path.read_text(encoding="utf-8")))
    used.update(f"preset.{preset.id}" for preset in PRESETS)
    used.update(f"notice.awaiting.{preset.id}" for preset in PRESETS)  # handlers/chat/turn.py
    used.update(f"starter.{task}.{part}" for task in STARTER_TASKS for part in ("label", "message"))
    return used


def test_the_key_scan_reads_every_package():
    # Keys only the subpackages use: a scan that missed them would pass vacuously.
    assert {
        "attachment.corrupt",
        "video.corrupt",
        "notice.awaiting.describe",
    } <= keys_used_in_code()


def test_every_key_in_the_code_has_english_and_chinese_strings():
    english, chinese = flatten(app_strings("en-US")), flatten(app_strings("zh-CN"))
    missing = {key for key in keys_used_in_code() if key not in english or key not in chinese}
    assert not missing


def test_both_languages_have_the_same_keys_and_placeholders():
    english, chinese = flatten(app_strings("en-US")), flatten(app_strings("zh-CN"))
    assert english.keys() == chinese.keys()
    for key in english:
        assert placeholders(english[key]) == placeholders(chinese[key]), key


@pytest.mark.parametrize(
    ("browser", "expected"),
    [
        ("zh-CN", "zh-CN"),
        ("zh-TW", "zh-CN"),
        ("zh", "zh-CN"),
        ("en-GB", "en-US"),
        ("fr-FR", "en-US"),
        (None, "en-US"),
    ],
)
def test_browser_languages_fall_back_sensibly(browser, expected):
    assert resolve_language(browser) == expected


def test_translate_formats_parameters_and_survives_a_missing_key():
    assert "receipt.jpg" in translate("attachment.unreadable", "zh-CN", name="receipt.jpg")
    assert translate("no.such.key", "en-US") == "no.such.key"


def test_every_prompt_the_code_names_exists():
    for name in [
        "system",
        "language_auto",
        "language_fixed",
        *(f"presets/{p.id}" for p in PRESETS),
    ]:
        assert load_prompt(name)


def test_system_prompt_carries_the_language_rule():
    assert "Simplified Chinese" in system_prompt("zh", "English")
    assert "the language the person writes in" in system_prompt("auto", "English")
    assert "answer in Simplified Chinese" in system_prompt("auto", "Simplified Chinese")
