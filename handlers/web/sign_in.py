"""Who a sign-in says the person is: by password, by a trusted proxy, or by OAuth.

Each function returns the `cl.User` to sign in, or None to refuse (Chainlit then
answers 401, or sends the browser back to the sign-in page). Every user carries
`provider` and `signed_in_at` in its metadata, which `handlers/web/revocation.py`
reads from the token.

Names are kept apart by provider, so that no one method can sign in as someone
another method knows:
- password users are plain names (`alice`; no `:` allowed, see `users.check_identifier`);
- OAuth users are `provider:login` (`github:alice`, `google:alice@example.com`),
  so GitHub's `alice` is not the password user `alice`;
- the trusted header names the team's people in the proxy's directory, so it
  is refused for a name that has a password here (the proxy does not speak for
  them), and only with the proxy's shared secret (AUTH_PROXY_SECRET).

OAuth admits only accounts on an allow-list: an identifier in
OAUTH_ALLOWED_USERS, or a provider-verified e-mail address in a domain of
OAUTH_ALLOWED_DOMAINS. With neither set, nobody: GitHub and Google vouch for
anybody with an account there, i.e. the whole internet.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from chainlit.user import User

from handlers.core.settings import Settings
from handlers.storage.users import InvalidIdentifier, check_identifier
from handlers.web.revocation import HEADER_PROVIDER, PASSWORD_PROVIDER

PROXY_SECRET_HEADER = "X-Auth-Proxy-Secret"

log = logging.getLogger(__name__)
HasCredential = Callable[[str], Awaitable[bool]]


def password_user(name: str) -> User:
    return User(identifier=name, metadata=_signed_in(PASSWORD_PROVIDER))


async def header_user(
    headers: Mapping[str, str], settings: Settings, has_credential: HasCredential
) -> User | None:
    """The person the proxy names, if the request carries the proxy's secret."""
    name = headers.get(settings.auth_header or "")
    if not name or not settings.auth_proxy_secret:
        return None
    sent = headers.get(PROXY_SECRET_HEADER, "")
    if not hmac.compare_digest(sent.encode(), settings.auth_proxy_secret.encode()):
        log.warning("refused a header sign-in: the request did not come with the proxy's secret")
        return None
    try:
        check_identifier(name)
    except InvalidIdentifier:
        log.warning("refused a header sign-in: the proxy sent a name this app does not accept")
        return None
    if await has_credential(name):
        log.warning("refused a header sign-in as %s: that name is a password user's", name)
        return None
    return User(identifier=name, metadata=_signed_in(HEADER_PROVIDER))


def oauth_user(
    provider_id: str, raw_user_data: Mapping[str, Any], default_user: User, settings: Settings
) -> User | None:
    """The provider's account as `provider:login`, if the allow-list admits it."""
    identifier = f"{provider_id}:{default_user.identifier}"
    domains = {email.rsplit("@", 1)[1] for email in verified_emails(raw_user_data)}
    if identifier.lower() not in settings.oauth_allowed_users and not (
        domains & settings.oauth_allowed_domains
    ):
        log.warning("refused an OAuth sign-in as %s: not on the allow-list", identifier)
        return None
    image = (default_user.metadata or {}).get("image")
    metadata = {**_signed_in(provider_id), **({"image": image} if image else {})}
    return User(identifier=identifier, display_name=default_user.identifier, metadata=metadata)


def verified_emails(raw_user_data: Mapping[str, Any]) -> Iterator[str]:
    """The addresses the provider says it verified, lower-cased. GitHub lists them
    under `emails` (`verified`); Google's userinfo v2, which Chainlit asks, gives
    `email` with `verified_email`, OpenID Connect providers `email_verified`.
    Anything else is not taken as verified."""
    listed = raw_user_data.get("emails")
    for entry in listed if isinstance(listed, list) else []:
        if isinstance(entry, dict) and entry.get("verified") is True:
            yield from _address(entry.get("email"))
    if any(raw_user_data.get(flag) is True for flag in ("verified_email", "email_verified")):
        yield from _address(raw_user_data.get("email"))


def _address(value: object) -> Iterator[str]:
    if isinstance(value, str) and value.count("@") == 1 and not value.endswith("@"):
        yield value.strip().lower()


def _signed_in(provider: str) -> dict[str, Any]:
    return {"provider": provider, "signed_in_at": time.time()}
