"""A chat's memory, and the request built from it each turn.

Owns: the turns (text and prepared images), cutting history back when a
message is edited, and fitting the request into vLLM's two limits:

- the image limit counts every image in the request, history included, so
  only the newest `max_images` images are sent; older ones become a short
  placeholder such as `[earlier image: receipt.jpg]`;
- the prompt must fit `MAX_MODEL_LEN - MAX_TOKENS`, so the oldest turns are
  left out first; the current message never is.

The person is told once about each image or turn that drops out of view.
Does not own: preparing images, talking to the server, or any UI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from handlers.errors import PromptTooLong
from handlers.images import PreparedImage
from handlers.tokens import CountedMessage, TokenCounter


@dataclass(frozen=True)
class ImagePart:
    """An image in a turn; `label` is said to the model just before it (e.g. a
    video frame's time stamp)."""

    key: str  # unique in the chat, e.g. the Chainlit element id
    image: PreparedImage
    label: str | None = None


@dataclass
class Turn:
    id: str
    role: Literal["user", "assistant"]
    text: str
    images: tuple[ImagePart, ...] = ()


@dataclass(frozen=True)
class Request:
    messages: list[dict]
    prompt_tokens: int
    newly_hidden: tuple[str, ...]  # image names that just went out of view
    newly_dropped: int  # earlier turns just left out for length


@dataclass
class Conversation:
    turns: list[Turn] = field(default_factory=list)
    _announced_hidden: set[str] = field(default_factory=set)
    _announced_dropped: int = 0

    def add_user(self, turn_id: str, text: str, images: Sequence[ImagePart] = ()) -> None:
        self.turns.append(Turn(turn_id, "user", text, tuple(images)))

    def add_assistant(self, turn_id: str, text: str) -> None:
        if text:
            self.turns.append(Turn(turn_id, "assistant", text))

    def cut_back_to(self, turn_id: str) -> Turn | None:
        """Forget `turn_id` and everything after it; return the forgotten turn.

        Chainlit re-runs `on_message` with the same message id when a person
        edits an earlier message, and removes the later messages from the UI.
        """
        for index, turn in enumerate(self.turns):
            if turn.id == turn_id:
                del self.turns[index:]
                self._announced_hidden &= {part.key for t in self.turns for part in t.images}
                self._announced_dropped = min(self._announced_dropped, len(self.turns))
                return turn
        return None

    def image_count(self) -> int:
        return sum(len(turn.images) for turn in self.turns)

    def build_request(
        self, system: str, counter: TokenCounter, *, max_images: int, prompt_budget: int
    ) -> Request:
        visible = self._visible_image_keys(max_images)
        counted = [_counted(turn, visible) for turn in self.turns]
        first, prompt_tokens = self._first_kept_turn(system, counted, counter, prompt_budget)
        kept_turns = self.turns[first:]
        hidden = self._announce_hidden(kept_turns, visible)
        dropped = max(0, first - self._announced_dropped)
        self._announced_dropped = max(self._announced_dropped, first)
        return Request(
            messages=[{"role": "system", "content": system}]
            + [_to_wire(turn, visible) for turn in kept_turns],
            prompt_tokens=prompt_tokens,
            newly_hidden=hidden,
            newly_dropped=dropped,
        )

    def _visible_image_keys(self, max_images: int) -> set[str]:
        newest_first = [part.key for turn in reversed(self.turns) for part in reversed(turn.images)]
        return set(newest_first[:max_images])

    def _first_kept_turn(
        self,
        system: str,
        counted: list[CountedMessage],
        counter: TokenCounter,
        budget: int,
    ) -> tuple[int, int]:
        """Index of the oldest turn that can stay, and the prompt's exact token count
        from there: drop from the front until the count fits. The newest turn (the
        current question) always stays."""
        estimates = [counter.estimate(message) for message in counted]
        first, last = 0, len(counted) - 1
        while first < last and sum(estimates[first:]) > budget:
            first += 1
        while True:
            first = _skip_leading_answers(counted, first, last)
            tokens = counter.count(system, counted[first:])
            if tokens <= budget:
                return first, tokens
            if first == last:
                raise PromptTooLong(budget=budget)
            first += 1

    def _announce_hidden(self, kept: list[Turn], visible: set[str]) -> tuple[str, ...]:
        hidden = [p for t in kept for p in t.images if p.key not in visible]
        new = [p for p in hidden if p.key not in self._announced_hidden]
        self._announced_hidden.update(p.key for p in new)
        return tuple(p.image.name for p in new)


def placeholder(part: ImagePart) -> str:
    return f"[earlier image: {part.image.name}]"


def _skip_leading_answers(counted: list[CountedMessage], first: int, last: int) -> int:
    """A request must start with the person speaking, not with an answer."""
    while first < last and counted[first].role == "assistant":
        first += 1
    return first


def _counted(turn: Turn, visible: set[str]) -> CountedMessage:
    texts: list[str] = []
    image_tokens = 0
    for part in turn.images:
        if part.key in visible:
            texts.extend([part.label] if part.label else [])
            image_tokens += part.image.tokens
        else:
            texts.append(placeholder(part))
    texts.append(turn.text)
    return CountedMessage(turn.role, tuple(texts), image_tokens)


def _to_wire(turn: Turn, visible: set[str]) -> dict:
    """The OpenAI-format message: images first, each after its label, then the text."""
    if turn.role == "assistant":
        return {"role": "assistant", "content": turn.text}
    content: list[dict] = []
    for part in turn.images:
        if part.key in visible:
            if part.label:
                content.append({"type": "text", "text": part.label})
            content.append(part.image.to_content_part())
        else:
            content.append({"type": "text", "text": placeholder(part)})
    if turn.text:
        content.append({"type": "text", "text": turn.text})
    return {"role": "user", "content": content}
