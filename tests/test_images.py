"""handlers.media.images: what we accept, what we refuse, and what Pixtral is sent."""

from __future__ import annotations

import base64
import io
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageFile

from handlers.core.errors import InvalidAttachment
from handlers.media import images
from handlers.media.images import image_tokens, prepare_file, prepare_image, prepare_pil
from handlers.media.pixtral import MAX_SIDE, PATCH
from tests import imagecorpus as corpus

LIMIT = 20 * 1024 * 1024


def prepare(name: str, data: bytes, max_bytes: int = LIMIT) -> images.PreparedImage:
    return prepare_image(name, data, max_bytes=max_bytes)


def decoded(prepared: images.PreparedImage) -> Image.Image:
    image = Image.open(io.BytesIO(prepared.data))
    assert image.format == prepared.mime.removeprefix("image/").upper()
    assert image.size == (prepared.width, prepared.height)
    return image.convert("RGB")


def near(pixel, colour, tolerance=40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour))


def refusal(name: str, data: bytes, max_bytes: int = LIMIT) -> InvalidAttachment:
    with pytest.raises(InvalidAttachment) as caught:
        prepare(name, data, max_bytes)
    assert caught.value.params["name"] == name
    return caught.value


# --- token cost ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "tokens"), [((1024, 768), 3120), ((1024, 1024), 4160), ((1, 1), 2)]
)
def test_image_tokens_examples(size, tokens):
    assert image_tokens(*size) == tokens


@pytest.fixture(scope="module")
def pixtral_encoder():
    """mistral_common's image encoder for Pixtral: the reference we must agree with."""
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    return MistralTokenizer.v3(is_tekken=True, is_mm=True).instruct_tokenizer.image_encoder


def test_max_side_and_patch_are_pixtrals(pixtral_encoder):
    config = pixtral_encoder.image_config
    assert (config.max_image_size, config.image_patch_size) == (MAX_SIDE, PATCH)


def test_image_tokens_agree_with_mistral_common(pixtral_encoder):
    sides = [
        1,
        2,
        15,
        16,
        17,
        100,
        511,
        512,
        513,
        767,
        768,
        1000,
        1023,
        1024,
        1025,
        1500,
        2048,
        4032,
        9248,
    ]
    rng = np.random.default_rng(3)
    sizes = [(w, h) for w in sides for h in sides]
    sizes += [tuple(int(v) for v in rng.integers(1, 20000, 2)) for _ in range(500)]
    sizes += [(10000, 10), (10, 10000), (100000, 1), (1, 100000), (65535, 17), (3000, 1), (1025, 1)]
    for width, height in sizes:
        columns, rows = pixtral_encoder._image_to_num_tokens(SimpleNamespace(size=(width, height)))
        assert image_tokens(width, height) == columns * rows + rows, (width, height)


# --- accepted images --------------------------------------------------------------


def test_12mp_photo_becomes_a_compact_jpeg_of_its_quarter_scale():
    prepared = prepare("IMG_0001.jpg", corpus.photo_jpeg())
    assert (prepared.source_format, prepared.mime) == ("JPEG", "image/jpeg")
    assert (prepared.width, prepared.height) == (1000, 750)  # ¼ of 4000×3000: 2.3 % short
    assert prepared.tokens == 3008
    assert len(prepared.data) <= 400_000
    assert b"Imagecorpus" not in prepared.data  # metadata is not passed on


def test_jpeg_decodes_at_reduced_scale(monkeypatch):
    sizes = []
    real = images._decode
    monkeypatch.setattr(images, "_decode", lambda name, im: sizes.append(im.size) or real(name, im))
    prepare("IMG_0001.jpg", corpus.photo_jpeg())
    assert sizes == [(1000, 750)]  # quarter scale, within _DRAFT_SHORTFALL of 1024 px


