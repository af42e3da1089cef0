"""The app's configuration: one table of variables, read once into one typed object.

`Settings` is the table. Each field is declared with `setting(...)`, which writes
the variable's name, cast, default and help once; `load_settings` reads every
field from it, `.env.example` and the README's table are generated from it
(`handlers.core.settings_docs`), and the tests clear exactly its variables.
`FOREIGN_VARIABLES` names those that Chainlit and the OpenAI client read from the
same environment, which the app never reads.

Like Starlette's `Config(".env")`: the process environment wins, then the `.env`
file, then the default. Each value is cast once (`handlers.core.casts`); a
malformed value raises `SettingsError` naming the key (never echoing a secret).
Nothing here runs at import time: `load_settings()` is called by the app at
start-up and by tests with their own mapping.

`OPENAI_*` variables are deliberately ignored: with `CI` set, `chainlit run`
overwrites `OPENAI_API_KEY`, and Chainlit's `DATABASE_URL` switches on its own
data layer, so the app reads only its own names.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from dotenv import dotenv_values

from handlers.core import casts
from handlers.core.casts import MIN_SECRET_LENGTH

DEFAULT_MODEL = "mistralai/Pixtral-12B-2409"
ANSWER_LANGUAGES = ("auto", "en", "zh")
# Where the system prompt goes: "first" leads the first user message (follow-ups reuse
# vLLM's prefix cache), "last" is Mistral's own placement (folded into the last one).
SYSTEM_PROMPT_PLACEMENTS = ("first", "last")
DEFAULT_MAX_MODEL_LEN = 65536
# No text longer than ~4 characters per token of context fits the model (English
# averages ~4, Chinese ~1), so longer messages are refused unread.
CHARS_PER_TOKEN = 4

T = TypeVar("T")


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the key."""


@dataclass(frozen=True)
class Variable:
    """One row of the table: how a variable is read, and what the docs say of it.

    `shown` is the docs' default where the value alone would mislead (an empty one,
    a derived one); `derive` works the default out from the other settings;
    `section` starts a new group of `.env.example` at this variable.
    """

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    shown: str | None = None
    section: str | None = None
    derive: Callable[[Settings], Any] | None = None


@dataclass(frozen=True)
class Foreign:
    """A variable that Chainlit or the OpenAI client reads from the app's environment.

    A name ending in `*` is a prefix. With `help`, the docs describe it too.
    """

    name: str
    help: str = ""
    shown: str = ""


FOREIGN_VARIABLES = (
    Foreign(
        "CHAINLIT_AUTH_SECRET",
        "Signs sign-in tokens (Chainlit reads it, the app does not); one per install, "
        "never checked in (`scripts/setup.sh` appends a generated one to `.env`)",
        "*(generated into `.env` by the setup)*",
    ),
    Foreign("DATABASE_URL"),  # must stay unset: it switches on Chainlit's own data layer
    Foreign("LITERAL_API_KEY"),  # Chainlit's hosted data layer
    Foreign("OAUTH_*"),  # OAUTH_<PROVIDER>_CLIENT_ID and _SECRET switch a provider on
    Foreign("OPENAI_*"),  # the OpenAI client's own key, URL, organisation
)


def setting(
    name: str,
    parse: Callable[[str], T],
    default: T,
    help: str,
    *,
    shown: str | None = None,
    section: str | None = None,
    derive: Callable[[Settings], T] | None = None,
    secret: bool = False,
) -> T:
    """A `Settings` field read from the variable `name` (a secret one is left out of repr)."""
    variable = Variable(name, parse, default, help, shown, section, derive)
    return field(default=default, repr=not secret, metadata={"variable": variable})


