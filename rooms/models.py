"""SQLAlchemy models of hearings: the hearing, its participants (one invitation link each) and
the chat. All on ``cases.models.Base``; times come back time-zone aware (``UTCDateTime``).

States are plain strings from the closed vocabularies of ``rooms.catalogue`` (no database enums:
adding a state then needs no table rebuild on SQLite).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cases.models import Base, utcnow
from rooms.catalogue import (
    INVITED,
    MAIN_ROOM,
    MAX_CHAT_CHARS,
    NEUTRAL,
    SCHEDULED,
    STAFF_KINDS,
)


class Hearing(Base):
    """A scheduled online mediation session of a case. ``status``: scheduled → open → ended."""

    __tablename__ = "hearings"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    scheduled_at: Mapped[dt.datetime] = mapped_column()
    duration_minutes: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=SCHEDULED, index=True)
    record: Mapped[bool] = mapped_column(Boolean, default=False)  # video recording planned
    # Set while the recorder runs (``do_start_recording`` / ``do_stop_recording``).
    recording_since: Mapped[dt.datetime | None] = mapped_column()
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    opened_at: Mapped[dt.datetime | None] = mapped_column()
    ended_at: Mapped[dt.datetime | None] = mapped_column()

    participants: Mapped[list[HearingParticipant]] = relationship(
        order_by="HearingParticipant.id", lazy="selectin", cascade="all, delete-orphan"
    )

    @property
    def scheduled_end(self) -> dt.datetime:
        return self.scheduled_at + dt.timedelta(minutes=self.duration_minutes)


class HearingParticipant(Base):
    """One invited person and their own link. ``state`` is the admission state (it survives a
    dropped connection, which is why a reconnecting participant needs no new admission);
    whether they are connected right now is the transport's knowledge, not stored here."""

    __tablename__ = "hearing_participants"
    # A party or a staff member appears at most once per hearing (NULLs do not collide).
    __table_args__ = (
        UniqueConstraint("hearing_id", "party_id", name="hearing_party"),
        UniqueConstraint("hearing_id", "user_id", name="hearing_user"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    hearing_id: Mapped[int] = mapped_column(
        ForeignKey("hearings.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(20))  # PARTICIPANT_KINDS
    party_id: Mapped[int | None] = mapped_column(ForeignKey("parties.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    display_name: Mapped[str] = mapped_column(String(200))
    observer_role: Mapped[str] = mapped_column(String(20), default="")  # OBSERVER_ROLES or ""
    side: Mapped[str] = mapped_column(String(20), default=NEUTRAL)  # SIDES: proposes caucus groups
    # Part of every link; bumping it invalidates all links issued before.
    invitation_version: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(20), default=INVITED)  # PARTICIPANT_STATES
    subroom: Mapped[str] = mapped_column(String(40), default=MAIN_ROOM)
    # When the participant last entered ``subroom``: chat history starts there (see chat_history).
    subroom_since: Mapped[dt.datetime | None] = mapped_column()
    rights_acknowledged_at: Mapped[dt.datetime | None] = mapped_column()
    recording_consent: Mapped[bool | None] = mapped_column(Boolean)  # None: not asked yet
    last_seen_at: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    @property
    def is_staff(self) -> bool:
        return self.kind in STAFF_KINDS


class HearingMessage(Base):
    """A chat line, kept with the case. ``text`` is stored as typed; pages escape it."""

    __tablename__ = "hearing_messages"
    __table_args__ = (Index("ix_hearing_messages_room", "hearing_id", "subroom", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    hearing_id: Mapped[int] = mapped_column(ForeignKey("hearings.id", ondelete="CASCADE"))
    participant_id: Mapped[int] = mapped_column(
        ForeignKey("hearing_participants.id", ondelete="CASCADE")
    )
    subroom: Mapped[str] = mapped_column(String(40))
    text: Mapped[str] = mapped_column(String(MAX_CHAT_CHARS))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
