"""Per-chat memory, kept by Chainlit session id.

Why not `cl.user_session`: Chainlit keeps a disconnected session for an hour
(`session_timeout`) so a reconnecting browser finds it again, and a chat's
images would sit in memory all that time. Here a chat is forgotten at once
when the person starts a new one, and shortly after a disconnect unless the
browser comes back (a network blip or a reload) within the grace period.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from handlers.chat.turn import ChatSession

RECONNECT_GRACE_SECONDS = 60.0


@dataclass
class ChatRegistry:
    grace_seconds: float = RECONNECT_GRACE_SECONDS
    _chats: dict[str, ChatSession] = field(default_factory=dict)
    _pending: dict[str, asyncio.TimerHandle] = field(default_factory=dict)

    def get(self, session_id: str) -> ChatSession | None:
        """The chat, if still remembered; a pending forget is called off (they're back)."""
        self._cancel_pending(session_id)
        return self._chats.get(session_id)

    def put(self, session_id: str, chat: ChatSession) -> None:
        self._cancel_pending(session_id)
        self._chats[session_id] = chat

    def forget(self, session_id: str) -> None:
        self._cancel_pending(session_id)
        self._chats.pop(session_id, None)

    def forget_later(self, session_id: str) -> None:
        self._cancel_pending(session_id)
        loop = asyncio.get_running_loop()
        self._pending[session_id] = loop.call_later(self.grace_seconds, self.forget, session_id)

    def forget_pending(self, session_id: str) -> bool:
        """Whether the chat waits out its grace (the browser left, may come back):
        what shows a reconnect called the forget off, without waiting out the grace."""
        return session_id in self._pending

    def __len__(self) -> int:
        return len(self._chats)

    def _cancel_pending(self, session_id: str) -> None:
        if handle := self._pending.pop(session_id, None):
            handle.cancel()
