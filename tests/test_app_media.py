"""Videos, PDFs and image links through the app's callbacks, against the fake vLLM."""

from __future__ import annotations

from tests.app_helpers import photo, sent_images, sent_text
from tests.chainlit_harness import ChatHarness
from tests.mediacorpus import flat_page, write_pdf, write_video


def shown_images(chat: ChatHarness) -> list[dict]:
    return [
        data for event, data in chat.events if event == "element" and data.get("type") == "image"
    ]


async def test_a_video_is_sampled_into_timestamped_frames_the_person_can_see(chat, app, tmp_path):
    clip = write_video(tmp_path / "bug.mp4", seconds=8.0, size=(320, 180))
    await chat.send("What went wrong?", [clip])
    request = app.requests[-1]
    frames = sent_images(request)
    assert 2 <= len(frames) <= 4
    labels = [line for line in sent_text(request).splitlines() if line.startswith("bug.mp4, ")]
    assert len(labels) == len(frames) and labels[0].startswith("bug.mp4, 00:0")
    assert any("bug.mp4" in text and "frames" in text for text in chat.texts())
    assert len(shown_images(chat)) == len(frames)
    assert chat.last_text() == app.reply


async def test_follow_ups_keep_the_video_frames(chat, app, tmp_path):
    clip = write_video(tmp_path / "clip.webm", container="webm", codec="libvpx", seconds=4.0)
    await chat.send("What happens?", [clip])
    first = len(sent_images(app.requests[-1]))
    await chat.send("And at the end?")
    assert len(sent_images(app.requests[-1])) == first


async def test_a_video_shares_the_budget_with_photos(chat, app, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", seconds=8.0)
    photos = [photo(tmp_path, f"p{n}.jpg", size=(200, 100)) for n in range(3)]
    await chat.send("compare", [*photos, clip])
    assert len(sent_images(app.requests[-1])) == 4  # three photos and one frame


async def test_an_audio_file_is_refused_clearly(chat, app, tmp_path):
    from tests.mediacorpus import write_audio

    sound = write_audio(tmp_path / "memo.mp4", container="mp4", codec="aac")
    await chat.send("what is this?", [sound])
    assert any("memo.mp4" in text and "no picture" in text for text in chat.texts())
    assert sent_images(app.requests[-1]) == []


async def test_the_pdf_page_asked_for_is_sent(chat, app, tmp_path):
    pdf = write_pdf(
        tmp_path / "invoice.pdf",
        [flat_page((255, 0, 0)), flat_page((0, 255, 0)), flat_page((0, 0, 255))],
    )
    await chat.send("What is the total on page 2?", [pdf])
    request = app.requests[-1]
    (page,) = sent_images(request)
    assert max(page.size) == 1024
    red, green, blue = page.convert("RGB").getpixel((page.width // 2, page.height // 2))
    assert green > 200 and red < 60 and blue < 60
    assert "invoice.pdf, page 2" in sent_text(request)
    assert any("invoice.pdf" in text and "2" in text for text in chat.texts())


async def test_without_a_page_request_the_first_pages_are_sent_and_the_person_told(
    chat, app, tmp_path
):
    pdf = write_pdf(tmp_path / "report.pdf", [flat_page((200, 200, 200))] * 6)
    await chat.send("Summarise this", [pdf])
    assert len(sent_images(app.requests[-1])) == 4
    assert any("report.pdf" in text and "6" in text for text in chat.texts())


async def test_an_encrypted_pdf_is_refused(chat, app, tmp_path):
    pdf = write_pdf(tmp_path / "contract.pdf", [flat_page((255, 255, 255))], user_password="secret")
    await chat.send("What does it say?", [pdf])
    assert any("contract.pdf" in text and "password" in text for text in chat.texts())


async def test_a_link_to_an_internal_address_is_refused_and_the_question_answered(chat, app):
    await chat.send("What is in http://169.254.169.254/latest/meta-data/cat.png ?")
    warning = next(text for text in chat.texts() if "169.254.169.254" in text)
    assert "internal" in warning
    assert sent_images(app.requests[-1]) == [] and chat.last_text() == app.reply


async def test_an_upload_that_vanished_is_named_and_the_rest_answered(chat, app, tmp_path):
    gone = tmp_path / "gone.jpg"
    await chat.send("What are these?", [gone, photo(tmp_path, "here.jpg")])
    assert any("gone.jpg" in text and "could not be read" in text for text in chat.texts())
    assert len(sent_images(app.requests[-1])) == 1
