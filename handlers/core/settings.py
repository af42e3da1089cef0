"""The app's configuration, read once into one typed object.

Like Starlette's `Config(".env")`: the process environment wins, then the
`.env` file, then the default. Each value is cast once; a malformed value
raises `SettingsError` naming the key (never echoing a secret). Nothing here
runs at import time: `load_settings()` is called by the app at start-up and by
tests with their own mapping.

`OPENAI_*` variables are deliberately ignored: with `CI` set, `chainlit run`
overwrites `OPENAI_API_KEY`, and Chainlit's `DATABASE_URL` switches on its own
data layer, so the app reads only its own names.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from dotenv import dotenv_values

DEFAULT_MODEL = "mistralai/Pixtral-12B-2409"
ANSWER_LANGUAGES = ("auto", "en", "zh")
# Where the system prompt goes: "first" leads the first user message (follow-ups reuse
# vLLM's prefix cache), "last" is Mistral's own placement (folded into the last one).
SYSTEM_PROMPT_PLACEMENTS = ("first", "last")
MIN_SECRET_LENGTH = 32

T = TypeVar("T")


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the key."""


@dataclass(frozen=True)
class Settings:
    vllm_base_urls: tuple[str, ...] = ("http://127.0.0.1:8000/v1",)
    vllm_api_key: str | None = field(default=None, repr=False)
    vllm_model: str | None = None
    max_images_per_request: int = 4
    max_model_len: int = 65536
    max_tokens: int = 1024
    max_upload_mb: int = 20
    max_media_mb: int = 200
    max_video_seconds: int = 3600
    max_video_pixels: int = 4096 * 4096
    max_message_chars: int = 4 * 65536
    max_page_ranges: int = 100
    max_chat_messages: int = 400
    max_chat_images: int = 200
    max_download_mb: int = 100
    request_timeout: float = 300.0
    connect_retries: int = 3
    temperature: float = 0.3
    answer_language: str = "auto"
    system_prompt_placement: str = "first"
    data_dir: Path = Path("data")
    database_url: str | None = None
    auth_header: str | None = None
    auth_proxy_secret: str | None = field(default=None, repr=False)
    login_attempts_per_minute: int = 10
    login_max_waiting: int = 8
    session_max_hours: int = 360
    cookie_secure: bool = False
    oauth_allowed_domains: frozenset[str] = frozenset()
    oauth_allowed_users: frozenset[str] = frozenset()
    max_files_per_message: int = 8
    allowed_origins: tuple[str, ...] = ()  # besides the app's own

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def max_media_bytes(self) -> int:
        return self.max_media_mb * 1024 * 1024

    @property
    def max_download_bytes(self) -> int:
        return self.max_download_mb * 1024 * 1024

    @property
    def system_first(self) -> bool:
        return self.system_prompt_placement == "first"

    @property
    def prompt_budget(self) -> int:
        """Tokens the prompt may use: the context minus room for the answer."""
        return self.max_model_len - self.max_tokens


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: str | os.PathLike | None = ".env"
) -> Settings:
    """Read settings from `environ` (default: the process), then `env_file`."""
    source = _Source(os.environ if environ is None else environ, env_file)
    max_model_len = source.get("MAX_MODEL_LEN", _positive_int, 65536)
    settings = Settings(
        vllm_base_urls=source.get("VLLM_BASE_URL", _url_list, Settings.vllm_base_urls),
        vllm_api_key=source.get("VLLM_API_KEY", str, None),
        vllm_model=source.get("VLLM_MODEL", str, None),
        max_images_per_request=source.get("MAX_IMAGES_PER_REQUEST", _positive_int, 4),
        max_model_len=max_model_len,
        max_tokens=source.get("MAX_TOKENS", _positive_int, 1024),
        max_upload_mb=source.get("MAX_UPLOAD_MB", _positive_int, 20),
        max_media_mb=source.get("MAX_MEDIA_MB", _positive_int, 200),
        max_video_seconds=source.get("MAX_VIDEO_SECONDS", _positive_int, 3600),
        max_video_pixels=source.get("MAX_VIDEO_PIXELS", _positive_int, 4096 * 4096),
        # No text longer than ~4 characters per token of context fits the model
        # (English averages ~4, Chinese ~1), so longer messages are refused unread.
        max_message_chars=source.get("MAX_MESSAGE_CHARS", _positive_int, 4 * max_model_len),
        max_page_ranges=source.get("MAX_PAGE_RANGES", _positive_int, 100),
        # What one chat holds in memory (and reloads on resume) is bounded: past these,
        # a new chat is needed (its earlier messages were long out of the model's view).
        max_chat_messages=source.get("MAX_CHAT_MESSAGES", _positive_int, 400),
        max_chat_images=source.get("MAX_CHAT_IMAGES", _positive_int, 200),
        max_download_mb=source.get("MAX_DOWNLOAD_MB", _positive_int, 100),
        request_timeout=source.get("VLLM_TIMEOUT", _positive_float, 300.0),
        connect_retries=source.get("VLLM_CONNECT_RETRIES", _non_negative_int, 3),
        temperature=source.get("TEMPERATURE", _temperature, 0.3),
        answer_language=source.get("ANSWER_LANGUAGE", _language, "auto"),
        system_prompt_placement=source.get(
            "SYSTEM_PROMPT_PLACEMENT", _one_of(SYSTEM_PROMPT_PLACEMENTS), "first"
        ),
        data_dir=source.get("DATA_DIR", Path, Path("data")),
        database_url=source.get("APP_DATABASE_URL", str, None),
        auth_header=source.get("AUTH_TRUSTED_HEADER", str, None),
        auth_proxy_secret=source.get("AUTH_PROXY_SECRET", _secret, None),
        login_attempts_per_minute=source.get("LOGIN_ATTEMPTS_PER_MINUTE", _positive_int, 10),
        login_max_waiting=source.get("LOGIN_MAX_WAITING", _positive_int, 8),
        session_max_hours=source.get("SESSION_MAX_HOURS", _positive_int, 360),
        cookie_secure=source.get("COOKIE_SECURE", _boolean, False),
        oauth_allowed_domains=source.get("OAUTH_ALLOWED_DOMAINS", _lower_set, frozenset()),
        oauth_allowed_users=source.get("OAUTH_ALLOWED_USERS", _lower_set, frozenset()),
        max_files_per_message=source.get("MAX_FILES_PER_MESSAGE", _positive_int, 8),
        allowed_origins=source.get("ALLOWED_ORIGINS", _origin_list, ()),
    )
    if settings.max_tokens >= settings.max_model_len:
        raise SettingsError("MAX_TOKENS must be smaller than MAX_MODEL_LEN")
    if settings.auth_header and not settings.auth_proxy_secret:
        # The app listens on 127.0.0.1, but so does every other process on the host:
        # a header alone proves nothing, so header sign-in without the secret is refused.
        raise SettingsError(
            "AUTH_TRUSTED_HEADER needs AUTH_PROXY_SECRET: a secret the proxy sends with every "
            "request (see deploy/README.md); without it any local process could sign in as anyone"
        )
    return settings


