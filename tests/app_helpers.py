"""Helpers for tests that drive the app's callbacks: test data and what was sent."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path

from PIL import Image


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


async def settle() -> None:
    """Let Chainlit's background persistence tasks finish."""
    for _ in range(3):
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.gather(*pending, return_exceptions=True)
