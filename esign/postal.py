"""The postal route: a party signs the printed agreement (signature and fingerprint) and sends
it back. The mediator records the dispatch (carrier, tracking number, date) and the return; the
returned scan is registered as evidence of the case (``evidence`` items: encrypted, hashed, in
the ledger) and bound to the SHA-256 of the issued document it is a copy of."""

from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cases.actor import Actor
from cases.audit import AuditAction, record
from cases.catalogue import N_, Msg
from cases.errors import Conflict, Invalid
from cases.models import Case, utcnow
from esign.agreements import _event, check_draft, signer_context
from esign.catalogue import (
    DISPATCHED,
    EV_SIGNED,
    PARTY,
    PENDING,
    POSTAL,
    RETURNED,
    SIGNED,
    V_ISSUED,
)
from esign.models import AgreementSigner, PostalShipment
from evidence.access import staff_principal
from evidence.filetypes import sniff
from evidence.models import EvidenceItem
from evidence.runtime import EvidenceRuntime
from evidence.uploads import UploadMetadata, do_create_upload, do_register_item

SCAN_TYPES = frozenset({"pdf", "jpeg", "png"})
MAX_FIELD = 60


def _text(value: str, what: str) -> str:
    value = (value or "").strip()
    if not value or len(value) > MAX_FIELD:
        raise Invalid(
            N_("Fill in %(what)s (at most 60 characters)."), code="postal_field_invalid", what=what
        )
    return value


async def shipments_of(session: AsyncSession, agreement_id: int) -> list[PostalShipment]:
    rows = await session.scalars(
        select(PostalShipment)
        .where(PostalShipment.agreement_id == agreement_id)
        .order_by(PostalShipment.id)
    )
    return list(rows)


async def _postal_signer(
    session: AsyncSession, actor: Actor, signer: AgreementSigner
) -> tuple[Case, PostalShipment | None]:
    agreement, case, version = await signer_context(session, signer)
    if actor.user is None:
        raise Conflict(N_("Only staff record postal shipments."), code="postal_forbidden")
    check_draft(actor.user, case)
    if signer.kind != PARTY or signer.route != POSTAL or version.status != V_ISSUED:
        raise Conflict(
            N_("This signer does not sign a paper copy of an issued agreement."),
            code="postal_not_applicable",
        )
    shipment = await session.scalar(
        select(PostalShipment)
        .where(PostalShipment.signer_id == signer.id)
        .order_by(PostalShipment.id.desc())
        .limit(1)
    )
    return case, shipment


async def do_dispatch(
    session: AsyncSession,
    actor: Actor,
    signer: AgreementSigner,
    *,
    carrier: str,
    tracking_number: str,
    sent_on: dt.date,
) -> PostalShipment:
    """The printed copy went out to the party."""
    case, previous = await _postal_signer(session, actor, signer)
    if signer.status == SIGNED:
        raise Conflict(
            N_("This party's signed copy is already back."), code="postal_already_returned"
        )
    agreement, _case, version = await signer_context(session, signer)
    shipment = PostalShipment(
        agreement_id=agreement.id,
        version_id=version.id,
        signer_id=signer.id,
        status=DISPATCHED,
        carrier=_text(carrier, Msg(N_("the carrier"))),
        tracking_number=_text(tracking_number, Msg(N_("the tracking number"))),
        sent_on=sent_on,
        document_sha256=version.issued_sha256,
        recorded_by_label=actor.label,
    )
    session.add(shipment)
    await session.flush()
    await record(
        session,
        actor,
        AuditAction.POSTAL_DISPATCHED,
        object_type="agreement",
        object_id=agreement.id,
        case_id=case.id,
        organisation_id=case.organisation_id,
        details={
            "signer_id": signer.id,
            "carrier": shipment.carrier,
            "tracking_number": shipment.tracking_number,
            "resent": previous is not None,
        },
    )
    return shipment


async def do_record_return(
    session: AsyncSession,
    actor: Actor,
    signer: AgreementSigner,
    evidence: EvidenceRuntime,
    *,
    scan: bytes,
    filename: str,
    carrier: str,
    tracking_number: str,
    returned_on: dt.date,
) -> tuple[PostalShipment, EvidenceItem]:
    """The signed paper copy came back: its scan becomes evidence, bound to the issued
    document's hash, and the party counts as signed."""
    case, shipment = await _postal_signer(session, actor, signer)
    if shipment is None:
        raise Conflict(N_("Record the dispatch first."), code="postal_not_dispatched")
    if shipment.status == RETURNED or signer.status == SIGNED:
        raise Conflict(
            N_("This party's signed copy is already back."), code="postal_already_returned"
        )
    kind = sniff(scan[:4096])
    if kind not in SCAN_TYPES:
        raise Invalid(N_("Upload the scan as a PDF, JPEG or PNG file."), code="postal_scan_type")
    agreement, _case, version = await signer_context(session, signer)
    principal = staff_principal(actor)
    meta = UploadMetadata(
        filename=(filename or f"scan.{kind}")[:255],
        title=f"调解协议书（{signer.name}签字件）"[:200],
        category="documentary",
        purpose=f"{signer.name}在调解协议书 {version.document_id}（SHA-256 {version.issued_sha256}）纸质文本上签名、按指印的回寄扫描件",
    )
    upload = await do_create_upload(session, principal, case, len(scan), meta, evidence.limits)
    writer = await evidence.store.open_writer(upload.blob_id)
    try:
        await writer.write(scan)
        await writer.commit()
    finally:
        await writer.close()
    digest = hashlib.sha256(scan).hexdigest()
    item = await do_register_item(session, principal, case, upload, len(scan), digest, kind)
    now = utcnow()
    done = await session.execute(
        update(AgreementSigner)
        .where(AgreementSigner.id == signer.id, AgreementSigner.status == PENDING)
        .values(
            status=SIGNED,
            signed_at=now,
            signed_ip=actor.ip[:64],
            signed_user_agent=actor.user_agent[:300],
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(done, "rowcount", 0) != 1:
        raise Conflict(
            N_("This party's signed copy is already back."), code="postal_already_returned"
        )
    shipment.status = RETURNED
    shipment.return_carrier = _text(carrier, Msg(N_("the carrier")))
    shipment.return_tracking_number = _text(tracking_number, Msg(N_("the tracking number")))
    shipment.returned_on = returned_on
    shipment.evidence_item_id = item.id
    shipment.scan_sha256 = digest
    await session.flush()
    await session.refresh(signer)
    await _event(
        session,
        actor,
        agreement,
        EV_SIGNED,
        version=version,
        signer=signer,
        details={"postal": True, "evidence_item": item.number, "scan_sha256": digest},
    )
    await record(
        session,
        actor,
        AuditAction.POSTAL_RETURNED,
        object_type="agreement",
        object_id=agreement.id,
        case_id=case.id,
        organisation_id=case.organisation_id,
        details={
            "signer_id": signer.id,
            "evidence_item": item.number,
            "scan_sha256": digest,
            "document_sha256": shipment.document_sha256,
        },
    )
    return shipment, item
