"""Admin sign-in: a signed, HttpOnly, SameSite=Strict session cookie, and CSRF tokens for forms.

The signing key is derived from the admin token, so rotating the token signs everyone out. A
session is `<expires>.<nonce>.<mac>`; its CSRF token is a second MAC over the nonce, sent in
forms and checked against the cookie (a cross-site page can read neither).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

SESSION_COOKIE = "reelbatch_admin"
SESSION_SECONDS = 12 * 3600
_KEY_LABEL = b"reelbatch admin session v1"


@dataclass(frozen=True)
class Session:
    """A verified admin session."""

    nonce: str
    expires_at: int


class AdminSessions:
    """Issues and verifies admin sessions, and checks the admin token itself."""

    def __init__(
        self,
        admin_token: str,
        *,
        lifetime_seconds: int = SESSION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._token = admin_token.encode()
        self._key = hmac.new(self._token, _KEY_LABEL, hashlib.sha256).digest()
        self._lifetime = lifetime_seconds
        self._clock = clock

    def is_admin_token(self, presented: str) -> bool:
        """True when `presented` is the admin token (compared in constant time)."""
        return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), self._token)

    def issue(self) -> str:
        """A new session cookie value."""
        expires_at = int(self._clock()) + self._lifetime
        nonce = secrets.token_urlsafe(18)
        payload = f"{expires_at}.{nonce}"
        return f"{payload}.{self._mac('session', payload)}"

    def verify(self, cookie: str | None) -> Session | None:
        """The session of a cookie value, or None when it is absent, forged or expired."""
        if not cookie or cookie.count(".") != 2:
            return None
        expires, nonce, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac("session", f"{expires}.{nonce}")):
            return None
        if not expires.isdigit() or int(expires) <= self._clock():
            return None
        return Session(nonce=nonce, expires_at=int(expires))

    def csrf_token(self, session: Session) -> str:
        """The token forms of this session must carry."""
        return self._mac("csrf", session.nonce)

    def csrf_ok(self, session: Session, presented: str) -> bool:
        """True when `presented` is this session's CSRF token."""
        return hmac.compare_digest(presented.encode(), self.csrf_token(session).encode())

    def from_request(self, request: Request) -> Session | None:
        """The session carried by the request's cookie, if valid."""
        return self.verify(request.cookies.get(SESSION_COOKIE))

    def bearer_ok(self, request: Request) -> bool:
        """True when the request carries `Authorization: Bearer <admin token>`."""
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and bool(credentials) and self.is_admin_token(credentials.strip())

    def _mac(self, purpose: str, payload: str) -> str:
        return hmac.new(self._key, f"{purpose}:{payload}".encode(), hashlib.sha256).hexdigest()


def same_origin(request: Request) -> bool:
    """True unless the browser says the form was posted from another origin."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        # Non-browser clients send no Origin; browsers always do on cross-site POSTs.
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host