@pytest.mark.parametrize(
    ("size", "decoded_at", "sent"),
    [
        ((2000, 1500), (1000, 750), (1000, 750)),  # ½ is 2.3 % short of 1024 px: sent as it is
        ((1008, 2016), (504, 1008), (504, 1008)),  # portrait, ½ is 1.6 % short
        ((1950, 1300), (1950, 1300), (1024, 683)),  # ½ is 4.8 % short: full decode, resized
        ((2100, 1400), (1050, 700), (1024, 683)),  # ½ is over 1024 px: decoded at ½, resized
        ((2048, 1536), (1024, 768), (1024, 768)),  # what the page script uploads
    ],
)
def test_a_draft_just_short_of_1024px_is_sent_as_it_is(monkeypatch, size, decoded_at, sent):
    sizes = []
    real = images._decode
    monkeypatch.setattr(images, "_decode", lambda name, im: sizes.append(im.size) or real(name, im))
    prepared = prepare("photo.jpg", corpus.encode(corpus.photo(*size), "JPEG", quality=92))
    assert sizes == [decoded_at]
    assert (prepared.width, prepared.height) == sent
    assert prepared.tokens == image_tokens(*sent)


def test_a_jpeg_sliver_is_decoded_without_asking_for_a_zero_pixel_side():
    prepared = prepare("sliver.jpg", corpus.encode(Image.new("RGB", (4000, 3), "red"), "JPEG"))
    assert (prepared.width, prepared.height) == (1024, 1)


def test_the_decoders_scaling_is_as_faithful_as_a_resize():
    """The reduced decode stands in for decode + resize: against the full
    picture scaled down with LANCZOS, it is as close as the resize would be."""
    data = corpus.encode(corpus.photo(2000, 1500), "JPEG", quality=92)
    reference = np.asarray(
        Image.open(io.BytesIO(data)).resize((1000, 750), Image.Resampling.LANCZOS), dtype=float
    )
    sent = np.asarray(decoded(prepare("photo.jpg", data)), dtype=float)
    resized = Image.open(io.BytesIO(data)).resize((1000, 750), images._PHOTO_RESAMPLE)
    encoded = images._save(resized, "JPEG", quality=images.JPEG_QUALITY)  # as `sent` was
    via_resize = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"), dtype=float)

    def psnr(image: np.ndarray) -> float:
        return 10 * np.log10(255**2 / ((image - reference) ** 2).mean())

    assert psnr(sent) >= psnr(via_resize) - 1.5, (psnr(sent), psnr(via_resize))