class _Source:
    def __init__(self, environ: Mapping[str, str], env_file: str | os.PathLike | None):
        file_values = dotenv_values(env_file) if env_file and Path(env_file).is_file() else {}
        self._values = {**{k: v for k, v in file_values.items() if v is not None}, **environ}

    def get(self, key: str, cast: Callable[[str], T], default: T) -> T:
        raw = self._values.get(key, "").strip()
        if not raw:
            return default
        try:
            return cast(raw)
        except ValueError as error:
            raise SettingsError(f"{key}: {error}") from None


def _url_list(raw: str) -> tuple[str, ...]:
    """One URL, or several separated by commas for failover (tried in order)."""
    urls = tuple(url.strip().rstrip("/") for url in raw.split(",") if url.strip())
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"expected http(s) URLs, got {url!r}")
    return urls


def redact_url(url: str) -> str:
    """`url` without the password it may carry, for logs and the doctor's report."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}"
    return parts._replace(netloc=netloc).geturl()


def _origin_list(raw: str) -> tuple[str, ...]:
    """Origins such as `https://chat.example.com`, comma-separated: scheme, host, port, no path."""
    origins = tuple(origin.strip().rstrip("/") for origin in raw.split(",") if origin.strip())
    for origin in origins:
        scheme, _, rest = origin.partition("://")
        if scheme not in ("http", "https") or not rest or "/" in rest or "*" in rest:
            raise ValueError(f"expected origins like https://chat.example.com, got {origin!r}")
    return origins


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError(f"expected a positive whole number, got {raw!r}")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError(f"expected zero or more, got {raw!r}")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise ValueError(f"expected a positive number, got {raw!r}")
    return value


def _temperature(raw: str) -> float:
    value = float(raw)
    if not 0 <= value <= 2:
        raise ValueError(f"expected a number from 0 to 2, got {raw!r}")
    return value


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def cast(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {raw!r}")
        return raw

    return cast


_language = _one_of(ANSWER_LANGUAGES)


def _secret(raw: str) -> str:
    if len(raw) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"expected at least {MIN_SECRET_LENGTH} characters (e.g. `openssl rand -hex 32`)"
        )
    return raw


def _boolean(raw: str) -> bool:
    value = raw.lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"expected true or false, got {raw!r}")
    return value in ("true", "1", "yes")


def _lower_set(raw: str) -> frozenset[str]:
    """Comma-separated names, compared without regard to case."""
    return frozenset(item.strip().lower() for item in raw.split(",") if item.strip())
