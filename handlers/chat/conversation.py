"""A chat's memory, and the request built from it each turn.

Owns: the turns (text and prepared images), cutting history back when a
message is edited, and building the request within vLLM's two limits (the
image limit counts every image in the request, history included; the prompt
must fit `MAX_MODEL_LEN - MAX_TOKENS`). Which images and turns are in view is
`handlers.chat.window`'s choice, made in steps so that earlier messages stay
byte-identical from one request to the next (vLLM's prefix cache); images out
of view become a short placeholder such as `[earlier image: receipt.jpg]`, and
the current message is never left out.

Where the system prompt goes (`system_first`): Pixtral's v3 chat template
folds a system message into the *last* user message, so with it the message
before a follow-up changes every turn and vLLM's prefix cache never helps.
With `system_first` the same text leads the first user message kept instead:
for a first question the tokens are the same as Mistral's placement, and later
requests only add to the end.

The person is told once about each image or turn that drops out of view.
Does not own: preparing images, talking to the server, or any UI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from handlers.chat.tokens import IMAGE, CountedMessage, TokenCounter
from handlers.chat.window import hidden_counts, plan
from handlers.core.errors import PromptTooLong
from handlers.media.bundle import ImagePart


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
    continues: bool = False  # the last message is an answer so far, for the model to go on with


@dataclass
class Conversation:
    turns: list[Turn] = field(default_factory=list)
    _announced_hidden: set[str] = field(default_factory=set)
    _announced_dropped: int = 0

    def add_user(self, turn_id: str, text: str, images: Sequence[ImagePart] = ()) -> None:
        self.turns.append(Turn(turn_id, "user", text, tuple(images)))

    def add_assistant(self, turn_id: str, text: str) -> None:
        """Remember an answer; more of the last answer (a continuation) goes on its end."""
        if not text:
            return
        if self.turns and self.turns[-1].id == turn_id and self.turns[-1].role == "assistant":
            self.turns[-1].text += text
        else:
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

    def latest_images(self) -> tuple[ImagePart, ...]:
        """The images of the newest turn that has any (what a `/count` is about)."""
        for turn in reversed(self.turns):
            if turn.images:
                return turn.images
        return ()

    def image_count(self) -> int:
        return sum(len(turn.images) for turn in self.turns)

    def build_request(
        self,
        system: str,
        counter: TokenCounter,
        *,
        max_images: int,
        prompt_budget: int,
        system_first: bool = True,
        continuing: bool = False,
    ) -> Request:
        """`continuing`: the last turn is an answer the model is to go on with
        (vLLM's `continue_final_message`), so it is counted without its end."""
        window = plan(
            self.turns,
            max_images=max_images,
            budget=prompt_budget - counter.estimate(CountedMessage("user", (system,))),
            estimate=lambda index, hidden: counter.estimate(_counted(self.turns[index], hidden)),
        )
        hidden_before = hidden_counts(self.turns, window.first_image)
        first, prompt_tokens = self._confirm(
            window.first_turn,
            system,
            counter,
            hidden_before,
            prompt_budget,
            system_first,
            continuing,
        )
        kept = range(first, len(self.turns))
        messages = [_to_wire(self.turns[i], hidden_before[i]) for i in kept]
        if system_first:
            messages[0]["content"].insert(0, {"type": "text", "text": system})
        else:
            messages.insert(0, {"role": "system", "content": system})
        dropped = max(0, first - self._announced_dropped)
        self._announced_dropped = max(self._announced_dropped, first)
        return Request(
            messages=messages,
            prompt_tokens=prompt_tokens,
            newly_hidden=self._announce_hidden(
                [self.turns[i] for i in kept], hidden_before[first:]
            ),
            newly_dropped=dropped,
            continues=continuing,
        )

    def _confirm(
        self,
        first: int,
        system: str,
        counter: TokenCounter,
        hidden: list[int],
        budget: int,
        system_first: bool,
        continuing: bool,
    ) -> tuple[int, int]:
        """The window's first turn confirmed by an exact count, and that count; one
        turn more is left out while the estimate was short. The newest turn (the
        current question) always stays."""
        last = len(self.turns) - 1
        while first < last and self.turns[first].role == "assistant":
            first += 1
        while True:
            counted = [_counted(self.turns[i], hidden[i]) for i in range(first, last + 1)]
            tokens = counter.count(
                system, counted, system_first=system_first, continuing=continuing
            )
            if tokens <= budget:
                return first, tokens
            if first == last:
                raise PromptTooLong(budget=budget)
            first += 1
            while first < last and self.turns[first].role == "assistant":  # start with the person
                first += 1

    def _announce_hidden(self, kept: list[Turn], hidden: list[int]) -> tuple[str, ...]:
        out_of_view = [p for turn, n in zip(kept, hidden) for p in turn.images[:n]]
        new = [p for p in out_of_view if p.key not in self._announced_hidden]
        self._announced_hidden.update(p.key for p in new)
        return tuple(dict.fromkeys(p.image.name for p in new))  # a video's sheets share its name


def placeholder(part: ImagePart) -> str:
    return f"[earlier image: {part.image.name}]"


def _counted(turn: Turn, hidden: int) -> CountedMessage:
    texts: list[str | None] = []
    image_tokens = 0
    for index, part in enumerate(turn.images):
        if index >= hidden:
            texts.extend([part.label, IMAGE] if part.label else [IMAGE])
            image_tokens += part.image.tokens
        else:
            texts.append(placeholder(part))
    texts.append(turn.text)
    return CountedMessage(turn.role, tuple(texts), image_tokens)


def _to_wire(turn: Turn, hidden: int) -> dict:
    """The OpenAI-format message: images first, each after its label, then the text."""
    if turn.role == "assistant":
        return {"role": "assistant", "content": turn.text}
    content: list[dict] = []
    for index, part in enumerate(turn.images):
        if index >= hidden:
            if part.label:
                content.append({"type": "text", "text": part.label})
            content.append(part.image.to_content_part())
        else:
            content.append({"type": "text", "text": placeholder(part)})
    if turn.text:
        content.append({"type": "text", "text": turn.text})
    return {"role": "user", "content": content}
