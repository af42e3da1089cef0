"""Photos read while their upload arrives: handlers.core.arriving, and
handlers.media.images.prepare_arriving against prepare_image on the whole file."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from PIL import Image

from handlers.core.arriving import Abandoned, ArrivingBytes
from handlers.core.errors import InvalidAttachment
from handlers.media.images import PreparedImage, prepare_arriving, prepare_image
from tests import imagecorpus

MAX_BYTES = 20 * 1024 * 1024
PIECE = 64 * 1024  # what uvicorn hands the parser at a time


def reading(function: Callable[[], object]) -> Future:
    """`function` on a thread of its own, as the app's arriving pool runs it."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(function)
    pool.shutdown(wait=False)
    return future


def fed(arriving: ArrivingBytes, data: bytes, *, whole: bool = True) -> None:
    for start in range(0, len(data), PIECE):
        arriving.append(data[start : start + PIECE])
    if whole:
        arriving.finish()


def test_a_reader_gets_what_has_arrived_and_waits_for_the_rest() -> None:
    arriving = ArrivingBytes(limit=100)
    arriving.append(b"abc")
    assert arriving.read(2) == b"ab"
    rest = reading(lambda: arriving.read(5))
    assert not rest.done()  # 1 of the 5 bytes has arrived
    arriving.append(b"defgh")
    assert rest.result(timeout=5) == b"cdefg"
    end = reading(lambda: arriving.seek(0, io.SEEK_END))
    arriving.finish()
    assert end.result(timeout=5) == 8
    assert arriving.read(10) == b""  # the end of the file
    assert arriving.seek(0) == 0 and arriving.read() == b"abcdefgh"


def test_a_reader_is_told_when_the_bytes_stop_and_the_bytes_are_let_go() -> None:
    arriving = ArrivingBytes(limit=100)
    arriving.append(b"abc")
    waiting = reading(lambda: arriving.read(10))
    arriving.abandon()
    with pytest.raises(Abandoned):
        waiting.result(timeout=5)
    with pytest.raises(Abandoned):
        arriving.read(1)
    arriving.append(b"more")  # a late piece changes nothing
    with pytest.raises(Abandoned):
        arriving.read()


def test_more_than_the_limit_is_not_held() -> None:
    arriving = ArrivingBytes(limit=5)
    arriving.append(b"abc")
    arriving.append(b"def")  # 6 bytes in all
    with pytest.raises(Abandoned):
        arriving.read(1)


def test_a_finished_arrival_is_not_abandoned_afterwards() -> None:
    arriving = ArrivingBytes(limit=10)
    arriving.append(b"abc")
    arriving.finish()
    arriving.abandon()
    assert arriving.read() == b"abc"


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_a_jpeg_prepared_as_it_arrives_is_the_one_prepared_whole(orientation: int) -> None:
    data = imagecorpus.rotated(orientation, 4000, 3000)
    arriving = ArrivingBytes(MAX_BYTES)
    prepared = reading(lambda: prepare_arriving("IMG.jpg", arriving, max_bytes=MAX_BYTES))
    fed(arriving, data)
    streamed = prepared.result(timeout=30)
    assert isinstance(streamed, PreparedImage)
    assert streamed == prepare_image("IMG.jpg", data, max_bytes=MAX_BYTES)  # every field and byte
    upright = Image.open(io.BytesIO(streamed.data))
    assert upright.width > upright.height  # turned as its EXIF says


def test_a_display_p3_jpeg_arrives_in_srgb() -> None:
    picture = Image.new("RGB", (2048, 1536), (230, 20, 20))
    data = imagecorpus.encode(picture, "JPEG", quality=95, icc_profile=imagecorpus.display_p3_icc())
    arriving = ArrivingBytes(MAX_BYTES)
    prepared = reading(lambda: prepare_arriving("p3.jpg", arriving, max_bytes=MAX_BYTES))
    fed(arriving, data)
    image = Image.open(io.BytesIO(prepared.result(timeout=30).data))
    red, green, blue = image.convert("RGB").getpixel((10, 10))
    assert red >= 245 and green <= 12 and blue <= 12  # P3's red is redder than sRGB's
    assert "icc_profile" not in image.info


def test_a_jpeg_cut_off_is_refused_as_damaged_when_the_upload_ended_there() -> None:
    data = imagecorpus.photo_jpeg(2000, 1500)
    arriving = ArrivingBytes(MAX_BYTES)
    prepared = reading(lambda: prepare_arriving("cut.jpg", arriving, max_bytes=MAX_BYTES))
    fed(arriving, data[: len(data) // 2])
    with pytest.raises(InvalidAttachment) as refusal:
        prepared.result(timeout=30)
    assert refusal.value.key == "attachment.corrupt"


def test_an_upload_that_stops_midway_gives_nothing_and_frees_its_thread() -> None:
    data = imagecorpus.photo_jpeg(2000, 1500)
    arriving = ArrivingBytes(MAX_BYTES)
    prepared = reading(lambda: prepare_arriving("gone.jpg", arriving, max_bytes=MAX_BYTES))
    fed(arriving, data[: len(data) // 2], whole=False)
    arriving.abandon()
    assert prepared.result(timeout=30) is None  # the turn would prepare the stored file


def test_a_jpeg_over_the_limit_is_left_to_the_usual_refusal() -> None:
    data = imagecorpus.photo_jpeg(2000, 1500)
    arriving = ArrivingBytes(limit=len(data) - 1)
    prepared = reading(lambda: prepare_arriving("big.jpg", arriving, max_bytes=len(data) - 1))
    fed(arriving, data)
    assert prepared.result(timeout=30) is None  # prepare_file then says how big it is


def test_a_jpeg_over_max_bytes_but_held_whole_is_refused_as_too_big() -> None:
    data = imagecorpus.photo_jpeg(640, 480)
    arriving = ArrivingBytes(MAX_BYTES)
    prepared = reading(lambda: prepare_arriving("big.jpg", arriving, max_bytes=len(data) - 1))
    fed(arriving, data)
    with pytest.raises(InvalidAttachment) as refusal:
        prepared.result(timeout=30)
    assert refusal.value.key == "attachment.too_big"


def test_the_reader_thread_is_not_held_by_an_arrival_nobody_ends(monkeypatch) -> None:
    monkeypatch.setattr("handlers.core.arriving.WAIT_SECONDS", 0.2)
    arriving = ArrivingBytes(MAX_BYTES)
    arriving.append(imagecorpus.photo_jpeg(640, 480)[:1000])
    done = threading.Event()
    prepared = reading(
        lambda: (prepare_arriving("slow.jpg", arriving, max_bytes=MAX_BYTES), done.set())[0]
    )
    assert done.wait(timeout=10)
    assert prepared.result() is None
