"""Exact, offline prompt-token counts for Pixtral-12B.

mistral_common ships Pixtral's tokenizer (`tekken_240911.json`) inside the
package, so counting needs no network and no model download. Text goes through
the real chat template (`[INST]`, `</s>` after answers, and the system prompt
where the request puts it: folded into the last user message as Mistral's
template does with a system message, or leading the first user message). Images are not re-encoded: their cost is known
from the prepared size (`PreparedImage.tokens`), and mistral_common's own image
path would need OpenCV and the pixels every turn.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mistral_common.protocol.instruct.chunk import TextChunk
from mistral_common.protocol.instruct.messages import (
    AssistantMessage,
    SystemMessage,
    UserMessage,
)
from mistral_common.protocol.instruct.request import ChatCompletionRequest
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer


@dataclass(frozen=True)
class CountedMessage:
    """A message reduced to what costs tokens: its text parts and image costs.

    `texts` holds `IMAGE` where an image stands between two text parts: on the
    wire, adjacent text parts are joined by mistral_common with a blank line
    before they are tokenized, while text parts an image separates are
    tokenized apart (a video's frame labels: one token per label differs)."""

    role: Literal["user", "assistant"]
    texts: tuple[str | None, ...]
    image_tokens: int = 0


IMAGE = None  # in `CountedMessage.texts`: an image between two text parts


class TokenCounter:
    """Loads the tokenizer once, which is slow (docs/benchmarks.md, "Smaller
    measurements"); `count` is then quick (a long history's times: "Load",
    "Not covered: long conversations")."""

    CACHE_SIZE = 4096

    def __init__(self) -> None:
        self._tokenizer = MistralTokenizer.v3(is_tekken=True, is_mm=True)
        # Turns never change once said, so their estimates are kept (a long chat is
        # re-fitted every turn). Keyed by a digest, so the cache holds no texts.
        self._estimates: OrderedDict[bytes, int] = OrderedDict()

    def count(
        self,
        system: str,
        messages: Sequence[CountedMessage],
        *,
        system_first: bool = False,
        continuing: bool = False,
    ) -> int:
        """Tokens of the whole prompt as vLLM's mistral tokenizer mode builds it.

        `system_first`: the system text is the first text of the first (user)
        message rather than a system message. `continuing`: the last message is
        an answer to go on with, so it has no `</s>` (mistral_common's `prefix`,
        which vLLM sets on a final assistant message).
        """
        if system and system_first:
            messages = [
                CountedMessage("user", (system, *messages[0].texts), messages[0].image_tokens),
                *messages[1:],
            ]
        runs = [_runs(message) for message in messages]
        # The template around a message's first run, then each later run on its own
        # (mistral_common encodes each text chunk by itself, between its images).
        chat: list = [
            _to_mistral(message.role, first) for message, (first, *_) in zip(messages, runs)
        ]
        if continuing:
            chat[-1] = AssistantMessage(content=chat[-1].content, prefix=True)
        if system and not system_first:
            chat.insert(0, SystemMessage(content=system))
        encoded = self._tokenizer.encode_chat_completion(ChatCompletionRequest(messages=chat))
        later = sum(self.estimate_text(run) for _, *rest in runs for run in rest)
        return len(encoded.tokens) + later + sum(message.image_tokens for message in messages)

    def estimate(self, message: CountedMessage) -> int:
        """One message's cost on its own: close to its share of `count`, for choosing
        which turns to drop before one exact count confirms the choice."""
        key = _digest(message)
        if (cached := self._estimates.get(key)) is not None:
            self._estimates.move_to_end(key)
            return cached
        value = (
            sum(self.estimate_text(text) for text in message.texts if text)
            + message.image_tokens
            + 2
        )
        self._estimates[key] = value  # + 2: [INST]/[/INST] or </s>, and a separator
        if len(self._estimates) > self.CACHE_SIZE:
            self._estimates.popitem(last=False)
        return value

    def estimate_text(self, text: str) -> int:
        return len(self._tokenizer.instruct_tokenizer.tokenizer.encode(text, bos=False, eos=False))


def _digest(message: CountedMessage) -> bytes:
    digest = hashlib.blake2b(message.role.encode(), digest_size=16)
    for text in message.texts:
        if text is IMAGE:
            digest.update(b"\xff" * 8)  # not a length any text has
            continue
        digest.update(len(text).to_bytes(8, "little"))
        digest.update(text.encode("utf-8", "surrogatepass"))
    digest.update(message.image_tokens.to_bytes(8, "little"))
    return digest.digest()


def _runs(message: CountedMessage) -> list[str]:
    """A message's text as mistral_common tokenizes it: the text parts between
    two images joined with a blank line (empty parts skipped); at least one run."""
    if message.role == "assistant":
        return ["".join(text for text in message.texts if text)]
    runs: list[list[str]] = []
    current: list[str] = []
    for text in message.texts:
        if text is IMAGE:
            runs.append(current)
            current = []
        elif text:
            current.append(text)
    runs.append(current)
    return ["\n\n".join(run) for run in runs if run] or [""]


def _to_mistral(role: str, text: str) -> UserMessage | AssistantMessage:
    if role == "assistant":
        return AssistantMessage(content=text)
    return UserMessage(content=[TextChunk(text=text)] if text else "")
