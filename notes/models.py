"""SQLAlchemy models of notes. A document is the append-only list of the Yjs updates that made it
(``NoteUpdate``, numbered 1, 2, 3 … per document, with who sent each), plus compacted snapshots
(``NoteSnapshot``) so loading does not replay everything. Updates are kept after a snapshot: they
are the version history (who wrote what, when) and what a restore starts from.

``NoteDocument.head_seq`` is bumped with a conditional ``UPDATE … SET head_seq = head_seq + 1`` in
the transaction that stores the update: the row lock makes the numbers of one document contiguous
and committed in order, so a process that has applied 1…n knows exactly what it is missing.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cases.models import Base, utcnow


class NoteDocument(Base):
    """One live document: a hearing's record, or a case's private or shared notes."""

    __tablename__ = "note_documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(40), unique=True)  # catalogue.doc_key
    kind: Mapped[str] = mapped_column(String(20))  # catalogue.KINDS
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    hearing_id: Mapped[int | None] = mapped_column(
        ForeignKey("hearings.id", ondelete="CASCADE"), index=True
    )
    head_seq: Mapped[int] = mapped_column(Integer, default=0)
    snapshot_seq: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Freezing (records only): the text and PDF as frozen, and the PDF's SHA-256.
    frozen_at: Mapped[dt.datetime | None] = mapped_column()
    frozen_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    frozen_seq: Mapped[int | None] = mapped_column(Integer)
    frozen_text: Mapped[str | None] = mapped_column(Text)
    frozen_pdf: Mapped[bytes | None] = mapped_column(LargeBinary)
    frozen_sha256: Mapped[str] = mapped_column(String(64), default="")


class NoteUpdate(Base):
    """One accepted Yjs update, as the editor's browser sent it (or a restore computed it)."""

    __tablename__ = "note_updates"
    __table_args__ = (UniqueConstraint("document_id", "seq", name="note_update_seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(
        ForeignKey("note_documents.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor_label: Mapped[str] = mapped_column(String(200))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class NoteSnapshot(Base):
    """The merged state of updates 1…``upto_seq`` (only the newest is kept)."""

    __tablename__ = "note_snapshots"

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(
        ForeignKey("note_documents.id", ondelete="CASCADE"), index=True
    )
    upto_seq: Mapped[int] = mapped_column(Integer)
    state: Mapped[bytes] = mapped_column(LargeBinary)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class RecordConfirmation(Base):
    """A party's answer to the frozen record: confirmed (with a one-time code) or an objection.

    ``code_hash`` holds SHA-256 of the last code sent; it is cleared once used."""

    __tablename__ = "record_confirmations"
    __table_args__ = (UniqueConstraint("document_id", "party_id", name="record_party"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(
        ForeignKey("note_documents.id", ondelete="CASCADE"), index=True
    )
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id", ondelete="CASCADE"))
    decision: Mapped[str] = mapped_column(String(20), default="")  # catalogue.DECISIONS or ""
    objection: Mapped[str] = mapped_column(Text, default="")
    code_hash: Mapped[str] = mapped_column(String(64), default="")
    code_expires_at: Mapped[dt.datetime | None] = mapped_column()
    code_attempts: Mapped[int] = mapped_column(Integer, default=0)
    decided_at: Mapped[dt.datetime | None] = mapped_column()
