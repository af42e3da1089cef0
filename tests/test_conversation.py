import pytest
from PIL import Image

from handlers.chat.conversation import Conversation
from handlers.chat.tokens import CountedMessage, TokenCounter
from handlers.core.errors import PromptTooLong
from handlers.media.bundle import ImagePart
from handlers.media.images import prepare_pil

SYSTEM = "You are a careful visual analyst."


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


def part(name: str, size=(64, 48)) -> ImagePart:
    image = prepare_pil(name, Image.new("RGB", size, "red"), source_format="PNG")
    return ImagePart(key=f"key-{name}", image=image)


def wire_images(message: dict) -> int:
    return sum(1 for piece in message["content"] if piece["type"] == "image_url")


def wire_text(message: dict) -> str:
    if isinstance(message["content"], str):
        return message["content"]
    return "\n".join(piece["text"] for piece in message["content"] if piece["type"] == "text")


def build(
    conversation: Conversation,
    counter: TokenCounter,
    *,
    max_images=4,
    budget=60000,
    system_first=True,
):
    return conversation.build_request(
        SYSTEM, counter, max_images=max_images, prompt_budget=budget, system_first=system_first
    )


def images_in(request) -> int:
    return sum(wire_images(m) for m in request.messages if m["role"] == "user")


def test_history_is_sent_with_the_system_text_leading_the_first_message_and_images_before_text(
    counter,
):
    conversation = Conversation()
    conversation.add_user("u1", "What is this?", [part("a.jpg")])
    conversation.add_assistant("u1:answer", "A red square.")
    conversation.add_user("u2", "And its colour?")
    request = build(conversation, counter)
    assert [m["role"] for m in request.messages] == ["user", "assistant", "user"]
    first = request.messages[0]["content"]
    assert first[0] == {"type": "text", "text": SYSTEM}
    assert first[1]["type"] == "image_url" and first[1]["image_url"]["url"].startswith(
        "data:image/"
    )
    assert first[2] == {"type": "text", "text": "What is this?"}
    assert request.messages[1]["content"] == "A red square."
    assert request.messages[2]["content"] == [{"type": "text", "text": "And its colour?"}]


def test_mistrals_placement_sends_a_system_message(counter):
    conversation = Conversation()
    conversation.add_user("u1", "What is this?", [part("a.jpg")])
    request = build(conversation, counter, system_first=False)
    assert request.messages[0] == {"role": "system", "content": SYSTEM}
    assert request.messages[1]["content"][0]["type"] == "image_url"


def test_a_follow_up_only_adds_to_the_end_of_the_last_request(counter):
    conversation = Conversation()
    conversation.add_user("u1", "What is this?", [part("a.jpg")])
    before = build(conversation, counter).messages
    conversation.add_assistant("a1", "A red square.")
    conversation.add_user("u2", "Is it big?")
    after = build(conversation, counter).messages
    assert after[: len(before)] == before


def test_only_the_newest_images_are_sent_and_older_ones_become_placeholders(counter):
    conversation = Conversation()
    conversation.add_user("u1", "first", [part("old1.jpg"), part("old2.jpg"), part("mid.jpg")])
    conversation.add_assistant("a1", "ok")
    conversation.add_user("u2", "second", [part("new1.jpg"), part("new2.jpg"), part("new3.jpg")])
    request = build(conversation, counter)
    assert images_in(request) == 3  # hidden in one step, down to the new turn's three
    assert "[earlier image: old1.jpg]" in wire_text(request.messages[0])
    assert "[earlier image: mid.jpg]" in wire_text(request.messages[0])
    assert wire_images(request.messages[0]) == 0
    assert request.newly_hidden == ("old1.jpg", "old2.jpg", "mid.jpg")


def test_a_videos_sheets_going_out_of_view_name_the_video_once(counter):
    conversation = Conversation()
    sheets = [
        ImagePart(key=f"clip-{i}", image=part("clip.mp4").image, label=f"clip.mp4, sheet {i}")
        for i in range(3)
    ]
    conversation.add_user("u1", "What happens?", sheets)
    conversation.add_assistant("a1", "ok")
    conversation.add_user("u2", "And these?", [part("a.jpg"), part("b.jpg"), part("c.jpg")])
    assert build(conversation, counter).newly_hidden == ("clip.mp4",)


