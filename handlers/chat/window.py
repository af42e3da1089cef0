"""What of a chat the model sees: which images are in view, which turns are kept.

vLLM caches prompt prefixes (images included, keyed by their bytes), so a
follow-up whose earlier messages are byte-identical to the last request is
nearly free to prefill, and one that changes an early message re-runs the
vision encoder and the whole prefill. A window that slides by one image or one
turn changes an early message on every turn. So both limits move in steps:

- images: when a new turn brings the images in view over the limit, the oldest
  are hidden in one step, down to half the limit (never the new turn's own),
  which leaves room for the next few images without touching earlier messages;
- turns: when the prompt would outgrow its budget, the oldest turns are left out
  until it is down to `DROP_TO` of the budget, not just under it.

Both are replayed from the turns themselves, as the chat grew turn by turn, so
they are a pure function of the chat: a chat resumed after a restart, or cut
back by an edit, gets the window it would have had. Owns no wire format and no
exact counting: `estimate` is given, and the caller confirms with one exact count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

DROP_TO = 0.75  # when turns must go, keep this share of the budget: room to grow again


class _Turn(Protocol):
    @property
    def role(self) -> str: ...

    @property
    def images(self) -> Sequence[object]: ...


@dataclass(frozen=True)
class Window:
    first_image: int  # index, among all the chat's images oldest first, of the oldest in view
    first_turn: int  # index of the oldest turn kept


def image_horizons(turns: Sequence[_Turn], max_images: int) -> list[int]:
    """The image horizon (see `Window.first_image`) as it stood after each turn."""
    keep = max(1, max_images // 2)
    horizon = seen = 0
    horizons = []
    for turn in turns:
        start, seen = seen, seen + len(turn.images)
        if seen - horizon > max_images:
            horizon = max(min(seen - keep, start), seen - max_images)
        horizons.append(horizon)
    return horizons


def plan(
    turns: Sequence[_Turn],
    *,
    max_images: int,
    budget: int,
    estimate: Callable[[int, int], int],
) -> Window:
    """The window for a request whose question is the last turn.

    `estimate(index, hidden)` is turn `index`'s approximate token cost with its
    oldest `hidden` images out of view; `budget` is what the turns may use (the
    system prompt already taken off).
    """
    horizons = image_horizons(turns, max_images)
    first = total = 0
    hidden: list[int] = []
    for k, turn in enumerate(turns):
        if k == 0 or horizons[k] != horizons[k - 1]:  # earlier turns' costs changed: add up again
            hidden = hidden_counts(turns, horizons[k])
            total = sum(estimate(j, hidden[j]) for j in range(first, k))
        total += estimate(k, hidden[k])
        if turn.role != "user" or total <= budget:
            continue
        while first < k and (total > budget * DROP_TO or turns[first].role != "user"):
            total -= estimate(first, hidden[first])  # a request starts with the person, too
            first += 1
    return Window(first_image=horizons[-1] if horizons else 0, first_turn=first)


def hidden_counts(turns: Sequence[_Turn], first_image: int) -> list[int]:
    """For each turn, how many of its (oldest) images are before `first_image`."""
    counts, seen = [], 0
    for turn in turns:
        counts.append(min(len(turn.images), max(0, first_image - seen)))
        seen += len(turn.images)
    return counts
