"""SQLAlchemy models of evidence: unfinished uploads, registered items, the append-only Merkle
ledger of evidence events and its signed tree heads. All on ``cases.models.Base``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint, event
from sqlalchemy.orm import Mapped, mapped_column

from cases.models import Base, utcnow
from evidence.catalogue import SUBMITTED, UPLOAD_RECEIVING
from evidence.errors import OpinionFinal


class EvidenceUpload(Base):
    """A tus upload in progress (or just completed). Nothing here is evidence yet: an item exists
    only once the whole file is stored, fsynced and hashed (``item_id`` then points to it)."""

    __tablename__ = "evidence_uploads"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    blob_id: Mapped[str] = mapped_column(String(32), unique=True)
    length: Mapped[int] = mapped_column(BigInteger)
    received: Mapped[int] = mapped_column(BigInteger, default=0)  # as of the last checkpoint
    filename: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(20))
    purpose: Mapped[str] = mapped_column(Text)
    # Who uploads: a staff user, or a party acting through a hearing link (participant, party).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    party_id: Mapped[int | None] = mapped_column(ForeignKey("parties.id"))
    participant_id: Mapped[int | None] = mapped_column(Integer)
    uploader_label: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(20), default=UPLOAD_RECEIVING)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("evidence_items.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class EvidenceItem(Base):
    """A registered piece of evidence: item ``number`` 1, 2, 3 … within its case."""

    __tablename__ = "evidence_items"
    __table_args__ = (UniqueConstraint("case_id", "number", name="case_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(20))  # catalogue.CATEGORIES
    purpose: Mapped[str] = mapped_column(Text)  # 证明目的
    submitter_type: Mapped[str] = mapped_column(String(20))  # user | party
    submitted_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    submitted_by_party_id: Mapped[int | None] = mapped_column(ForeignKey("parties.id"))
    submitter_label: Mapped[str] = mapped_column(String(200))
    blob_id: Mapped[str] = mapped_column(String(32), unique=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    file_type: Mapped[str] = mapped_column(String(20))  # filetypes.FILE_TYPES
    media_type: Mapped[str] = mapped_column(String(100))
    original_filename: Mapped[str] = mapped_column(String(255))  # metadata only, never a path
    submitted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(20), default=SUBMITTED)
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column()
    withdrawal_reason: Mapped[str] = mapped_column(Text, default="")
    ledger_seq: Mapped[int] = mapped_column(Integer)  # the leaf of its "submitted" event


class LedgerEntry(Base):
    """A leaf of the evidence Merkle log (RFC 6962). ``entry`` is the canonical JSON that is
    hashed (leaf hash = SHA-256(0x00 ‖ entry)); the other columns repeat it for queries, and
    verification checks that they still agree with it."""

    __tablename__ = "evidence_ledger"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)  # leaf index
    at: Mapped[dt.datetime] = mapped_column()
    case_id: Mapped[int] = mapped_column(Integer, index=True)
    item_id: Mapped[int | None] = mapped_column(Integer, index=True)
    event: Mapped[str] = mapped_column(String(30))  # catalogue.EVENTS
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor_label: Mapped[str] = mapped_column(String(200), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    details: Mapped[str] = mapped_column(Text, default="{}")
    entry: Mapped[str] = mapped_column(Text)
    leaf_hash: Mapped[str] = mapped_column(String(64))


class TreeHead(Base):
    """A signed tree head: the root of the first ``tree_size`` leaves, signed (Ed25519) by the
    platform key over the RFC 6962 ``TreeHeadSignature`` structure."""

    __tablename__ = "evidence_tree_heads"

    id: Mapped[int] = mapped_column(primary_key=True)
    tree_size: Mapped[int] = mapped_column(Integer, index=True)
    root_hash: Mapped[str] = mapped_column(String(64))
    timestamp_ms: Mapped[int] = mapped_column(BigInteger)
    key_id: Mapped[str] = mapped_column(String(64))  # SHA-256 of the raw public key
    signature: Mapped[str] = mapped_column(String(200))  # base64
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class EvidenceOpinion(Base):
    """One party's opinion on one property of one item (质证意见). Never updated or deleted:
    a correction is a new row whose ``corrects_id`` names the row it replaces, and a row can be
    corrected only once (unique), so each cell's opinions form one chain whose newest link is
    the current opinion. The database refuses UPDATE and DELETE too (triggers, migration 0005)."""

    __tablename__ = "evidence_opinions"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("evidence_items.id"), index=True)
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"))  # whose opinion
    property: Mapped[str] = mapped_column(String(20))  # catalogue.PROPERTIES
    stance: Mapped[str] = mapped_column(String(20))  # catalogue.STANCES
    reason: Mapped[str] = mapped_column(Text, default="")
    corrects_id: Mapped[int | None] = mapped_column(ForeignKey("evidence_opinions.id"), unique=True)
    # Who stated it: the party, their agent (a party row too), or staff recording it for them.
    recorded_by_type: Mapped[str] = mapped_column(String(20))  # party | user
    recorded_by_id: Mapped[int | None] = mapped_column(Integer)
    recorder_label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    ledger_seq: Mapped[int] = mapped_column(Integer)


@event.listens_for(EvidenceOpinion, "before_update")
@event.listens_for(EvidenceOpinion, "before_delete")
def _opinions_are_final(_mapper: Any, _connection: Any, _target: EvidenceOpinion) -> None:
    """The ORM has no path to change a stated opinion (the database triggers are the backstop)."""
    raise OpinionFinal()


class EvidencePreview(Base):
    """The thumbnail or first-page preview of an item, made once and stored encrypted like the
    item (``blob_id``); ``status`` says whether one could be made at all."""

    __tablename__ = "evidence_previews"

    item_id: Mapped[int] = mapped_column(ForeignKey("evidence_items.id"), primary_key=True)
    status: Mapped[str] = mapped_column(String(20))  # ready | unavailable
    blob_id: Mapped[str | None] = mapped_column(String(32))
    media_type: Mapped[str] = mapped_column(String(50), default="image/png")
    detail: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
