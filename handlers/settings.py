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

from dotenv import dotenv_values

DEFAULT_MODEL = "mistralai/Pixtral-12B-2409"
ANSWER_LANGUAGES = ("auto", "en", "zh")

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
    request_timeout: float = 300.0
    connect_retries: int = 3
    temperature: float = 0.3
    answer_language: str = "auto"
    data_dir: Path = Path("data")
    database_url: str | None = None
    auth_header: str | None = None
    max_files_per_message: int = 8
    allowed_origins: tuple[str, ...] = ()  # besides the app's own

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def max_media_bytes(self) -> int:
        return self.max_media_mb * 1024 * 1024

    @property
    def prompt_budget(self) -> int:
        """Tokens the prompt may use: the context minus room for the answer."""
        return self.max_model_len - self.max_tokens


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: str | os.PathLike | None = ".env"
) -> Settings:
    """Read settings from `environ` (default: the process), then `env_file`."""
    source = _Source(os.environ if environ is None else environ, env_file)
    settings = Settings(
        vllm_base_urls=source.get("VLLM_BASE_URL", _url_list, Settings.vllm_base_urls),
        vllm_api_key=source.get("VLLM_API_KEY", str, None),
        vllm_model=source.get("VLLM_MODEL", str, None),
        max_images_per_request=source.get("MAX_IMAGES_PER_REQUEST", _positive_int, 4),
        max_model_len=source.get("MAX_MODEL_LEN", _positive_int, 65536),
        max_tokens=source.get("MAX_TOKENS", _positive_int, 1024),
        max_upload_mb=source.get("MAX_UPLOAD_MB", _positive_int, 20),
        max_media_mb=source.get("MAX_MEDIA_MB", _positive_int, 200),
        max_video_seconds=source.get("MAX_VIDEO_SECONDS", _positive_int, 3600),
        request_timeout=source.get("VLLM_TIMEOUT", _positive_float, 300.0),
        connect_retries=source.get("VLLM_CONNECT_RETRIES", _non_negative_int, 3),
        temperature=source.get("TEMPERATURE", _temperature, 0.3),
        answer_language=source.get("ANSWER_LANGUAGE", _language, "auto"),
        data_dir=source.get("DATA_DIR", Path, Path("data")),
        database_url=source.get("APP_DATABASE_URL", str, None),
        auth_header=source.get("AUTH_TRUSTED_HEADER", str, None),
        max_files_per_message=source.get("MAX_FILES_PER_MESSAGE", _positive_int, 8),
        allowed_origins=source.get("ALLOWED_ORIGINS", _origin_list, ()),
    )
    if settings.max_tokens >= settings.max_model_len:
        raise SettingsError("MAX_TOKENS must be smaller than MAX_MODEL_LEN")
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


def _language(raw: str) -> str:
    if raw not in ANSWER_LANGUAGES:
        raise ValueError(f"expected one of {', '.join(ANSWER_LANGUAGES)}, got {raw!r}")
    return raw
