"""Errors of hearing links. A party who opens a bad link reads the message, so each one says what
to do next; the code tells programs (and the page) which case it was.

``InvitationError`` is a ``Forbidden`` (HTTP 403 at the edge), so it never becomes a stack trace.
"""

from __future__ import annotations

from typing import Any

from cases.catalogue import N_
from cases.errors import Forbidden


class InvitationError(Forbidden):
    """A hearing link that cannot be used. Subclasses fix the code and the message."""

    code = "invitation_invalid"
    default_message = N_(
        "This hearing link is not valid. Check that you opened the whole link from your "
        "message, or ask the mediation office for a new link."
    )

    def __init__(self, message: str | None = None, code: str | None = None, **params: Any) -> None:
        super().__init__(message or self.default_message, code, **params)


class InvitationInvalid(InvitationError):
    """Not signed by us, damaged, or naming a participant/hearing that does not match."""

    code = "invitation_invalid"


class InvitationExpired(InvitationError):
    code = "invitation_expired"
    default_message = N_(
        "This hearing link has expired. Please ask the mediation office for a new link."
    )


class InvitationRevoked(InvitationError):
    """A newer link was issued for the same participant (the version in the link is old)."""

    code = "invitation_revoked"
    default_message = N_(
        "This hearing link has been withdrawn. Please use the newest link you received, or ask "
        "the mediation office for a new link."
    )
