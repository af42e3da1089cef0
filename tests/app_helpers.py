"""Helpers for tests that drive the app's callbacks: test data and what was sent."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path

from PIL import Image

from handlers.core.prompts import load_prompt


def photo(folder: Path, name: str, size=(2000, 1500), colour="red") -> Path:
    path = folder / name
    Image.new("RGB", size, colour).save(path, "JPEG")
    return path


def sent_images(request: dict) -> list[Image.Image]:
    """The images in a recorded chat request, decoded from their data URLs."""
    images = []
    for message in request["messages"]:
        for part in message["content"] if isinstance(message["content"], list) else []:
            if part["type"] == "image_url":
                payload = part["image_url"]["url"].split(",", 1)[1]
                images.append(Image.open(io.BytesIO(base64.b64decode(payload))))
    return images


def sent_text(request: dict) -> str:
    texts = []
    for message in request["messages"]:
        content = message["content"]
        if isinstance(content, str):
            texts.append(content)
        else:
            texts.extend(part["text"] for part in content if part["type"] == "text")
    return "\n".join(texts)


def asked_text(request: dict) -> str:
    """What the last user turn of a recorded request says, without the system prompt
    that leads the first user message (its own text part): `sent_text` would find the
    prompt's words too, and the prompt quotes the presets'."""
    (last,) = [m for m in request["messages"] if m["role"] == "user"][-1:]
    content = last["content"]
    parts = (
        [content]
        if isinstance(content, str)
        else [part["text"] for part in content if part["type"] == "text"]
    )
    system = load_prompt("system")
    return "\n".join(part for part in parts if not part.startswith(system))


def streaming(chat) -> bool:
    """Whether a `ChatHarness`'s answer has streamed past its first token (Chainlit sends
    the first in `stream_start`, the rest as `stream_token`)."""
    return any(event == "stream_token" for event, _ in chat.events)


async def settle() -> None:
    """Let Chainlit's background persistence tasks finish."""
    for _ in range(3):
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.gather(*pending, return_exceptions=True)