def test_past_the_limit_images_are_hidden_in_steps_that_then_stay_put(counter):
    conversation = Conversation()
    requests = []
    for n in range(1, 10):
        conversation.add_user(f"u{n}", f"photo {n}", [part(f"{n}.jpg")])
        requests.append(build(conversation, counter))
        conversation.add_assistant(f"a{n}", f"answer {n}")
    in_view = [images_in(r) for r in requests]
    assert in_view == [1, 2, 3, 4, 2, 3, 4, 2, 3]  # never over 4; down to half in one step
    unchanged = [
        r2.messages[: len(r1.messages)] == r1.messages for r1, r2 in zip(requests, requests[1:])
    ]
    assert unchanged == [True, True, True, False, True, True, False, True]
    assert [r.newly_hidden for r in requests][4] == ("1.jpg", "2.jpg", "3.jpg")


def test_a_resumed_chat_gets_the_same_request_as_before_the_restart(counter):
    conversation = Conversation()
    for n in range(1, 8):
        conversation.add_user(f"u{n}", f"photo {n} " + "word " * 200, [part(f"{n}.jpg")])
        conversation.add_assistant(f"a{n}", f"answer {n} " + "word " * 200)
    conversation.add_user("u8", "and now?")
    live = build(conversation, counter, budget=3000)
    resumed = Conversation(turns=list(conversation.turns))
    assert build(resumed, counter, budget=3000).messages == live.messages


def test_the_person_is_told_once_about_each_hidden_image(counter):
    conversation = Conversation()
    conversation.add_user("u1", "one", [part(f"{i}.png") for i in range(4)])
    conversation.add_user("u2", "two", [part("5.png")])
    assert build(conversation, counter).newly_hidden == ("0.png", "1.png", "2.png")
    conversation.add_user("u3", "three")
    assert build(conversation, counter).newly_hidden == ()
    conversation.add_user("u4", "four", [part("6.png"), part("7.png"), part("8.png")])
    assert build(conversation, counter).newly_hidden == ("3.png", "5.png")


def test_the_oldest_turns_are_dropped_to_fit_and_the_question_is_kept(counter):
    conversation = Conversation()
    for n in range(6):
        conversation.add_user(f"u{n}", f"question {n} " + "word " * 300)
        conversation.add_assistant(f"a{n}", f"answer {n} " + "word " * 300)
    conversation.add_user("now", "the current question")
    full = build(conversation, counter).prompt_tokens
    request = build(conversation, counter, budget=full // 2)
    assert request.prompt_tokens <= full // 2
    assert request.messages[0]["role"] == "user"  # never starts with an answer
    assert wire_text(request.messages[0]).startswith(SYSTEM)
    assert wire_text(request.messages[-1]) == "the current question"
    assert request.newly_dropped > 0
    assert build(conversation, counter, budget=full // 2).newly_dropped == 0  # said once


def test_turns_are_dropped_in_steps_so_the_next_follow_ups_keep_the_same_start(counter):
    conversation = Conversation()
    requests = []
    for n in range(30):
        conversation.add_user(f"u{n}", f"question {n} " + "word " * 100)
        requests.append(build(conversation, counter, budget=4000))
        conversation.add_assistant(f"a{n}", f"answer {n} " + "word " * 100)
    assert all(r.prompt_tokens <= 4000 for r in requests)
    starts = [wire_text(r.messages[0]).removeprefix(SYSTEM).split()[1] for r in requests]
    moves = sum(1 for s1, s2 in zip(starts, starts[1:]) if s1 != s2)
    assert 1 <= moves <= 30 // 4  # every fourth turn at most, not every turn


def test_images_count_by_their_pixtral_cost(counter):
    conversation = Conversation()
    conversation.add_user("u1", "describe", [part("photo.jpg", size=(1024, 768))])
    request = build(conversation, counter)
    text_only = counter.count(SYSTEM, [CountedMessage("user", ("describe",))], system_first=True)
    assert request.prompt_tokens == text_only + 3120


def test_a_question_too_long_on_its_own_is_refused(counter):
    conversation = Conversation()
    conversation.add_user("u1", "look", [part("big.jpg", size=(1024, 1024))])
    with pytest.raises(PromptTooLong):
        build(conversation, counter, budget=1000)


def test_editing_a_message_cuts_history_back_to_it(counter):
    conversation = Conversation()
    conversation.add_user("u1", "first", [part("a.png")])
    conversation.add_assistant("a1", "answer one")
    conversation.add_user("u2", "second")
    conversation.add_assistant("a2", "answer two")
    edited = conversation.cut_back_to("u1")
    assert edited is not None and edited.text == "first"
    assert conversation.turns == []
    assert conversation.cut_back_to("missing") is None


def test_labels_are_said_before_their_image(counter):
    conversation = Conversation()
    frame = part("clip.mp4")
    conversation.add_user(
        "u1", "what happens?", [ImagePart(key=frame.key, image=frame.image, label="00:12")]
    )
    content = build(conversation, counter).messages[0]["content"]
    assert content[1] == {"type": "text", "text": "00:12"}
    assert content[2]["type"] == "image_url"
