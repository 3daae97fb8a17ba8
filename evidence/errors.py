"""Errors of evidence submission. Each has its own code; the message (translated at the edge)
tells the person what to do. ``TooLarge`` is HTTP 413 and ``UnsupportedType`` 415 at the edge;
the others follow their ``cases.errors`` base class."""

from __future__ import annotations

from typing import Any

from cases.catalogue import N_
from cases.errors import Conflict, Invalid


class TooLarge(Invalid):
    """Over the per-file or per-case limit (HTTP 413)."""

    code = "evidence_file_too_large"


class UnsupportedType(Invalid):
    """The content is not of an allowed type (HTTP 415)."""

    code = "evidence_type_not_allowed"
    default_message = N_(
        "This kind of file cannot be submitted as evidence. Allowed are PDF, JPEG/PNG/GIF/WebP/"
        "HEIC images, MP3/M4A/WAV/OGG audio, MP4/WebM/MOV video, Word/Excel/PowerPoint "
        "documents, plain text, and ZIP archives of these. Convert the file (for example, print it to PDF) and "
        "send it again."
    )

    def __init__(self, message: str | None = None, code: str | None = None, **params: Any) -> None:
        super().__init__(message or self.default_message, code, **params)


class OpinionFinal(Conflict):
    """A stated examination opinion is never changed or removed (HTTP 409)."""

    code = "evidence_opinion_final"
    default_message = N_(
        "An opinion on evidence cannot be changed once it is stated. To correct it, state a new "
        "opinion that corrects it; both stay in the file."
    )

    def __init__(self, message: str | None = None, code: str | None = None, **params: Any) -> None:
        super().__init__(message or self.default_message, code, **params)