@pytest.mark.parametrize(
    ("fmt", "orientation", "size"),
    [
        ("JPEG", 6, (3000, 2000)),
        ("JPEG", 8, (3000, 2000)),
        ("JPEG", 3, (3000, 2000)),
        ("TIFF", 6, (1500, 1000)),
        ("PNG", 8, (1500, 1000)),
    ],
)
def test_exif_orientation_is_applied(fmt, orientation, size):
    prepared = prepare("turned", corpus.rotated(orientation, *size, fmt=fmt))
    assert (prepared.width, prepared.height) == (
        1024,
        683,
    )  # shown landscape, whatever it was stored as
    image = decoded(prepared)
    w, h = image.size
    assert near(image.getpixel((w // 4, h // 4)), corpus.RED)
    assert near(image.getpixel((3 * w // 4, h // 4)), corpus.GREEN)
    assert near(image.getpixel((w // 4, 3 * h // 4)), corpus.BLUE)


def test_transparency_becomes_white():
    image = decoded(prepare("logo.png", corpus.transparent_png()))
    assert near(image.getpixel((10, 10)), corpus.RED, 0)
    assert image.getpixel((50, 10)) == corpus.WHITE


@pytest.mark.parametrize("mode", ["P", "L", "RGB"])
def test_colour_key_transparency_becomes_white(mode):
    data = corpus.keyed_png(mode)
    opaque = Image.open(io.BytesIO(data)).convert("RGB").getpixel((10, 10))
    image = decoded(prepare("icon.png", data))
    assert (image.getpixel((10, 10)), image.getpixel((50, 10))) == (opaque, corpus.WHITE)


def test_grey_with_alpha_becomes_white():
    image = decoded(prepare("mask.png", corpus.grey_alpha_png()))
    assert (image.getpixel((10, 10)), image.getpixel((50, 10))) == ((0, 0, 0), corpus.WHITE)


def test_cmyk_jpeg_becomes_rgb():
    prepared = prepare("print.jpg", corpus.cmyk_jpeg())
    assert near(decoded(prepared).getpixel((10, 10)), (0, 255, 255))


def test_16_bit_png_is_scaled_not_clipped():
    assert near(
        decoded(prepare("scan16.png", corpus.png_16bit())).getpixel((5, 5)), (128, 128, 128), 2
    )


def test_one_bit_image():
    image = decoded(prepare("fax.png", corpus.one_bit_png()))
    assert image.getpixel((10, 10)) == (0, 0, 0)
    assert image.getpixel((50, 10)) == corpus.WHITE


def test_animated_gif_uses_the_first_frame():
    prepared = prepare("party.gif", corpus.animated_gif())
    assert prepared.source_format == "GIF"
    assert decoded(prepared).getpixel((5, 5)) == corpus.RED


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("BMP", {}),
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
        ("WEBP", {"lossless": True}),
        ("WEBP", {"quality": 80}),
    ],
)
def test_other_formats(fmt, options):
    prepared = prepare(f"picture.{fmt.lower()}", corpus.simple(fmt, **options))
    assert prepared.source_format == fmt
    assert (prepared.width, prepared.height) == (64, 48)
    assert near(decoded(prepared).getpixel((5, 5)), corpus.GREEN, 8)


def test_heic():
    data = corpus.simple("HEIF", size=(1600, 1200), quality=80)  # pillow-heif ships an x265 encoder
    assert data[4:12] == b"ftypheic"
    prepared = prepare("IMG_1234.HEIC", data)
    assert prepared.source_format == "HEIF"
    assert (prepared.width, prepared.height) == (1024, 768)
    assert near(decoded(prepared).getpixel((500, 400)), corpus.GREEN, 12)


def test_multi_picture_jpeg():
    prepared = prepare("depth.jpg", corpus.mpo())
    assert prepared.source_format == "MPO"
    assert near(decoded(prepared).getpixel((5, 5)), corpus.GREEN, 8)


def test_the_content_decides_not_the_name():
    assert prepare("holiday.png", corpus.photo_jpeg(800, 600)).source_format == "JPEG"


def test_tiny_image():
    prepared = prepare("dot.png", corpus.simple("PNG", size=(1, 1)))
    assert (prepared.width, prepared.height, prepared.tokens) == (1, 1, 2)


def test_extreme_aspect_ratio_keeps_at_least_one_pixel():
    prepared = prepare("ruler.png", corpus.simple("PNG", size=(10000, 10)))
    assert (prepared.width, prepared.height) == (1024, 1)
    assert prepared.tokens == 64 + 1


def test_screenshot_stays_png_and_photo_goes_jpeg():
    screenshot = prepare("screen.png", corpus.encode(corpus.screenshot(), "PNG"))
    assert (screenshot.mime, screenshot.width, screenshot.height) == ("image/png", 1024, 576)
    photo_as_png = prepare("photo.png", corpus.encode(corpus.photo(1200, 900), "PNG"))
    assert photo_as_png.mime == "image/jpeg"


def test_prepare_pil_for_frames_made_elsewhere():
    page = Image.new("RGBA", (2480, 3508), (0, 0, 0, 0))  # an A4 page at 300 dpi
    page.paste((0, 0, 0, 255), (0, 0, 1240, 1754))
    prepared = prepare_pil("report.pdf", page, source_format="PDF")
    assert (prepared.source_format, prepared.width, prepared.height) == ("PDF", 724, 1024)
    image = decoded(prepared)
    assert image.getpixel((100, 100)) == (0, 0, 0)
    assert image.getpixel((600, 900)) == corpus.WHITE
    assert page.mode == "RGBA" and page.size == (2480, 3508)  # left as it was


def test_content_part_is_a_data_url():
    prepared = prepare("dot.png", corpus.simple("PNG", size=(4, 4)))
    part = prepared.to_content_part()
    assert part["type"] == "image_url"
    header, payload = part["image_url"]["url"].split(",", 1)
    assert header == f"data:{prepared.mime};base64"
    assert base64.b64decode(payload) == prepared.data
    assert "data=" not in repr(prepared)


# --- refused files --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("page.jpg", corpus.HTML),
        ("drawing.svg", corpus.SVG),
        ("noise.jpg", corpus.random_bytes()),
        ("notes.png", b"just some text that someone renamed"),
    ],
)
def test_not_an_image(name, data):
    error = refusal(name, data)
    assert error.key == "attachment.unsupported"
    assert error.params["formats"] == "BMP, GIF, HEIC, JPEG, PNG, TIFF, WebP"


def test_pdf_has_its_own_key():
    assert refusal("invoice.pdf", corpus.PDF).key == "attachment.pdf"


def test_empty_file():
    assert refusal("empty.jpg", b"").key == "attachment.empty"


def test_over_max_bytes():
    error = refusal("IMG_0001.jpg", corpus.photo_jpeg(), max_bytes=2 * 1024 * 1024)
    assert error.key == "attachment.too_big"
    assert error.params["limit_mb"] == 2
    assert error.params["size_mb"] > 2


def test_truncated_jpeg_is_refused_not_padded():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    data = corpus.photo_jpeg(800, 600)
    assert refusal("cut.jpg", data[: len(data) // 2]).key == "attachment.corrupt"


def test_a_heic_cut_off_anywhere_is_called_damaged():
    data = corpus.encode(corpus.photo(800, 600), "HEIF")
    for length in (40, 200, len(data) // 2):
        assert refusal("cut.heic", data[:length]).key == "attachment.corrupt"


def test_truncated_png_is_refused():
    data = corpus.encode(corpus.photo(400, 300), "PNG")
    assert refusal("cut.png", data[: len(data) // 2]).key == "attachment.corrupt"


@pytest.mark.parametrize("size", [(20000, 20000), (10000, 10000), (8400, 8400)])
def test_decompression_bomb_is_refused_from_the_header(size):
    # 10000×10000 is where Pillow's own guard would only warn (an error here).
    data = corpus.png_header_only(*size)
    assert len(data) < 1000
    error = refusal("bomb.png", data)
    assert error.key == "attachment.too_many_pixels"
    assert (error.params["width"], error.params["height"]) == size
    assert error.params["limit_mp"] == images.MAX_PIXELS // 1_000_000


def test_just_under_the_pixel_limit_is_decoded():
    # Declares 8000×8000 = 64 MP but holds one row: decoding is attempted, and fails.
    assert refusal("big.png", corpus.png_header_only(8000, 8000)).key == "attachment.corrupt"


# --- from disk ------------------------------------------------------------------


async def test_prepare_file_works_in_a_thread(tmp_path, monkeypatch):
    path = tmp_path / "upload"
    path.write_bytes(corpus.rotated(6, 600, 400))
    threads = []
    real = images.prepare_image

    def recording(*args, **kwargs):
        threads.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(images, "prepare_image", recording)
    prepared = await prepare_file("photo.jpg", path, max_bytes=LIMIT)
    assert (prepared.name, prepared.width, prepared.height) == ("photo.jpg", 600, 400)
    assert threads and threads[0] != threading.get_ident()


async def test_prepare_file_refuses_by_size_without_reading(tmp_path):
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as file:
        file.truncate(2**34)  # sparse: 16 GB on paper, nothing on disk
    with pytest.raises(InvalidAttachment) as caught:
        await prepare_file("huge.jpg", path, max_bytes=LIMIT)
    assert caught.value.key == "attachment.too_big"
    assert caught.value.params == {"name": "huge.jpg", "size_mb": 16384, "limit_mb": 20}


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_display_p3_photo_is_sent_in_srgb_without_its_profile(fmt):
    # sRGB's pure red is (234, 51, 35) in Display P3; the prepared image must say (255, 0, 0).
    p3_red = Image.new("RGB", (1200, 900), (234, 51, 35))
    data = corpus.encode(
        p3_red,
        fmt,
        icc_profile=corpus.display_p3_icc(),
        **({"quality": 95} if fmt == "JPEG" else {}),
    )
    prepared = prepare(f"red.{fmt.lower()}", data)
    sent = Image.open(io.BytesIO(prepared.data))
    assert "icc_profile" not in sent.info  # no profile: the pixels are plain sRGB
    assert near(sent.convert("RGB").getpixel((50, 50)), (255, 0, 0), 6)


def test_a_photo_without_a_profile_keeps_its_colours():
    prepared = prepare(
        "plain.png", corpus.encode(Image.new("RGB", (1200, 900), (234, 51, 35)), "PNG")
    )
    assert near(decoded(prepared).getpixel((50, 50)), (234, 51, 35), 2)


def test_a_damaged_profile_is_ignored():
    data = corpus.encode(
        Image.new("RGB", (64, 48), (234, 51, 35)), "PNG", icc_profile=b"not a profile" * 10
    )
    assert near(decoded(prepare("odd.png", data)).getpixel((5, 5)), (234, 51, 35), 2)