@dataclass(frozen=True)
class Settings:
    """Every setting, cast. Each field is one row: name, cast, default; help; docs."""

    # fmt: off
    vllm_base_urls: tuple[str, ...] = setting(
        "VLLM_BASE_URL", casts.url_list, ("http://127.0.0.1:8000/v1",),
        "vLLM's OpenAI-compatible endpoint; several, comma-separated, for failover "
        "(tried in order)",
        section="The model server and its answers")
    vllm_api_key: str | None = setting(
        "VLLM_API_KEY", str, None,
        "The key vLLM was started with (its `VLLM_API_KEY` or `--api-key`); sent as a "
        "Bearer token",
        shown="*(none)*", secret=True)
    vllm_model: str | None = setting(
        "VLLM_MODEL", str, None,
        "Model name to request",
        shown=f"*(the first model the server lists, else `{DEFAULT_MODEL}`)*")
    max_images_per_request: int = setting(
        "MAX_IMAGES_PER_REQUEST", casts.positive_int, 4,
        "Must equal the image count in vLLM's `--limit-mm-per-prompt '{\"image\": 4}'`")
    max_model_len: int = setting(
        "MAX_MODEL_LEN", casts.positive_int, DEFAULT_MAX_MODEL_LEN,
        "Must equal vLLM's `--max-model-len`")
    max_tokens: int = setting(
        "MAX_TOKENS", casts.positive_int, 1024,
        "Longest answer, in tokens; the prompt gets `MAX_MODEL_LEN − MAX_TOKENS`")
    request_timeout: float = setting(
        "VLLM_TIMEOUT", casts.positive_float, 300.0,
        "Seconds before a request to vLLM is given up")
    connect_retries: int = setting(
        "VLLM_CONNECT_RETRIES", casts.non_negative_int, 3,
        "Retries (with backoff, moving on to the next `VLLM_BASE_URL`) when the server is "
        "unreachable or answers 503, before the first token of an answer only")
    stream_interval: int = setting(
        "STREAM_INTERVAL", casts.positive_int, 4,
        "Tokens in each streamed piece of an answer after the first, which comes at once "
        "(vLLM's per-request `stream_interval`; its `--stream-interval` is the floor). "
        "1 streams every token; 4 about halves the app's CPU for a text answer "
        "([docs/benchmarks.md](docs/benchmarks.md#streamed-pieces))")
    temperature: float = setting(
        "TEMPERATURE", casts.temperature, 0.3,
        "Sampling temperature, 0 to 2; low values suit description, counting and OCR")
    answer_language: str = setting(
        "ANSWER_LANGUAGE", casts.one_of(ANSWER_LANGUAGES), "auto",
        "Default answer language: `auto` (the question's), `en` or `zh`; each person can "
        "change it in the chat settings")
    system_prompt_placement: str = setting(
        "SYSTEM_PROMPT_PLACEMENT", casts.one_of(SYSTEM_PROMPT_PLACEMENTS), "first",
        "`first`: the system prompt leads the first message, so follow-ups reuse vLLM's "
        "prefix cache; `last`: Mistral's own placement, folded into the newest message "
        "(why `first`: [docs/benchmarks.md](docs/benchmarks.md#follow-ups-and-the-prefix-cache))")

    max_upload_mb: int = setting(
        "MAX_UPLOAD_MB", casts.positive_int, 20,
        "Largest accepted image file, in MB",
        section="What a message and a chat may hold")
    max_media_mb: int = setting(
        "MAX_MEDIA_MB", casts.positive_int, 200,
        "Largest video or PDF, in MB — the largest upload (keep `max_size_mb` in "
        "`.chainlit/config.toml` and the proxy's body limit in step)")
    max_video_seconds: int = setting(
        "MAX_VIDEO_SECONDS", casts.positive_int, 3600,
        "Longest video, in seconds")
    max_video_pixels: int = setting(
        "MAX_VIDEO_PIXELS", casts.positive_int, 4096 * 4096,
        "Most pixels in a video frame (width × height), checked before any frame is "
        "decoded: 4K and DCI 4K pass, 8K (7680×4320) is refused",
        shown="`16777216` (4096×4096)")
    max_message_chars: int = setting(
        "MAX_MESSAGE_CHARS", casts.positive_int, CHARS_PER_TOKEN * DEFAULT_MAX_MODEL_LEN,
        "Longest message, in characters, refused before it is read: no longer text fits "
        "the context",
        shown=f"{CHARS_PER_TOKEN} × `MAX_MODEL_LEN` (`{CHARS_PER_TOKEN * DEFAULT_MAX_MODEL_LEN}`)",
        derive=lambda settings: CHARS_PER_TOKEN * settings.max_model_len)
    max_page_ranges: int = setting(
        "MAX_PAGE_RANGES", casts.positive_int, 100,
        'Most pages or page ranges one message may name ("pages 2-4, 7" names two)')
    max_files_per_message: int = setting(
        "MAX_FILES_PER_MESSAGE", casts.positive_int, 8,
        "Most files one message may refer to (a repeated file counts once; the rest are "
        "left out and named); also the file picker's limit")
    # What one chat holds in memory (and reloads on resume) is bounded: past these,
    # a new chat is needed (its earlier messages were long out of the model's view).
    max_chat_messages: int = setting(
        "MAX_CHAT_MESSAGES", casts.positive_int, 400,
        "The most messages one chat keeps (in memory, and reloaded when it is resumed); "
        "then a new chat is needed (the model had long lost sight of the first ones)")
    max_chat_images: int = setting(
        "MAX_CHAT_IMAGES", casts.positive_int, 200,
        "The most images one chat keeps; a message that would go past it is sent "
        "without its images, and the person is told")
    max_download_mb: int = setting(
        "MAX_DOWNLOAD_MB", casts.positive_int, 100,
        "Largest chat download, in MB (`/download`: a zip of `chat.md` and the images); "
        "the images past it are left out and named")

    data_dir: Path = setting(
        "DATA_DIR", Path, Path("data"),
        "Chat history, uploads and prepared images",
        section="History and the browser")
    database_url: str | None = setting(
        "APP_DATABASE_URL", str, None,
        "The history database: `postgresql://user:pass@host/db` for several app "
        "instances (Chainlit's own `DATABASE_URL` must stay unset)",
        shown="*(a SQLite file in `DATA_DIR`)*")
    allowed_origins: tuple[str, ...] = setting(
        "ALLOWED_ORIGINS", casts.origin_list, (),
        "Other origins (`https://portal.example.com`, comma-separated) whose pages may "
        "call the app and open its socket with the person's sign-in",
        shown="*(the app's own pages only)*")

    auth_header: str | None = setting(
        "AUTH_TRUSTED_HEADER", str, None,
        "Sign-in from a header set by an SSO proxy (which must overwrite it on every "
        "request); needs `AUTH_PROXY_SECRET`",
        shown="*(off)*", section="Sign-in")
    auth_proxy_secret: str | None = setting(
        "AUTH_PROXY_SECRET", casts.secret, None,
        f"Needed with `AUTH_TRUSTED_HEADER`: at least {MIN_SECRET_LENGTH} characters "
        "(`openssl rand -hex 32`) the proxy sends in `X-Auth-Proxy-Secret` with every "
        "request; the app refuses to start with `AUTH_TRUSTED_HEADER` and no secret",
        shown="*(none)*", secret=True)
    login_attempts_per_minute: int = setting(
        "LOGIN_ATTEMPTS_PER_MINUTE", casts.positive_int, 10,
        "Password attempts per minute, per client address and per user name; more get "
        "429 before any hashing")
    login_max_waiting: int = setting(
        "LOGIN_MAX_WAITING", casts.positive_int, 8,
        "Password checks in progress at once (one thread does them); more get 429 and a "
        '"try again in a few seconds"')
    session_max_hours: int = setting(
        "SESSION_MAX_HOURS", casts.positive_int, 360,
        "A sign-in lasts at most this many hours, however often the browser renews its "
        "token")
    cookie_secure: bool = setting(
        "COOKIE_SECURE", casts.boolean, False,
        "`true` behind TLS: the sign-in cookie is then sent over HTTPS only")
    oauth_allowed_users: frozenset[str] = setting(
        "OAUTH_ALLOWED_USERS", casts.lower_set, frozenset(),
        "OAuth accounts that may sign in, as `provider:login` (`github:alice`, "
        "`google:alice@example.com`); Chainlit's `OAUTH_<PROVIDER>_CLIENT_ID` and "
        "`_CLIENT_SECRET` switch a provider on",
        shown="*(nobody)*")
    oauth_allowed_domains: frozenset[str] = setting(
        "OAUTH_ALLOWED_DOMAINS", casts.lower_set, frozenset(),
        "E-mail domains whose provider-verified addresses may sign in with OAuth",
        shown="*(none)*")
    # fmt: on

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


