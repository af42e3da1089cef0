"""handlers.media.heic: iPhone-shaped HEICs (a grid of tiles) decoded by FFmpeg straight
to 1024 px give the picture pillow-heif gives — upright, same colours — and anything
else is left to pillow-heif, which refuses damaged files as before."""

from __future__ import annotations

import functools
import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from handlers.core.errors import InvalidAttachment
from handlers.media import colour, heic, images
from tests import imagecorpus as corpus

LIMIT = 20 * 1024 * 1024


@functools.cache
def grid(orientation: int = 1, picture: str = "quadrants") -> bytes:
    """2304×1536 in 54 tiles of 256 px, 1024×683 once prepared."""
    image = corpus.quadrants(2304, 1536) if picture == "quadrants" else corpus.photo(2304, 1536)
    return corpus.heic_grid(image, orientation=orientation, icc=corpus.display_p3_icc())


def psnr(a: Image.Image, b: Image.Image) -> float:
    error = ((np.asarray(a, float) - np.asarray(b, float)) ** 2).mean()
    return 10 * np.log10(255**2 / error)


def as_pillow_heif_decodes(data: bytes, size: tuple[int, int]) -> Image.Image:
    """pillow-heif's full decode, box-averaged to `size` and converted to sRGB
    from its profile, as decode_reduced's result is."""
    image = Image.open(io.BytesIO(data))
    small = image.convert("RGB").resize(size, Image.Resampling.BOX)
    return colour.in_srgb(small, image.info.get("icc_profile") or b"")


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_a_grid_is_decoded_at_1024_px_upright_as_pillow_heif_decodes_it(orientation):
    data = grid(orientation)
    assert (
        heic.read_grid(data).rotation == {1: 0, 3: 2, 6: 3, 8: 1}[orientation]
    )  # EXIF became irot
    fast = heic.decode_reduced(data, images._fit)
    assert fast is not None and fast.size == (
        1024,
        683,
    )  # as stored; the turn is its EXIF orientation
    upright = ImageOps.exif_transpose(fast)
    assert psnr(upright, as_pillow_heif_decodes(data, upright.size)) > 30  # wrong turns: under 10


def test_a_real_looking_photo_decodes_as_pillow_heif_decodes_it():
    data = grid(picture="photo")
    fast = heic.decode_reduced(data, images._fit)
    assert psnr(fast, as_pillow_heif_decodes(data, fast.size)) > 35


def test_the_tiles_come_out_in_srgb_without_the_profile():
    """decode_reduced converts each tile from the grid's Display P3 itself, on
    both cores, so the caller must not convert them again."""
    fast = heic.decode_reduced(grid(), images._fit)
    assert fast is not None and "icc_profile" not in fast.info
    assert fast.getpixel((10, 10))[0] >= 245  # the corpus's P3 red (230, 20, 20), in sRGB


@pytest.mark.parametrize("orientation", [1, 6])
def test_the_prepared_photo_is_upright_and_in_srgb(orientation):
    prepared = images.prepare_image("IMG_0001.HEIC", grid(orientation), max_bytes=LIMIT)
    assert prepared.source_format == "HEIF"
    upright = Image.open(io.BytesIO(prepared.data)).convert("RGB")
    reference = images.prepare_pil(
        "ref", Image.open(io.BytesIO(grid(orientation))), source_format="HEIF"
    )
    assert (prepared.width, prepared.height) == (reference.width, reference.height)
    assert psnr(upright, Image.open(io.BytesIO(reference.data)).convert("RGB")) > 30
    # The corpus's red (230, 20, 20) in Display P3 is a more saturated red in sRGB.
    top_left = (
        upright.getpixel((10, 10))
        if orientation == 1
        else upright.getpixel((upright.width - 10, 10))
    )
    assert top_left[0] >= 245 and top_left[1] <= 8, top_left


def test_the_fast_path_is_taken_for_a_grid(monkeypatch):
    taken = []
    monkeypatch.setattr(
        heic, "_decode", lambda *args: taken.append(args) or Image.new("RGB", (1024, 683))
    )
    images.prepare_image("IMG_0001.HEIC", grid(), max_bytes=LIMIT)
    assert len(taken) == 1


# Not covered: a grid with an alpha item (read_grid refuses it), which pillow-heif cannot write.
@pytest.mark.parametrize("shape", ["no grid", "alpha", "avif-like garbage"])
def test_other_shapes_are_left_to_pillow_heif(shape):
    data = {
        "no grid": lambda: corpus.encode(corpus.photo(800, 600), "HEIF"),
        "alpha": lambda: corpus.encode(
            Image.new("RGBA", (1100, 600), (255, 0, 0, 128)), "HEIF", tile_size=256
        ),
        "avif-like garbage": lambda: grid()[:32] + corpus.random_bytes(4096),
    }[shape]()
    assert heic.decode_reduced(data, images._fit) is None


def test_a_transparent_grid_still_goes_on_white():
    data = corpus.encode(Image.new("RGBA", (1100, 600), (255, 0, 0, 0)), "HEIF", tile_size=256)
    prepared = images.prepare_image("clear.heic", data, max_bytes=LIMIT)
    assert Image.open(io.BytesIO(prepared.data)).convert("RGB").getpixel((50, 50)) >= (
        245,
        245,
        245,
    )


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_a_grid_cut_off_is_called_damaged_as_before(fraction):
    data = grid()
    with pytest.raises(InvalidAttachment) as caught:
        images.prepare_image("cut.heic", data[: int(len(data) * fraction)], max_bytes=LIMIT)
    assert caught.value.key == "attachment.corrupt"


def test_a_grid_over_the_size_limit_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(heic, "decode_reduced", lambda *args: pytest.fail("decoded"))
    with pytest.raises(InvalidAttachment) as caught:
        images.prepare_image("big.heic", grid(), max_bytes=len(grid()) - 1)
    assert caught.value.key == "attachment.too_big"


def test_a_grid_over_the_pixel_limit_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 2304 * 1536 - 1)
    monkeypatch.setattr(heic, "decode_reduced", lambda *args: pytest.fail("decoded"))
    with pytest.raises(InvalidAttachment) as caught:
        images.prepare_image("huge.heic", grid(), max_bytes=LIMIT)
    assert caught.value.key == "attachment.too_many_pixels"


@pytest.mark.parametrize("box", [b"iloc", b"ipma"])
def test_a_table_claiming_more_entries_than_its_box_holds_is_left_to_pillow_heif(box):
    """A hostile file's item count (up to 2**32 in iloc version 2) must not make
    the parser read past its box: past the end of the bytes it would read zeros
    for ever, one worker thread pinned."""
    data = bytearray(grid())
    start = data.index(box) + 4  # the box's body: version, flags, then its fields
    counter = start + (6 if box == b"iloc" else 4)
    width = (2 if data[start] < 2 else 4) if box == b"iloc" else 4
    data[counter : counter + width] = (2 ** (8 * width) - 1).to_bytes(width, "big")
    with pytest.raises(heic._Unusual):
        heic.read_grid(bytes(data))
    assert heic.decode_reduced(bytes(data), images._fit) is None
