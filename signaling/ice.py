"""ICE servers handed to browsers: STUN/TURN URLs from settings, and time-limited TURN
credentials in coturn's ``use-auth-secret`` (TURN REST) scheme: username ``"<unix-expiry>:<id>"``,
password ``base64(HMAC-SHA1(secret, username))``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any


def turn_credentials(
    secret: str, user: str, ttl_s: int, now: float | None = None
) -> tuple[str, str]:
    expiry = int((now if now is not None else time.time()) + ttl_s)
    username = f"{expiry}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(
    stun_urls: list[str], turn_urls: list[str], turn_secret: str, user: str, ttl_s: int
) -> list[dict[str, Any]]:
    """The ``iceServers`` list for one participant (empty when nothing is configured: then only
    host candidates are used, which is what tests on loopback want)."""
    servers: list[dict[str, Any]] = []
    if stun_urls:
        servers.append({"urls": stun_urls})
    if turn_urls and turn_secret:
        username, credential = turn_credentials(turn_secret, user, ttl_s)
        servers.append({"urls": turn_urls, "username": username, "credential": credential})
    return servers