def variables() -> tuple[Variable, ...]:
    """The table, in the order of `Settings`' fields (and of the generated docs)."""
    return tuple(item.metadata["variable"] for item in fields(Settings))


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: str | os.PathLike | None = ".env"
) -> Settings:
    """Read settings from `environ` (default: the process), then `env_file`."""
    source = _Source(os.environ if environ is None else environ, env_file)
    given: dict[str, Any] = {}
    derived: dict[str, Callable[[Settings], Any]] = {}
    for item in fields(Settings):
        variable: Variable = item.metadata["variable"]
        if source.has(variable.name):
            given[item.name] = source.parse(variable)
        elif variable.derive is not None:
            derived[item.name] = variable.derive
    settings = Settings(**given)
    settings = replace(settings, **{name: derive(settings) for name, derive in derived.items()})
    _check(settings)
    return settings


def _check(settings: Settings) -> None:
    """What no single variable can say: the settings that must agree."""
    if settings.max_tokens >= settings.max_model_len:
        raise SettingsError("MAX_TOKENS must be smaller than MAX_MODEL_LEN")
    if settings.auth_header and not settings.auth_proxy_secret:
        # The app listens on 127.0.0.1, but so does every other process on the host:
        # a header alone proves nothing, so header sign-in without the secret is refused.
        raise SettingsError(
            "AUTH_TRUSTED_HEADER needs AUTH_PROXY_SECRET: a secret the proxy sends with every "
            "request (see deploy/README.md); without it any local process could sign in as anyone"
        )


class _Source:
    """The environment over the file; an empty or blank value counts as unset."""

    def __init__(self, environ: Mapping[str, str], env_file: str | os.PathLike | None):
        file_values = dotenv_values(env_file) if env_file and Path(env_file).is_file() else {}
        self._values = {**{k: v for k, v in file_values.items() if v is not None}, **environ}

    def has(self, key: str) -> bool:
        return bool(self._values.get(key, "").strip())

    def parse(self, variable: Variable) -> Any:
        try:
            return variable.parse(self._values[variable.name].strip())
        except ValueError as error:
            raise SettingsError(f"{variable.name}: {error}") from None


def redact_url(url: str) -> str:
    """`url` without the password it may carry, for logs and the doctor's report."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}"
    return parts._replace(netloc=netloc).geturl()
