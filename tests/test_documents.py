"""PDFs: page requests, rendering within the budget, tiles, refusals.

Every PDF is written by `tests.mediacorpus.write_pdf`: pages painted in flat
colours, so a test can tell which page an image came from.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from PIL import Image

from handlers.core.errors import InvalidAttachment
from handlers.media.documents import parse_page_request, prepare_pdf
from handlers.media.sniff import looks_like_pdf
from tests.mediacorpus import PALETTE, flat_page, nearest_colour_index, split_page, write_pdf

LIMITS = {"pages": None, "max_images": 4, "tile": False, "max_bytes": 10_000_000}


async def prepare(path: Path, **overrides):
    return await prepare_pdf(path.name, path, **{**LIMITS, **overrides})


async def refusal(path: Path, **overrides) -> InvalidAttachment:
    with pytest.raises(InvalidAttachment) as caught:
        await prepare(path, **overrides)
    assert caught.value.params["name"] == path.name
    return caught.value


def picture(item) -> Image.Image:
    return Image.open(io.BytesIO(item.image.data)).convert("RGB")


def colour_of(image: Image.Image, box: tuple[float, float, float, float] = (0.4, 0.4, 0.6, 0.6)):
    w, h = image.size
    region = image.crop((int(box[0] * w), int(box[1] * h), int(box[2] * w), int(box[3] * h)))
    return nearest_colour_index(region.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0)))


@pytest.fixture
def ten_pages(tmp_path) -> Path:
    return write_pdf(tmp_path / "report.pdf", [flat_page(colour) for colour in PALETTE])


# --- page requests ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pages"),
    [
        ("what is on page 3?", [3]),
        ("summarise pages 2-4", [2, 3, 4]),
        ("see p. 2, 5", [2, 5]),
        ("pp. 7 to 9 and page 1", [7, 8, 9, 1]),
        ("Page 4 and Page 4 again, then pages 2–3", [4, 2, 3]),
        ("第2页是什么", [2]),
        ("请总结第2-4页", [2, 3, 4]),
        ("第2到4页", [2, 3, 4]),
        ("第5页和第1页", [5, 1]),
        ("第2、5页", [2, 5]),
        ("第二页讲了什么", [2]),
        ("第十二页", [12]),
        ("第二十页和第一百零五页", [20, 105]),
        ("第二到四页", [2, 3, 4]),
        ("第三、五页", [3, 5]),
        ("第两页", [2]),
        ("一二三页", None),
        ("看看page 6", [6]),
        ("what does this say?", None),
        ("my webpage 3 and 2 pages", None),
        ("page 0", None),
    ],
)
def test_page_requests(text, pages):
    assert parse_page_request(text, max_ranges=100) == pages


def test_a_huge_range_is_capped():
    assert len(parse_page_request("pages 1-999999", max_ranges=100)) == 1000


def test_pdf_header_anywhere_in_the_first_kilobyte():
    assert looks_like_pdf(b"%PDF-1.7\n")
    assert looks_like_pdf(b"\x00" * 500 + b"%PDF-1.4")
    assert not looks_like_pdf(b"\x00" * 1100 + b"%PDF-1.4")
    assert not looks_like_pdf(b"\x89PNG\r\n\x1a\n")


# --- rendering --------------------------------------------------------------


async def test_first_pages_within_the_budget(ten_pages):
    bundle = await prepare(ten_pages)
    assert (bundle.kind, bundle.note_key) == ("pdf", "pdf.sent_pages")
    assert bundle.note_params == {"name": "report.pdf", "pages": "1-4", "count": 4, "total": 10}
    assert [item.label for item in bundle.images] == ["page 1", "page 2", "page 3", "page 4"]
    assert [colour_of(picture(item)) for item in bundle.images] == [0, 1, 2, 3]
    for item in bundle.images:
        assert (item.image.width, item.image.height) == (724, 1024)  # A4, longest side 1024


async def test_requested_pages_in_the_order_asked(ten_pages):
    bundle = await prepare(ten_pages, pages=[7, 2, 9])
    assert [item.label for item in bundle.images] == ["page 7", "page 2", "page 9"]
    assert [colour_of(picture(item)) for item in bundle.images] == [6, 1, 8]
    assert bundle.note_params["pages"] == "7, 2, 9"


async def test_requested_pages_beyond_the_budget_are_cut(ten_pages):
    bundle = await prepare(ten_pages, pages=list(range(3, 11)), max_images=2)
    assert bundle.note_params == {"name": "report.pdf", "pages": "3-4", "count": 2, "total": 10}


async def test_pages_past_the_end_are_named(ten_pages):
    bundle = await prepare(ten_pages, pages=[9, 10, 11, 12])
    assert bundle.note_key == "pdf.sent_pages_missing"
    assert (bundle.note_params["pages"], bundle.note_params["missing"]) == ("9-10", "11-12")


async def test_only_pages_past_the_end_is_a_refusal(ten_pages):
    error = await refusal(ten_pages, pages=[12, 15])
    assert (error.key, error.params["pages"], error.params["total"]) == (
        "pdf.pages_out_of_range",
        "12, 15",
        10,
    )


async def test_landscape_and_odd_sizes_keep_the_long_side_at_1024(tmp_path):
    path = write_pdf(
        tmp_path / "slides.pdf",
        [flat_page(PALETTE[0], (842, 595)), flat_page(PALETTE[1], (100, 100))],
    )
    sizes = [(i.image.width, i.image.height) for i in (await prepare(path)).images]
    assert sizes == [(1024, 724), (1024, 1024)]


async def test_small_print_is_tiled_top_and_bottom(tmp_path):
    path = write_pdf(
        tmp_path / "contract.pdf",
        [split_page(PALETTE[0], PALETTE[2]), split_page(PALETTE[1], PALETTE[3])],
    )
    bundle = await prepare(path, tile=True)
    assert [item.label for item in bundle.images] == [
        "page 1, part 1/2",
        "page 1, part 2/2",
        "page 2, part 1/2",
        "page 2, part 2/2",
    ]
    first, second = (picture(item) for item in bundle.images[:2])
    assert first.width == 1024 and max(first.size) <= 1024  # 1.4× the untiled page's width
    assert colour_of(first, (0.1, 0.1, 0.9, 0.5)) == 0
    assert colour_of(second, (0.1, 0.5, 0.9, 0.9)) == 2
    assert bundle.note_params["pages"] == "1-2"


async def test_tiles_share_the_budget(tmp_path):
    path = write_pdf(tmp_path / "contract.pdf", [flat_page(c) for c in PALETTE[:3]])
    bundle = await prepare(path, tile=True, max_images=3)
    assert [item.label for item in bundle.images] == [
        "page 1, part 1/2",
        "page 1, part 2/2",
        "page 2, part 1/2",
    ]
    assert bundle.note_params["pages"] == "1-2"


async def test_landscape_tiles_go_left_to_right(tmp_path):
    path = write_pdf(tmp_path / "wide.pdf", [split_page(PALETTE[4], PALETTE[5], (842, 595))])
    left, right = (picture(i) for i in (await prepare(path, tile=True)).images)
    assert colour_of(left, (0.1, 0.1, 0.5, 0.9)) == 4
    assert colour_of(right, (0.5, 0.1, 0.9, 0.9)) == 5
    assert left.height == 1024


async def test_a_long_receipt_gets_more_tiles(tmp_path):
    path = write_pdf(tmp_path / "receipt.pdf", [flat_page(PALETTE[0], (200, 700))])
    bundle = await prepare(path, tile=True)
    assert [item.label for item in bundle.images][-1] == "page 1, part 4/4"


async def test_owner_password_only_still_renders(tmp_path):
    path = write_pdf(tmp_path / "locked-printing.pdf", [flat_page(PALETTE[2])], user_password="")
    assert colour_of(picture((await prepare(path)).images[0])) == 2


async def test_work_happens_off_the_event_loop(ten_pages):
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        await prepare(ten_pages, tile=True, max_images=8)
    finally:
        task.cancel()
    assert ticks > 1


async def test_concurrent_documents_are_serialised_safely(ten_pages):
    results = await asyncio.gather(*(prepare(ten_pages, pages=[p]) for p in range(1, 9)))
    assert [colour_of(picture(b.images[0])) for b in results] == list(range(8))


# --- refusals ---------------------------------------------------------------


async def test_password_protected(tmp_path):
    path = write_pdf(tmp_path / "secret.pdf", [flat_page(PALETTE[0])], user_password="hunter2")
    assert (await refusal(path)).key == "pdf.encrypted"


async def test_no_pages(tmp_path):
    path = write_pdf(tmp_path / "blank.pdf", [])
    assert (await refusal(path)).key == "pdf.empty"


async def test_no_pages_after_an_encrypted_one_is_still_empty(tmp_path):
    """PDFium reports the previous document's error for a page-less one."""
    secret = write_pdf(tmp_path / "secret.pdf", [flat_page(PALETTE[0])], user_password="x")
    blank = write_pdf(tmp_path / "blank.pdf", [])
    assert (await refusal(secret)).key == "pdf.encrypted"
    assert (await refusal(blank)).key == "pdf.empty"


@pytest.mark.parametrize(
    "content",
    [
        b"%PDF-1.7\n" + bytes(range(256)) * 20,
        b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF",
    ],
)
async def test_corrupt(tmp_path, content):
    path = tmp_path / "broken.pdf"
    path.write_bytes(content)
    assert (await refusal(path)).key == "pdf.corrupt"


async def test_too_large(ten_pages):
    assert (await refusal(ten_pages, max_bytes=1000)).key == "pdf.too_large"
