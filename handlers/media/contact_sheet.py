"""Many video frames in one image: a grid of cells, each stamped with its time.

Owns only the drawing. Which frames, and how many per sheet, is
`handlers.media.video`'s business; encoding the sheet is `handlers.media.images`'.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from handlers.media.pixtral import MAX_SIDE  # a sheet is one image: no bigger than Pixtral sees

GUTTER = 4  # px of dark background between cells, so the model sees where one ends
BACKGROUND = (24, 24, 24)


def cell_box(columns: int) -> int:
    """The square (px) each frame must fit in so a `columns`-wide square grid stays ≤ MAX_SIDE."""
    return (MAX_SIDE - GUTTER * (columns + 1)) // columns


def contact_sheet(cells: Sequence[tuple[Image.Image, str]], columns: int) -> Image.Image:
    """Lay `(frame, timestamp)` cells out left to right, top to bottom.

    Frames should already fit `cell_box(columns)`; each is centred in a cell as
    large as the largest frame, and its timestamp is drawn on a dark patch in
    the cell's bottom-left corner so it stays legible on any picture.
    """
    width = max(image.width for image, _ in cells)
    height = max(image.height for image, _ in cells)
    rows = math.ceil(len(cells) / columns)
    used_columns = min(columns, len(cells))
    sheet = Image.new(
        "RGB",
        (GUTTER + used_columns * (width + GUTTER), GUTTER + rows * (height + GUTTER)),
        BACKGROUND,
    )
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=max(11, height // 9))
    for index, (image, stamp) in enumerate(cells):
        row, column = divmod(index, columns)
        left = GUTTER + column * (width + GUTTER) + (width - image.width) // 2
        top = GUTTER + row * (height + GUTTER) + (height - image.height) // 2
        sheet.paste(image, (left, top))
        _stamp(draw, (left, top + image.height), stamp, font)
    return sheet


def _stamp(draw: ImageDraw.ImageDraw, corner: tuple[int, int], text: str, font) -> None:
    """White text on a black patch whose bottom-left corner is `corner`."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(2, (bottom - top) // 4)
    x, y = corner[0], corner[1] - (bottom - top) - 2 * pad
    draw.rectangle([x, y, x + right - left + 2 * pad, corner[1] - 1], fill=(0, 0, 0))
    draw.text((x + pad - left, y + pad - top), text, font=font, fill=(255, 255, 255))
