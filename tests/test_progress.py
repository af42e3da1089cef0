"""Progress of long work (handlers/core/progress.py), and the stop button stopping it."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from handlers.core import progress
from handlers.core.progress import Board, Progress, WorkCancelled
from handlers.media import frame_sampler, video
from handlers.media.video import prepare_video
from tests.app_helpers import sent_images
from tests.mediacorpus import flat_page, write_pdf, write_video
from tests.waiting import Watched, eventually


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def collect(board: Board, work) -> tuple[list[Progress], object]:
    found: list = []
    items = [item async for item in board.follow(work, found)]
    return items, found[0]


async def test_updates_from_a_thread_arrive_in_order_and_throttled(monkeypatch):
    monkeypatch.setattr(progress, "MIN_INTERVAL_S", 2)  # whole numbers: no rounding
    clock = Clock()
    board = Board(clock)
    meter = board.meter("clip", "progress.video", name="clip.mp4")

    def work() -> str:
        meter.start(10)
        for step in range(10):
            clock.now = step  # two steps per interval
            meter.advance()
        return "done"

    items, result = await collect(board, asyncio.to_thread(work))
    assert result == "done"
    done = [item.params["done"] for item in items]
    assert done == [0, 3, 5, 7, 9, 10]  # the start, one per interval, and the end always
    assert all(item.id == "clip" and item.params["name"] == "clip.mp4" for item in items)


async def test_a_cancelled_follower_stops_the_worker_at_its_next_check():
    board = Board()
    meter = board.meter("doc", "progress.pdf", name="doc.pdf")
    steps, stopped = [], threading.Event()

    def work() -> None:
        meter.start(1000)
        try:
            for step in range(1000):
                time.sleep(0.01)
                meter.advance()
                steps.append(step)
        except WorkCancelled:
            stopped.set()
            raise

    async def consume() -> None:
        async for _ in board.follow(asyncio.to_thread(work), []):
            pass

    task = asyncio.create_task(consume())
    await eventually(lambda: len(steps) >= 3, "the worker has made 3 steps")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(stopped.wait, 5)
    assert len(steps) < 1000


@pytest.fixture
def counted_frames(monkeypatch):
    """Every frame the sampler turns into a picture, counted, and slowed so a
    short clip takes long enough to stop half-way."""
    decoded = []
    real = frame_sampler._shot

    def slow_shot(*args, **kwargs):
        time.sleep(0.05)
        decoded.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(frame_sampler, "_shot", slow_shot)
    return decoded


@pytest.fixture
def sampling(monkeypatch) -> Watched:
    """Each video's sampling job, watched as it ends on its worker thread (it ends
    after the second thread it samples the later half on)."""
    watched = Watched(video._prepare)
    monkeypatch.setattr(video, "_prepare", watched)
    return watched


async def test_a_long_video_reports_its_moments(tmp_path):
    clip = write_video(tmp_path / "long.mp4", seconds=600, fps=1)
    board = Board()
    meter = board.meter("k", "progress.video", name="long.mp4")
    work = prepare_video(
        "long.mp4", clip, max_images=4, max_bytes=10**8, max_duration_s=3600, meter=meter
    )
    items, bundle = await collect(board, work)
    assert items[0].params == {"name": "long.mp4", "done": 0, "total": 36}
    assert items[-1].params["done"] == 36 and len(bundle.images) == 4
    done = [item.params["done"] for item in items]
    assert done == sorted(done)


async def test_a_long_pdf_reports_its_pages(tmp_path):
    pdf = write_pdf(tmp_path / "report.pdf", [flat_page((200, 0, 0))] * 6)
    from handlers.media.documents import prepare_pdf

    board = Board()
    work = prepare_pdf(
        "report.pdf",
        pdf,
        pages=None,
        max_images=4,
        tile=False,
        max_bytes=10**8,
        meter=board.meter("k", "progress.pdf", name="report.pdf"),
    )
    items, bundle = await collect(board, work)
    assert (items[0].params["done"], items[0].params["total"]) == (0, 4)
    assert items[-1].params["done"] == 4 and len(bundle.images) == 4


async def test_a_video_shows_progress_then_its_frames_in_the_same_message(chat, app, tmp_path):
    clip = write_video(tmp_path / "long.mp4", seconds=600, fps=1)
    await chat.send("What happens?", [clip])
    mine = [
        data
        for event, data in chat.events
        if event in ("new_message", "update_message") and "long.mp4" in data["output"]
    ]
    assert len({data["id"] for data in mine}) == 1  # one message, updated in place
    assert mine[0]["output"].startswith("◷ Sampling long.mp4: 0 of 36 moments")
    assert mine[-1]["output"].startswith("ℹ️ ") and "36" in mine[-1]["output"]
    assert len(sent_images(app.requests[-1])) == 4
    assert chat.last_text() == app.reply


async def test_stop_while_sampling_stops_decoding_and_the_chat_goes_on(
    chat, app, tmp_path, counted_frames, sampling
):
    clip = write_video(tmp_path / "long.mp4", seconds=600, fps=1)
    task = asyncio.create_task(chat.send("What happens?", [clip]))
    await eventually(lambda: len(counted_frames) >= 3, "3 frames are decoded")
    task.cancel()  # what Chainlit's stop button does to the running task
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: sampling.ended, "the sampling threads reach their next check")
    assert sampling.ended == ["WorkCancelled"] and sampling.running == 0
    stopped_at = len(counted_frames)
    assert stopped_at < 72  # 36 moments, 2 candidates each
    assert app.requests == []  # nothing was asked of the model
    assert not any(text.startswith("◷") for text in chat.texts())  # no stale "sampling…"
    await chat.send("Are you there?")
    assert chat.last_text() == app.reply
    assert len(counted_frames) == stopped_at  # nothing decoded since


async def test_a_link_says_it_is_fetching_then_what_arrived(chat, app, monkeypatch):
    from handlers.chat import attachments
    from tests.mediacorpus import image_bytes

    async def fetch(url, **_):
        return "example.com/cat.png", image_bytes("PNG", (300, 200))

    monkeypatch.setattr(attachments, "fetch_link", fetch)
    await chat.send("What is in https://example.com/cat.png ?")
    mine = [
        data["output"]
        for event, data in chat.events
        if event in ("new_message", "update_message") and "cat.png" in data["output"]
    ]
    assert mine == ["◷ Fetching example.com/cat.png…", "✓ Fetched example.com/cat.png (300×200)."]


async def test_stopping_a_long_pdf_stops_rendering_between_pages(tmp_path, monkeypatch):
    from handlers.media import documents

    rendered, real = [], documents._render_page

    def slow_page(*args):
        time.sleep(0.1)
        rendered.append(1)
        return real(*args)

    monkeypatch.setattr(documents, "_render_page", slow_page)
    rendering = Watched(documents._prepare)
    monkeypatch.setattr(documents, "_prepare", rendering)
    pdf = write_pdf(tmp_path / "manual.pdf", [flat_page((0, 0, 200))] * 40)
    board = Board()
    work = documents.prepare_pdf(
        "manual.pdf",
        pdf,
        pages=None,
        max_images=40,
        tile=False,
        max_bytes=10**8,
        meter=board.meter("k", "progress.pdf", name="manual.pdf"),
    )

    async def consume() -> None:
        async for _ in board.follow(work, []):
            pass

    task = asyncio.create_task(consume())
    await eventually(lambda: len(rendered) >= 2, "2 pages are rendered")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: rendering.ended, "the rendering thread reaches its next check")
    assert rendering.ended == ["WorkCancelled"] and len(rendered) < 40
