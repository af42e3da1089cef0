"""How a setting's text becomes its value: one function per kind of value.

Each takes the stripped, non-empty text of one variable and returns the value or
raises `ValueError` saying what it expected — never repeating a secret, since the
message is shown with the variable's name (`handlers.core.settings`). Owns no
names or defaults: those are in the settings table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

MIN_SECRET_LENGTH = 32
Number = TypeVar("Number", int, float)


def url_list(raw: str) -> tuple[str, ...]:
    """One URL, or several separated by commas for failover (tried in order)."""
    urls = tuple(url.strip().rstrip("/") for url in raw.split(",") if url.strip())
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"expected http(s) URLs, got {url!r}")
    return urls


def origin_list(raw: str) -> tuple[str, ...]:
    """Origins such as `https://chat.example.com`, comma-separated: scheme, host, port, no path."""
    origins = tuple(origin.strip().rstrip("/") for origin in raw.split(",") if origin.strip())
    for origin in origins:
        scheme, _, rest = origin.partition("://")
        if scheme not in ("http", "https") or not rest or "/" in rest or "*" in rest:
            raise ValueError(f"expected origins like https://chat.example.com, got {origin!r}")
    return origins


def positive_int(raw: str) -> int:
    return _checked(int, raw, lambda value: value > 0, "a positive whole number")


def non_negative_int(raw: str) -> int:
    return _checked(int, raw, lambda value: value >= 0, "zero or more")


def positive_float(raw: str) -> float:
    return _checked(float, raw, lambda value: value > 0, "a positive number")


def temperature(raw: str) -> float:
    return _checked(float, raw, lambda value: 0 <= value <= 2, "a number from 0 to 2")


def _checked(kind: type[Number], raw: str, ok: Callable[[Number], bool], expected: str) -> Number:
    """`raw` as a `kind`, or one message whether it is not a number at all ("four",
    which Python's own words would call an "invalid literal") or out of range."""
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"expected {expected}, got {raw!r}") from None
    if not ok(value):
        raise ValueError(f"expected {expected}, got {raw!r}")
    return value


def one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def cast(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {raw!r}")
        return raw

    return cast


def secret(raw: str) -> str:
    """A shared secret: long enough to guess at no better than chance; never echoed."""
    if len(raw) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"expected at least {MIN_SECRET_LENGTH} characters (e.g. `openssl rand -hex 32`)"
        )
    return raw


def boolean(raw: str) -> bool:
    value = raw.lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"expected true or false, got {raw!r}")
    return value in ("true", "1", "yes")


def lower_set(raw: str) -> frozenset[str]:
    """Comma-separated names, compared without regard to case."""
    return frozenset(item.strip().lower() for item in raw.split(",") if item.strip())
