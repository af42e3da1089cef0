"""Errors the person sees.

Every failure that should reach the chat is a `UserFacingError`: it carries a
translation key and its parameters, never a pre-rendered English sentence, so
`chainlit_app.py` can render it in the person's language. Anything else that
escapes is a bug and is logged, not shown.

    UserFacingError
     ├── InvalidAttachment     a file was refused (the rest of the message goes on)
     ├── RequestRefused        the message or a setting was refused before any work
     ├── PromptTooLong         even the current message alone does not fit
     └── ModelError            the model server failed us
          ├── ModelUnavailable     unreachable, timed out, 5xx, dropped connection
          ├── ModelAuthFailed      401/403: the API key
          └── ModelRejected        a 400 the server explained (its message is kept)
"""

from __future__ import annotations

from typing import Any


class UserFacingError(Exception):
    """An error whose message is meant for the person, in their language."""

    key: str = "error.unexpected"

    def __init__(self, key: str | None = None, **params: Any) -> None:
        self.key = key or self.key
        self.params = params
        super().__init__(f"{self.key} {params}" if params else self.key)

    def message(self, language: str | None) -> str:
        from handlers.core.i18n import translate

        return translate(self.key, language, **self.params)


class InvalidAttachment(UserFacingError):
    """A file that cannot be used; `key` names the reason, `name` the file."""


class RequestRefused(UserFacingError):
    """A message or a chat setting refused before any work is done on it (too
    long, too many page ranges, an unknown setting); `key` names the reason."""


class PromptTooLong(UserFacingError):
    key = "error.prompt_too_long"


class ModelError(UserFacingError):
    """The model server failed; `retryable` says whether the same request may
    succeed if sent again right away (connection refused, 503)."""

    def __init__(self, key: str | None = None, *, retryable: bool = False, **params: Any) -> None:
        super().__init__(key, **params)
        self.retryable = retryable


class ModelUnavailable(ModelError):
    key = "error.model_unavailable"


class ModelAuthFailed(ModelError):
    key = "error.model_auth"


class ModelRejected(ModelError):
    key = "error.model_rejected"
