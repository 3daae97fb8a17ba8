"""Domain errors. Each carries a stable ``code`` and an English message id with parameters;
the edge translates the message and chooses the HTTP status from the class."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base class: ``code`` for programs, ``message % params`` (translated) for people."""

    code = "invalid"
    # True when the transaction must still be committed (e.g. a failed login is counted).
    keep_changes = False

    def __init__(self, message: str, code: str | None = None, **params: Any) -> None:
        super().__init__(message % params if params else message)
        self.message = message
        self.params = params
        if code:
            self.code = code


class NotFound(DomainError):
    code = "not_found"


class Forbidden(DomainError):
    code = "forbidden"


class Conflict(DomainError):
    """The request is valid but the current state does not allow it (HTTP 409)."""

    code = "conflict"


class Invalid(DomainError):
    """Bad input (HTTP 400 / 422)."""

    code = "invalid"


class AuthenticationFailed(DomainError):
    code = "authentication_failed"
    keep_changes = True
