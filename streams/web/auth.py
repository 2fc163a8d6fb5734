"""Access control of the web page: one configured token, checked in constant time.

A client proves it knows the token either per request (``Authorization: Bearer <token>``, for
scripts) or with the session cookie the page gets from ``POST /api/login``. The cookie holds an
HMAC of the token, not the token itself, so a cookie leaked from a browser does not reveal it;
changing the token invalidates every session. The cookie is ``HttpOnly`` and
``SameSite=Strict`` (no other site can make a browser send it with a form post).

Operators name themselves at login (kept by the page) and every action carries that name;
:func:`clean_operator` is the one place that says what a valid name is.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from schemas.alerts import SYSTEM_ACTOR

COOKIE: Final = "ioc_session"
MAX_OPERATOR_LEN: Final = 64
_SESSION_CONTEXT: Final = b"iocstream-web-session/v1"


def session_value(token: str) -> str:
    """The session cookie value for ``token`` (an HMAC-SHA256, hex)."""
    return hmac.new(token.encode("utf-8"), _SESSION_CONTEXT, hashlib.sha256).hexdigest()


def token_matches(given: str, token: str) -> bool:
    """Constant-time comparison of a presented token with the configured one."""
    return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def authorized(authorization: str | None, cookie: str | None, token: str) -> bool:
    """Whether a request with this ``Authorization`` header and session cookie may proceed."""
    if authorization and authorization.startswith("Bearer "):
        return token_matches(authorization.removeprefix("Bearer ").strip(), token)
    if cookie:
        return hmac.compare_digest(cookie.encode("ascii", "replace"), session_value(token).encode())
    return False


def clean_operator(name: object) -> str:
    """A valid operator name (trimmed), or ``ValueError`` saying why not.

    1 to 64 printable characters (Vietnamese letters welcome), not the reserved ``system``.
    """
    if not isinstance(name, str):
        raise ValueError("operator name is required")
    cleaned = " ".join(name.split())
    if not cleaned:
        raise ValueError("operator name is required")
    if len(cleaned) > MAX_OPERATOR_LEN:
        raise ValueError(f"operator name is longer than {MAX_OPERATOR_LEN} characters")
    if not cleaned.isprintable():
        raise ValueError("operator name has non-printable characters")
    if cleaned.lower() == SYSTEM_ACTOR:
        raise ValueError(f"operator name {SYSTEM_ACTOR!r} is reserved")
    return cleaned
