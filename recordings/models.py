"""The recordings archive: one row per stored file."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cases.models import Base, utcnow

PARTICIPANT_FILE = "participant"  # one participant's audio and video, as received (no re-encoding)
COMPOSITE_FILE = "composite"  # a recording run's playable grid of everyone, mixed audio
HEARING_FILE = "hearing"  # a hearing recorded in several runs: the runs' composites joined
TIMELINE_FILE = "timeline"  # joins, leaves and sub-room changes (JSON)


class RecordingFile(Base):
    """A recorded file of a hearing, stored under the data dir (``path`` is relative to the
    recordings root and chosen by us, never by a user). ``sha256`` and ``size`` are taken when
    the file is archived and re-checked by ``yuntiao recordings verify``."""

    __tablename__ = "recording_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    hearing_id: Mapped[int] = mapped_column(
        ForeignKey("hearings.id", ondelete="RESTRICT"), index=True
    )
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="RESTRICT"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    participant_id: Mapped[int | None] = mapped_column(Integer)
    participant_name: Mapped[str] = mapped_column(String(200), default="")
    subroom: Mapped[str] = mapped_column(String(40), default="")
    path: Mapped[str] = mapped_column(String(300), unique=True)
    media_type: Mapped[str] = mapped_column(String(60))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    duration_s: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted_at: Mapped[dt.datetime | None] = mapped_column()


class RecordingShare(Base):
    """A recording the organisation shared with one party of its case (a ``Party`` row: the
    share follows the party across hearings and links). Revoking sets ``revoked_at``; the row
    stays, so the case history and this table both say who could see what, and when. Sharing
    again after a revocation adds a new row."""

    __tablename__ = "recording_shares"

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[int] = mapped_column(
        ForeignKey("recording_files.id", ondelete="RESTRICT"), index=True
    )
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id", ondelete="RESTRICT"), index=True)
    shared_by_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    shared_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    revoked_at: Mapped[dt.datetime | None] = mapped_column()
