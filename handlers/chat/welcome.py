"""The empty chat: one starter for each of the five tasks, in the person's language.

Chainlit 2.12 shows starters under the message box until the first message,
and a click sends the starter's message at once, with its `command` (the
task's preset, as if picked with `/`) and with no files. So a starter usually
arrives before any image: `handlers/chat/turn.py` then says what to drop and gives
the next message that brings images that task's preset (`ChatSession.awaiting`).

Knows nothing of Chainlit: `chainlit_app.py` turns these into `cl.Starter`s.
"""

from __future__ import annotations

from dataclasses import dataclass

from handlers.core.i18n import translate

# The order people meet the tasks in: the commonest first.
STARTER_TASKS = ("describe", "count", "read", "ask", "compare")
ICON_URL = "/public/icons/{task}.svg"  # drawn by scripts/draw_logo.py


@dataclass(frozen=True)
class StarterSpec:
    label: str  # the button
    message: str  # what the click sends, shown as the person's message
    command: str  # the preset it carries
    icon: str  # an image URL; Chainlit resolves `/public/…` against the app


def starters(language: str | None) -> list[StarterSpec]:
    """The five starters in `language` (a browser language; others fall back as
    `handlers/core/i18n.py` does)."""
    return [
        StarterSpec(
            label=translate(f"starter.{task}.label", language),
            message=translate(f"starter.{task}.message", language),
            command=task,
            icon=ICON_URL.format(task=task),
        )
        for task in STARTER_TASKS
    ]
