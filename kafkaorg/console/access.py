"""Who may use the console, and as what: anonymous, viewer or operator.

Bound to a loopback address with no tokens set, the console is a local tool and everyone
who reaches it is an operator. With ``KAFKAORG_CONSOLE_TOKEN`` (operators) and optionally
``KAFKAORG_CONSOLE_VIEWER_TOKEN`` (read-only) set, every request needs one of them: as
``Authorization: Bearer <token>`` (scripts) or a session cookie set by the login form
(browsers). Bound anywhere else, it refuses to start without an operator token.

State-changing requests are POSTs carrying a CSRF token that must equal the one in the
``kafkaorg_csrf`` cookie (double submit; cookies are SameSite=Strict), and an ``Origin``
header, when the browser sends one, must be the console's own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from enum import StrEnum

from pydantic import BaseModel
from starlette.requests import Request

from kafkaorg.errors import BadInputError

SESSION_COOKIE = "kafkaorg_session"
CSRF_COOKIE = "kafkaorg_csrf"
CSRF_FIELD = "csrf"


class Role(StrEnum):
    ANONYMOUS = "anonymous"
    VIEWER = "viewer"
    OPERATOR = "operator"


class AccessPolicy(BaseModel):
    """The console's credentials; ``open`` when no token is set (loopback only)."""

    operator_token: str | None = None
    viewer_token: str | None = None

    @property
    def open(self) -> bool:
        return not self.operator_token

    def _secret(self) -> bytes:
        material = f"{self.operator_token}\x1f{self.viewer_token}".encode()
        return hashlib.sha256(b"kafkaorg-console-session\x1f" + material).digest()

    def role_of_token(self, token: str) -> Role:
        if self.operator_token and hmac.compare_digest(token, self.operator_token):
            return Role.OPERATOR
        if self.viewer_token and hmac.compare_digest(token, self.viewer_token):
            return Role.VIEWER
        return Role.ANONYMOUS

    def session_value(self, role: Role) -> str:
        """A cookie naming the role, signed with a key derived from the tokens (changing a
        token logs everyone out)."""
        signature = hmac.new(self._secret(), role.value.encode(), hashlib.sha256).hexdigest()
        return f"{role.value}.{signature}"

    def role_of_session(self, value: str) -> Role:
        role, _, signature = value.partition(".")
        if role not in (Role.VIEWER, Role.OPERATOR):
            return Role.ANONYMOUS
        expected = hmac.new(self._secret(), role.encode(), hashlib.sha256).hexdigest()
        return Role(role) if hmac.compare_digest(signature, expected) else Role.ANONYMOUS

    def role_of(self, request: Request) -> Role:
        if self.open:
            return Role.OPERATOR
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return self.role_of_token(header[7:].strip())
        if header.lower().startswith("basic "):
            # Kafka tools (Confluent's schema registry client) send ``user:token``.
            try:
                _, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return Role.ANONYMOUS
            return self.role_of_token(password)
        cookie = request.cookies.get(SESSION_COOKIE)
        return self.role_of_session(cookie) if cookie else Role.ANONYMOUS


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, policy: AccessPolicy) -> None:
    """Refuse to serve beyond this machine without credentials."""
    if not is_loopback(host) and policy.open:
        raise BadInputError(
            f"the console binds {host}, beyond this machine, and no KAFKAORG_CONSOLE_TOKEN is "
            "set: set it (and KAFKAORG_CONSOLE_VIEWER_TOKEN for read-only users) or bind "
            "127.0.0.1"
        )


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def csrf_ok(request: Request, submitted: str | None) -> bool:
    """Double submit: the form's token equals the cookie's, and the Origin (if any) is ours."""
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not submitted or not hmac.compare_digest(cookie, submitted):
        return False
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = request.headers.get("host", "")
        return origin.split("://", 1)[-1] == host
    return True
