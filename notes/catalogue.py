"""Closed vocabularies of notes: the three kinds of document, the record's confirmation
decisions, and how the audit trail names the notes actions."""

from __future__ import annotations

from cases.audit import AuditAction
from cases.catalogue import N_

RECORD = "record"  # the hearing record (调解笔录), one per hearing
PRIVATE = "private"  # the mediator's private notes, one per case: never sent to a party
SHARED = "shared"  # notes every participant of the case reads between hearings
KINDS: dict[str, str] = {
    RECORD: N_("Hearing record"),
    PRIVATE: N_("Private mediator notes"),
    SHARED: N_("Shared case notes"),
}

# The name of the one Y.Text in every document; the browser binds the same name.
TEXT_NAME = "text"

CONFIRMED = "confirmed"
OBJECTED = "objected"
DECISIONS: dict[str, str] = {
    CONFIRMED: N_("Confirmed"),
    OBJECTED: N_("Objection noted"),
}

MAX_OBJECTION_CHARS = 2000
# A single Yjs update larger than this is not typing; refuse it before it reaches the database.
MAX_UPDATE_BYTES = 512 * 1024

NOTES_AUDIT_LABELS: dict[str, str] = {
    AuditAction.NOTES_RESTORED: N_("Notes restored to an earlier version"),
    AuditAction.RECORD_FROZEN: N_("Hearing record frozen"),
    AuditAction.RECORD_CONFIRMED: N_("Hearing record confirmed by a party"),
    AuditAction.RECORD_OBJECTED: N_("Objection to the hearing record"),
}


def doc_key(kind: str, *, case_id: int | None = None, hearing_id: int | None = None) -> str:
    """The public name of a document: ``record:<hearing>``, ``private:<case>``, ``shared:<case>``."""
    if kind == RECORD:
        if hearing_id is None:
            raise ValueError("a hearing record needs its hearing")
        return f"{RECORD}:{hearing_id}"
    if kind not in KINDS or case_id is None:
        raise ValueError(f"unknown notes document {kind!r}")
    return f"{kind}:{case_id}"


def parse_key(key: object) -> tuple[str, int] | None:
    """``(kind, number)`` of a well-formed key, else None (input from the wire)."""
    if not isinstance(key, str) or len(key) > 40:
        return None
    kind, _, number = key.partition(":")
    if kind not in KINDS or not number.isdigit() or len(number) > 12:
        return None
    return kind, int(number)
