"""Notifications to people outside the platform (text messages, e-mail), behind a small interface.

A ``Sender`` takes a ``Notification`` (``await sender.send(notification)``). The default,
``OutboxSender``, only stores it as an ``OutboxMessage`` in the ``outbox`` table, in the caller's
transaction: nothing leaves the machine, admins read the outbox (``/admin/outbox``) and tests read
the texts from it. Because the row is written with the change it announces (a scheduled hearing,
a new link), a notification exists exactly when that change does.

A real SMS or e-mail gateway should not send from inside the transaction (a rollback would leave a
message about something that never happened). It should keep ``OutboxSender`` and deliver the
rows whose ``sent_at`` is empty from a separate worker, setting ``sent_at`` once the gateway has
accepted them.

``do_notify`` is what callers use: it hands the notification to the sender and writes the audit
row (``notification.queued``) with the recipient masked, since the trail is read more widely than
the outbox.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from cases.actor import Actor
from cases.audit import AuditAction, record
from cases.catalogue import N_
from cases.models import Base, Case, utcnow

SMS = "sms"
EMAIL = "email"
CHANNELS: dict[str, str] = {
    SMS: N_("Text message"),
    EMAIL: N_("E-mail"),
}
MAX_RECIPIENT_CHARS = 200
MAX_SUBJECT_CHARS = 200
# Long enough for a text message split into parts and for a short e-mail; longer is a bug.
MAX_BODY_CHARS = 4000


class OutboxMessage(Base):
    """One notification as it was handed over, with what it was about.

    ``hearing_id`` and ``participant_id`` are plain numbers rather than foreign keys: this package
    does not know the hearing tables (``rooms`` builds on ``cases``, not the other way round), and
    the record of what was sent should outlive them anyway. ``sent_at`` stays empty until a
    delivering worker (none by default) has passed the message on.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(10))  # CHANNELS
    recipient: Mapped[str] = mapped_column(String(MAX_RECIPIENT_CHARS))  # phone or e-mail
    subject: Mapped[str] = mapped_column(String(MAX_SUBJECT_CHARS), default="")
    body: Mapped[str] = mapped_column(Text)
    case_id: Mapped[int | None] = mapped_column(
        ForeignKey("cases.id", ondelete="SET NULL"), index=True
    )
    hearing_id: Mapped[int | None] = mapped_column(Integer, index=True)
    participant_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column()


@dataclass(frozen=True)
class Notification:
    """What to send to whom (``channel`` from ``CHANNELS``), and what it is about."""

    channel: str
    recipient: str
    body: str
    subject: str = ""
    case_id: int | None = None
    hearing_id: int | None = None
    participant_id: int | None = None

    def __post_init__(self) -> None:
        # Programming errors, not user input: callers build notifications from checked data.
        if self.channel not in CHANNELS:
            raise ValueError(f"unknown notification channel {self.channel!r}")
        if not self.recipient.strip() or len(self.recipient) > MAX_RECIPIENT_CHARS:
            raise ValueError("a notification needs a recipient")
        if not self.body.strip() or len(self.body) > MAX_BODY_CHARS:
            raise ValueError(f"a notification needs a body of at most {MAX_BODY_CHARS} characters")
        if len(self.subject) > MAX_SUBJECT_CHARS:
            raise ValueError("notification subject too long")


class Sender(Protocol):
    """Where notifications go. ``send`` is awaited inside the caller's transaction and returns
    the sender's reference for the message (the outbox row id), which the audit row keeps."""

    async def send(self, notification: Notification) -> str: ...


class OutboxSender:
    """The default sender: stores each notification in the outbox of ``session``'s transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def send(self, notification: Notification) -> str:
        message = OutboxMessage(
            channel=notification.channel,
            recipient=notification.recipient.strip(),
            subject=notification.subject,
            body=notification.body,
            case_id=notification.case_id,
            hearing_id=notification.hearing_id,
            participant_id=notification.participant_id,
            created_at=utcnow(),
        )
        self.session.add(message)
        await self.session.flush()
        return str(message.id)


def mask_recipient(recipient: str) -> str:
    """``138****0001`` for a phone number, ``z***@example.cn`` for an e-mail address: enough to
    tell recipients apart in the audit trail without copying their contact details into it."""
    value = recipient.strip()
    if "@" in value:
        local, _, domain = value.partition("@")
        return (local[:1] or "*") + "***@" + domain
    digits = [c for c in value if c.isdigit()]
    if len(digits) >= 7:
        return "".join(digits[:3]) + "****" + "".join(digits[-4:])
    return "*" * len(value)


async def do_notify(
    session: AsyncSession,
    actor: Actor,
    sender: Sender,
    notification: Notification,
    *,
    case: Case | None = None,
) -> None:
    """Hand ``notification`` to ``sender`` and audit it (``notification.queued``, recipient
    masked, with the case, hearing and participant it is about). ``case`` supplies the
    organisation of the audit row; pass the case the notification is about."""
    reference = await sender.send(notification)
    await record(
        session,
        actor,
        AuditAction.NOTIFICATION_QUEUED,
        object_type="notification",
        object_id=reference,
        case_id=case.id if case is not None else notification.case_id,
        organisation_id=case.organisation_id if case is not None else None,
        details={
            "channel": notification.channel,
            "recipient": mask_recipient(notification.recipient),
            "hearing_id": notification.hearing_id,
            "participant_id": notification.participant_id,
        },
    )
