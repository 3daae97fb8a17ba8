"""Errors of notes. Each has its own code; the message tells the person what to do."""

from __future__ import annotations

from cases.catalogue import N_
from cases.errors import Conflict, Forbidden, Invalid, NotFound


def not_found() -> NotFound:
    return NotFound(N_("These notes do not exist."), code="notes_not_found")


def read_only() -> Forbidden:
    return Forbidden(
        N_("You can read these notes but not change them. Only the mediator and the clerk write."),
        code="notes_read_only",
    )


def no_access() -> Forbidden:
    return Forbidden(N_("You do not have access to these notes."), code="notes_forbidden")


def frozen() -> Conflict:
    return Conflict(
        N_("The record has been frozen at the end of the hearing and can no longer be changed."),
        code="record_frozen",
    )


def bad_update() -> Invalid:
    return Invalid(N_("This edit could not be read. Reload the page."), code="notes_bad_update")
