"""The API's bearer token: random, made on first use, kept in the encrypted profile settings."""

from __future__ import annotations

import hmac
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tara_desktop.profile.store import ProfileStore

TOKEN_KEY = "server.api_token"
_PREFIX = "tara-"


def api_token(store: ProfileStore) -> str:
    """The profile's token, created (``secrets.token_urlsafe``, 256 bits) and stored when there is none."""
    token = store.get_setting(TOKEN_KEY)
    if isinstance(token, str) and token.startswith(_PREFIX) and len(token) > 20:
        return token
    return new_token(store)


def new_token(store: ProfileStore) -> str:
    """Replace the token (clients using the old one are refused from now on)."""
    token = _PREFIX + secrets.token_urlsafe(32)
    store.set_setting(TOKEN_KEY, token)
    return token


def token_matches(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (constant-time comparison)."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode("utf-8", "replace"), token.encode("utf-8"))
