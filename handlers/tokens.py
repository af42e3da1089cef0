"""Exact, offline prompt-token counts for Pixtral-12B.

mistral_common ships Pixtral's tokenizer (`tekken_240911.json`) inside the
package, so counting needs no network and no model download. Text goes through
the real chat template (`[INST]`, the system prompt folded into the last user
message, `</s>` after answers). Images are not re-encoded: their cost is known
from the prepared size (`PreparedImage.tokens`), and mistral_common's own image
path would need OpenCV and the pixels every turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
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
    """A message reduced to what costs tokens: its text parts and image costs."""

    role: Literal["user", "assistant"]
    texts: tuple[str, ...]
    image_tokens: int = 0


class TokenCounter:
    """Loads the tokenizer once (about a second); `count` is then a few ms."""

    def __init__(self) -> None:
        self._tokenizer = MistralTokenizer.v3(is_tekken=True, is_mm=True)
        # Turns never change once said, so their estimates are kept (a long chat is
        # re-fitted every turn). Bounded: a few thousand small ints.
        self.estimate = lru_cache(maxsize=4096)(self._estimate)

    def count(self, system: str, messages: Sequence[CountedMessage]) -> int:
        """Tokens of the whole prompt as vLLM's mistral tokenizer mode builds it."""
        chat = [SystemMessage(content=system)] if system else []
        chat += [_to_mistral(message) for message in messages]
        encoded = self._tokenizer.encode_chat_completion(ChatCompletionRequest(messages=chat))
        return len(encoded.tokens) + sum(message.image_tokens for message in messages)

    def _estimate(self, message: CountedMessage) -> int:
        """One message's cost on its own: close to its share of `count`, for choosing
        which turns to drop before one exact count confirms the choice."""
        text_tokens = sum(
            len(self._tokenizer.instruct_tokenizer.tokenizer.encode(text, bos=False, eos=False))
            for text in message.texts
        )
        return text_tokens + message.image_tokens + 2  # [INST]/[/INST] or </s>, and a separator


def _to_mistral(message: CountedMessage) -> UserMessage | AssistantMessage:
    if message.role == "assistant":
        return AssistantMessage(content="".join(message.texts))
    chunks = [TextChunk(text=text) for text in message.texts if text]
    return UserMessage(content=chunks or "")
