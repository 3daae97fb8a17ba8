"""SQLAlchemy models of agreements: the agreement, every version of its draft (kept forever),
the signers of an issued version, what happened to each (for the certificate of completion),
party comments on drafts, and postal shipments. All on ``cases.models.Base``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cases.models import Base, utcnow
from esign.catalogue import DIGITAL, DRAFT, PARALLEL, PENDING, V_DRAFT


class Agreement(Base):
    """A mediation agreement (调解协议书) of a case. ``status``: ``catalogue.STATUSES``."""

    __tablename__ = "agreements"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default=DRAFT)
    route: Mapped[str] = mapped_column(String(20), default=DIGITAL)
    signing_order: Mapped[str] = mapped_column(String(20), default=PARALLEL)
    # Parties may type their name instead of drawing (the mediator decides per agreement).
    allow_typed_name: Mapped[bool] = mapped_column(Boolean, default=False)
    current_version: Mapped[int] = mapped_column(Integer, default=1)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    effective_at: Mapped[dt.datetime | None] = mapped_column()
    judicial_reminded_at: Mapped[dt.datetime | None] = mapped_column()


class AgreementVersion(Base):
    """One version of the draft. Issuing renders and certifies it (``pdf``, ``issued_sha256``);
    each signature then replaces ``pdf`` by the next incremental revision (``revision`` +1)."""

    __tablename__ = "agreement_versions"
    __table_args__ = (UniqueConstraint("agreement_id", "number", name="agreement_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    agreement_id: Mapped[int] = mapped_column(
        ForeignKey("agreements.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=V_DRAFT)
    terms: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    document_id: Mapped[str] = mapped_column(String(40), unique=True)
    author_label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    issued_at: Mapped[dt.datetime | None] = mapped_column()
    issued_sha256: Mapped[str] = mapped_column(String(64), default="")
    pdf: Mapped[bytes | None] = mapped_column(LargeBinary)
    pdf_sha256: Mapped[str] = mapped_column(String(64), default="", index=True)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    completion_pdf: Mapped[bytes | None] = mapped_column(LargeBinary)


class AgreementSigner(Base):
    """Someone who must sign an issued version: a party (or their agent), the mediator, or the
    organisation's seal (applied by an organisation administrator). ``position`` orders them."""

    __tablename__ = "agreement_signers"

    id: Mapped[int] = mapped_column(primary_key=True)
    agreement_id: Mapped[int] = mapped_column(
        ForeignKey("agreements.id", ondelete="CASCADE"), index=True
    )
    version_id: Mapped[int] = mapped_column(
        ForeignKey("agreement_versions.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(20))  # catalogue.SIGNER_KINDS
    position: Mapped[int] = mapped_column(Integer)
    field_name: Mapped[str] = mapped_column(String(40))
    party_id: Mapped[int | None] = mapped_column(ForeignKey("parties.id"))
    # When the party's agent (委托代理人) signs for them: the agent's party row. ``name`` and
    # ``phone`` are then the agent's, ``party_id`` still the party signed for.
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("parties.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(200))
    role_label: Mapped[str] = mapped_column(String(500), default="")
    phone: Mapped[str] = mapped_column(String(40), default="")
    route: Mapped[str] = mapped_column(String(20), default=DIGITAL)
    status: Mapped[str] = mapped_column(String(20), default=PENDING)
    link_version: Mapped[int] = mapped_column(Integer, default=1)
    code_hash: Mapped[str] = mapped_column(String(64), default="")
    code_expires_at: Mapped[dt.datetime | None] = mapped_column()
    code_attempts: Mapped[int] = mapped_column(Integer, default=0)
    code_verified_at: Mapped[dt.datetime | None] = mapped_column()
    verified_recipient: Mapped[str] = mapped_column(String(60), default="")  # masked
    viewed_at: Mapped[dt.datetime | None] = mapped_column()
    signed_at: Mapped[dt.datetime | None] = mapped_column()
    signed_ip: Mapped[str] = mapped_column(String(64), default="")
    signed_user_agent: Mapped[str] = mapped_column(String(300), default="")
    revision_sha256: Mapped[str] = mapped_column(String(64), default="")  # PDF after signing


class SignatureEvent(Base):
    """What happened to a signer, when, from where: the certificate of completion's source."""

    __tablename__ = "agreement_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    agreement_id: Mapped[int] = mapped_column(
        ForeignKey("agreements.id", ondelete="CASCADE"), index=True
    )
    version_id: Mapped[int | None] = mapped_column(Integer)
    signer_id: Mapped[int | None] = mapped_column(Integer, index=True)
    event: Mapped[str] = mapped_column(String(30))  # catalogue.EVENTS
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor_label: Mapped[str] = mapped_column(String(200), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AgreementComment(Base):
    """A party's comment on a draft version, read by the mediator."""

    __tablename__ = "agreement_comments"

    id: Mapped[int] = mapped_column(primary_key=True)
    agreement_id: Mapped[int] = mapped_column(
        ForeignKey("agreements.id", ondelete="CASCADE"), index=True
    )
    version_id: Mapped[int] = mapped_column(ForeignKey("agreement_versions.id"))
    signer_id: Mapped[int | None] = mapped_column(ForeignKey("agreement_signers.id"))
    author_label: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PostalShipment(Base):
    """The paper copy sent to one party for a wet signature and fingerprint, and its return.
    The returned scan is registered as evidence and bound to the issued document's hash."""

    __tablename__ = "agreement_shipments"

    id: Mapped[int] = mapped_column(primary_key=True)
    agreement_id: Mapped[int] = mapped_column(
        ForeignKey("agreements.id", ondelete="CASCADE"), index=True
    )
    version_id: Mapped[int] = mapped_column(ForeignKey("agreement_versions.id"))
    signer_id: Mapped[int] = mapped_column(ForeignKey("agreement_signers.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))  # catalogue.SHIPMENT_STATUSES
    carrier: Mapped[str] = mapped_column(String(60))
    tracking_number: Mapped[str] = mapped_column(String(60))
    sent_on: Mapped[dt.date] = mapped_column(Date)
    return_carrier: Mapped[str] = mapped_column(String(60), default="")
    return_tracking_number: Mapped[str] = mapped_column(String(60), default="")
    returned_on: Mapped[dt.date | None] = mapped_column(Date)
    evidence_item_id: Mapped[int | None] = mapped_column(ForeignKey("evidence_items.id"))
    scan_sha256: Mapped[str] = mapped_column(String(64), default="")
    document_sha256: Mapped[str] = mapped_column(String(64))  # the issued PDF it belongs to
    recorded_by_label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
