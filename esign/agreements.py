"""Agreements: drafting (every version kept), issuing for signature, one-time codes, signing
(concurrency-safe), the seal and the certificate of completion. ``check_*`` decide, ``do_*``
change state in the caller's transaction and write the audit row of the change.

Who may do what:

- the case's mediator and the office (``cases.access.can_progress_case``): draft, change,
  issue, record postal shipments, sign as mediator (the mediator only);
- the organisation's administrators (or a system administrator): apply the seal;
- each party, only through their own signing link (``esign.links``): view, comment, ask for a
  code, confirm it, sign. Nothing of another case or another signer.

Signing order: parties (in parallel, or in the order listed — a per-agreement choice), then the
mediator, then the seal. A change of the draft after issue voids the version and its pending
signatures; the next issue starts again with new links.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cases import access as case_access
from cases import lifecycle
from cases.actor import Actor
from cases.audit import AuditAction, record
from cases.catalogue import N_, WET_SIGNATURE_CATEGORIES, Msg
from cases.errors import Conflict, Forbidden, Invalid, NotFound
from cases.intake import get_case
from cases.models import Case, Organisation, Party, User, utcnow
from cases.notifications import SMS, Notification, Sender, do_notify, mask_recipient
from esign import signing
from esign.catalogue import (
    DIGITAL,
    DRAFT,
    EFFECTIVE,
    EV_CODE_FAILED,
    EV_CODE_SENT,
    EV_CODE_VERIFIED,
    EV_ISSUED,
    EV_SIGNED,
    EV_VIEWED,
    EV_VOIDED,
    MEDIATOR,
    ORDERS,
    PARALLEL,
    PARTY,
    PENDING,
    POSTAL,
    SEAL,
    SEQUENTIAL,
    SIGNED,
    SIGNING,
    SMS_CODE,
    SMS_DRAFT,
    SMS_SIGN_LINK,
    V_DRAFT,
    V_ISSUED,
    V_VOID,
    VOID,
    Texts,
    untranslated,
)
from esign.errors import CodeRefused
from esign.models import (
    Agreement,
    AgreementComment,
    AgreementSigner,
    AgreementVersion,
    SignatureEvent,
)
from esign.pki import Authority
from esign.render import SignerSlot, render_agreement

CODE_DIGITS = 6
# A new code (another text message) only when the last one is used up, or a minute later.
CODE_RESEND_AFTER = dt.timedelta(minutes=1)
# After the code is confirmed the signer has this long to draw and submit.
VERIFIED_WINDOW = dt.timedelta(minutes=15)
MAX_TEXT = 4000
MAX_ITEMS = 30
CLOSED_CASE_STATES = frozenset({lifecycle.FAILED, lifecycle.WITHDRAWN, lifecycle.CLOSED})
TERM_FIELDS = (
    "facts",
    "dispute",
    "responsibilities",
    "performance_manner",
    "performance_place",
    "performance_deadline",
    "extra",
)
TERM_LABELS: dict[str, str] = {
    "facts": N_("main facts"),
    "dispute": N_("points in dispute"),
    "responsibilities": N_("responsibilities"),
    "performance_manner": N_("manner of performance"),
    "performance_place": N_("place of performance"),
    "performance_deadline": N_("time limit of performance"),
    "extra": N_("other terms"),
}
REQUIRED_TERMS = ("facts", "performance_manner", "performance_place", "performance_deadline")


@dataclass(frozen=True)
class DocumentSettings:
    """What rendering and signing need from the settings (this package never reads them)."""

    font_path: Path
    base_url: str
    secret: str
    code_ttl: dt.timedelta
    code_max_attempts: int
    texts: Texts = untranslated  # text messages in the platform's default language

    def verify_url(self, document_id: str) -> str:
        return f"{self.base_url}/agreements/verify?id={document_id}"


# ---- terms ---------------------------------------------------------------------------------


def check_terms(raw: dict[str, Any]) -> dict[str, Any]:
    """The structured terms of a draft, checked: text fields, ``items`` (the agreed clauses)
    and ``copies``. Raises ``Invalid`` naming the first problem."""
    terms: dict[str, Any] = {}
    for name in TERM_FIELDS:
        value = raw.get(name, "")
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise Invalid(
                N_("The field %(field)s is too long (at most 4000 characters)."),
                code="agreement_terms_invalid",
                field=Msg(TERM_LABELS[name]),
            )
        terms[name] = value.strip()
    for name in REQUIRED_TERMS:
        if not terms[name]:
            raise Invalid(
                N_("Please fill in the field %(field)s of the agreement."),
                code="agreement_terms_missing",
                field=Msg(TERM_LABELS[name]),
            )
    items = raw.get("items", [])
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise Invalid(
            N_("The agreed terms must be a list of texts."), code="agreement_terms_invalid"
        )
    items = [i.strip() for i in items if i.strip()]
    if not items or len(items) > MAX_ITEMS or any(len(i) > MAX_TEXT for i in items):
        raise Invalid(
            N_("Write between 1 and 30 agreed terms, each at most 4000 characters."),
            code="agreement_terms_missing",
        )
    terms["items"] = items
    copies = raw.get("copies", 0) or 0
    if not isinstance(copies, int) or isinstance(copies, bool) or not 0 <= copies <= 20:
        raise Invalid(
            N_("The number of copies must be between 1 and 20."), code="agreement_terms_invalid"
        )
    terms["copies"] = copies
    return terms


def starting_terms(case: Case) -> dict[str, Any]:
    """A first draft from the case file, for the editor."""
    return {
        "facts": case.summary,
        "dispute": case.title,
        "responsibilities": "",
        "items": [],
        "performance_manner": "",
        "performance_place": "",
        "performance_deadline": "",
        "copies": 0,
        "extra": "",
    }


# ---- loading and access ----------------------------------------------------------------------


async def get_agreement(session: AsyncSession, agreement_id: int) -> Agreement:
    agreement = await session.get(Agreement, agreement_id, populate_existing=True)
    if agreement is None:
        raise NotFound(N_("There is no such agreement."), code="agreement_not_found")
    return agreement


async def current_version(session: AsyncSession, agreement: Agreement) -> AgreementVersion:
    version = await session.scalar(
        select(AgreementVersion)
        .where(
            AgreementVersion.agreement_id == agreement.id,
            AgreementVersion.number == agreement.current_version,
        )
        .execution_options(populate_existing=True)
    )
    if version is None:  # pragma: no cover - created together
        raise NotFound(N_("There is no such agreement."), code="agreement_not_found")
    return version


async def versions(session: AsyncSession, agreement: Agreement) -> list[AgreementVersion]:
    rows = await session.scalars(
        select(AgreementVersion)
        .where(AgreementVersion.agreement_id == agreement.id)
        .order_by(AgreementVersion.number)
    )
    return list(rows)


async def signers_of(session: AsyncSession, version: AgreementVersion) -> list[AgreementSigner]:
    rows = await session.scalars(
        select(AgreementSigner)
        .where(AgreementSigner.version_id == version.id)
        .order_by(AgreementSigner.position)
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def case_agreements(session: AsyncSession, case: Case) -> list[Agreement]:
    rows = await session.scalars(
        select(Agreement).where(Agreement.case_id == case.id).order_by(Agreement.id)
    )
    return list(rows)


def check_staff_view(user: User, case: Case) -> None:
    if not case_access.can_view_case(user, case):
        raise Forbidden(N_("You do not have access to this."), code="forbidden")


def check_draft(user: User, case: Case) -> None:
    if not case_access.can_progress_case(user, case):
        raise Forbidden(
            N_("Only the case's mediator or the mediation office can prepare the agreement."),
            code="agreement_forbidden",
        )


def check_signer_case(signer: AgreementSigner, agreement: Agreement) -> None:
    """A party's link opens only their own agreement."""
    if signer.agreement_id != agreement.id:
        raise Forbidden(N_("You do not have access to this."), code="forbidden")


async def load_staff(
    session: AsyncSession, user: User, agreement_id: int
) -> tuple[Agreement, Case]:
    agreement = await get_agreement(session, agreement_id)
    case = await get_case(session, agreement.case_id)
    check_staff_view(user, case)
    return agreement, case


# ---- events ---------------------------------------------------------------------------------


async def _event(
    session: AsyncSession,
    actor: Actor,
    agreement: Agreement,
    event: str,
    *,
    version: AgreementVersion | None = None,
    signer: AgreementSigner | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    session.add(
        SignatureEvent(
            agreement_id=agreement.id,
            version_id=version.id if version is not None else None,
            signer_id=signer.id if signer is not None else None,
            event=event,
            at=utcnow(),
            actor_label=actor.label[:200],
            ip=actor.ip[:64],
            user_agent=actor.user_agent[:300],
            details=details or {},
        )
    )
    await session.flush()


async def _audit(
    session: AsyncSession,
    actor: Actor,
    action: AuditAction,
    case: Case,
    agreement: Agreement,
    **details: Any,
) -> None:
    await record(
        session,
        actor,
        action,
        object_type="agreement",
        object_id=agreement.id,
        case_id=case.id,
        organisation_id=case.organisation_id,
        details=details,
    )


# ---- drafting -------------------------------------------------------------------------------


def _new_document_id(agreement_id: int, number: int) -> str:
    # The random part keeps document IDs (printed, in QR codes) from being enumerated.
    return f"YT-A{agreement_id}-V{number}-{secrets.token_hex(4).upper()}"


async def do_create(
    session: AsyncSession,
    actor: Actor,
    case: Case,
    terms: dict[str, Any],
    *,
    signing_order: str = PARALLEL,
    allow_typed_name: bool = False,
) -> Agreement:
    """A new agreement with its first draft version. Marriage, adoption and inheritance
    matters always go by post (Electronic Signature Law Art. 3)."""
    if actor.user is None:
        raise Forbidden(N_("You do not have access to this."), code="forbidden")
    check_draft(actor.user, case)
    if case.status in CLOSED_CASE_STATES:
        raise Conflict(N_("This case is closed; no agreement can be drafted."), code="case_closed")
    if signing_order not in ORDERS:
        raise Invalid(N_("Unknown signing order."), code="agreement_order_invalid")
    checked = check_terms(terms)
    agreement = Agreement(
        case_id=case.id,
        status=DRAFT,
        route=POSTAL if case.category in WET_SIGNATURE_CATEGORIES else DIGITAL,
        signing_order=signing_order,
        allow_typed_name=allow_typed_name,
        current_version=1,
        created_by_id=actor.user.id,
    )
    session.add(agreement)
    await session.flush()
    session.add(
        AgreementVersion(
            agreement_id=agreement.id,
            number=1,
            status=V_DRAFT,
            terms=checked,
            document_id=_new_document_id(agreement.id, 1),
            author_label=actor.label,
        )
    )
    await session.flush()
    await _audit(
        session, actor, AuditAction.AGREEMENT_CREATED, case, agreement, route=agreement.route
    )
    return agreement


async def do_update_terms(
    session: AsyncSession,
    actor: Actor,
    case: Case,
    agreement: Agreement,
    terms: dict[str, Any],
    *,
    signing_order: str | None = None,
    allow_typed_name: bool | None = None,
) -> AgreementVersion:
    """Every change is a new version; the old one is kept. Changing an issued version voids it
    and every signature request on it — also signatures already given, since they were given to
    other terms."""
    if actor.user is None:
        raise Forbidden(N_("You do not have access to this."), code="forbidden")
    check_draft(actor.user, case)
    if agreement.status == EFFECTIVE:
        raise Conflict(
            N_("This agreement is in force and can no longer be changed."),
            code="agreement_effective",
        )
    if signing_order is not None and signing_order not in ORDERS:
        raise Invalid(N_("Unknown signing order."), code="agreement_order_invalid")
    checked = check_terms(terms)
    previous = await current_version(session, agreement)
    # Conditional: two editors saving at once get two versions in sequence, never the same one.
    done = await session.execute(
        update(Agreement)
        .where(Agreement.id == agreement.id, Agreement.current_version == previous.number)
        .values(
            current_version=previous.number + 1,
            status=DRAFT,
            signing_order=signing_order or agreement.signing_order,
            allow_typed_name=(
                agreement.allow_typed_name if allow_typed_name is None else allow_typed_name
            ),
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(done, "rowcount", 0) != 1:
        raise Conflict(
            N_("Someone else changed this agreement just now. Reload and try again."),
            code="agreement_changed",
        )
    voided = 0
    if previous.status == V_ISSUED:
        previous.status = V_VOID
        result = await session.execute(
            update(AgreementSigner)
            .where(AgreementSigner.version_id == previous.id, AgreementSigner.status != VOID)
            .values(status=VOID)
            .execution_options(synchronize_session=False)
        )
        voided = int(getattr(result, "rowcount", 0) or 0)
        await _event(
            session, actor, agreement, EV_VOIDED, version=previous, details={"signers": voided}
        )
    elif previous.status == V_DRAFT:
        previous.status = V_VOID
    version = AgreementVersion(
        agreement_id=agreement.id,
        number=previous.number + 1,
        status=V_DRAFT,
        terms=checked,
        document_id=_new_document_id(agreement.id, previous.number + 1),
        author_label=actor.label,
    )
    session.add(version)
    await session.flush()
    await session.refresh(agreement)
    await _audit(
        session,
        actor,
        AuditAction.AGREEMENT_VERSION_SAVED,
        case,
        agreement,
        version=version.number,
        voided_signatures=voided,
    )
    return version


async def do_comment(
    session: AsyncSession,
    actor: Actor,
    case: Case,
    agreement: Agreement,
    signer: AgreementSigner,
    text: str,
) -> AgreementComment:
    """A party's comment on the version they were sent."""
    check_signer_case(signer, agreement)
    text = text.strip()
    if not text or len(text) > MAX_TEXT:
        raise Invalid(
            N_("Write a comment of at most 4000 characters."), code="agreement_comment_invalid"
        )
    comment = AgreementComment(
        agreement_id=agreement.id,
        version_id=signer.version_id,
        signer_id=signer.id,
        author_label=signer.name,
        text=text,
    )
    session.add(comment)
    await session.flush()
    await _audit(
        session, actor, AuditAction.AGREEMENT_COMMENTED, case, agreement, signer_id=signer.id
    )
    return comment


# ---- draft review by the parties ----------------------------------------------------------


async def do_share_draft(
    session: AsyncSession,
    actor: Actor,
    case: Case,
    agreement: Agreement,
    sender: Sender,
    link_for: Callable[[Party, AgreementVersion], str],
    texts: Texts = untranslated,
) -> list[tuple[Party, str]]:
    """Send each party (with a phone) a link to read the current draft and comment on it.
    Returns every party's link (to hand over in person when there is no phone)."""
    if actor.user is None:
        raise Forbidden(N_("You do not have access to this."), code="forbidden")
    check_draft(actor.user, case)
    version = await current_version(session, agreement)
    if version.status != V_DRAFT:
        raise Conflict(
            N_("Only a draft is sent for review; this version is already issued."),
            code="agreement_not_draft",
        )
    links = []
    for party in case.parties:
        if party.role == "agent":
            continue
        url = link_for(party, version)
        links.append((party, url))
        if party.phone:
            await do_notify(
                session,
                actor,
                sender,
                Notification(
                    channel=SMS,
                    recipient=party.phone,
                    body=texts(
                        SMS_DRAFT, {"number": case.number, "version": version.number, "link": url}
                    ),
                    case_id=case.id,
                ),
                case=case,
            )
    await _audit(
        session, actor, AuditAction.AGREEMENT_DRAFT_SHARED, case, agreement, version=version.number
    )
    return links


async def open_review(
    session: AsyncSession, agreement_id: int, party_id: int, number: int
) -> tuple[Agreement, Case, AgreementVersion, Party]:
    """The draft a review link shows; ``Forbidden`` if the party is not of that case,
    ``Conflict`` when the draft was replaced or issued since (the party then gets a new link)."""
    agreement = await get_agreement(session, agreement_id)
    case = await get_case(session, agreement.case_id)
    party = next((p for p in case.parties if p.id == party_id and p.role != "agent"), None)
    if party is None:
        raise Forbidden(N_("This review link is not valid."), code="review_link_invalid")
    version = await current_version(session, agreement)
    if version.number != number or version.status != V_DRAFT:
        raise Conflict(
            N_("This draft has been replaced. You will receive a new link."),
            code="review_draft_replaced",
        )
    return agreement, case, version, party


async def do_review_comment(
    session: AsyncSession,
    actor: Actor,
    case: Case,
    agreement: Agreement,
    version: AgreementVersion,
    party: Party,
    text: str,
) -> AgreementComment:
    text = text.strip()
    if not text or len(text) > MAX_TEXT:
        raise Invalid(
            N_("Write a comment of at most 4000 characters."), code="agreement_comment_invalid"
        )
    comment = AgreementComment(
        agreement_id=agreement.id, version_id=version.id, author_label=party.name, text=text
    )
    session.add(comment)
    await session.flush()
    await _audit(
        session, actor, AuditAction.AGREEMENT_COMMENTED, case, agreement, party_id=party.id
    )
    return comment


# ---- issue ----------------------------------------------------------------------------------


def _party_label(party: Party) -> str:
    from esign.render import ROLE_ZH

    return f"{ROLE_ZH.get(party.role, party.role)}：{party.name}"


async def do_issue(
    session: AsyncSession,
    actor: Actor,
    case: Case,
    agreement: Agreement,
    authority: Authority,
    docs: DocumentSettings,
    sender: Sender,
    *,
    postal_party_ids: frozenset[int] = frozenset(),
    agent_party_ids: frozenset[int] = frozenset(),
    link_for: Callable[[AgreementSigner], str] | None = None,
) -> AgreementVersion:
    """Render the current draft, create its signers (each party, the mediator, the seal), add
    their signature fields and certify it for the organisation: from now on the text is locked.
    Parties with a phone get their personal link by text message (``link_for``)."""
    if actor.user is None:
        raise Forbidden(N_("You do not have access to this."), code="forbidden")
    check_draft(actor.user, case)
    version = await current_version(session, agreement)
    if version.status != V_DRAFT:
        raise Conflict(
            N_("This version has already been issued. Change the draft to issue a new version."),
            code="agreement_already_issued",
        )
    if case.mediator is None:
        raise Conflict(
            N_("Assign a mediator to the case before issuing the agreement."),
            code="agreement_no_mediator",
        )
    organisation = await session.get(Organisation, case.organisation_id)
    assert organisation is not None
    principals = [p for p in case.parties if p.role != "agent"]
    if len(principals) < 2:
        raise Conflict(
            N_("An agreement needs at least two parties."), code="agreement_too_few_parties"
        )
    wet = case.category in WET_SIGNATURE_CATEGORIES
    signers: list[AgreementSigner] = []
    for position, party in enumerate(principals, start=1):
        agent = None
        if party.id in agent_party_ids:
            agent = next(
                (a for a in case.parties if a.role == "agent" and a.represents_id == party.id),
                None,
            )
            if agent is None:
                raise Invalid(
                    N_("%(name)s has no agent on file to sign for them."),
                    code="agreement_no_agent",
                    name=party.name,
                )
        label = _party_label(party)
        signers.append(
            AgreementSigner(
                agreement_id=agreement.id,
                version_id=version.id,
                kind=PARTY,
                position=position,
                field_name=f"party-{party.id}",
                party_id=party.id,
                agent_id=agent.id if agent else None,
                name=agent.name if agent else party.name,
                role_label=f"{label}（委托代理人：{agent.name}）" if agent else label,
                phone=agent.phone if agent else party.phone,
                route=POSTAL if wet or party.id in postal_party_ids else DIGITAL,
            )
        )
    signers.append(
        AgreementSigner(
            agreement_id=agreement.id,
            version_id=version.id,
            kind=MEDIATOR,
            position=len(signers) + 1,
            field_name="mediator",
            user_id=case.mediator.id,
            name=case.mediator.display_name,
            role_label=f"人民调解员：{case.mediator.display_name}",
        )
    )
    signers.append(
        AgreementSigner(
            agreement_id=agreement.id,
            version_id=version.id,
            kind=SEAL,
            position=len(signers) + 1,
            field_name="seal",
            name=organisation.name,
            role_label=f"{organisation.name}（印章）",
        )
    )
    slots = [SignerSlot(s.field_name, s.kind, s.role_label) for s in signers]
    rendered = render_agreement(
        case,
        version.terms,
        slots,
        document_id=version.document_id,
        verify_url=docs.verify_url(version.document_id),
        mediator=case.mediator.display_name,
        organisation=organisation.name,
        font_path=docs.font_path,
        route=POSTAL if wet else DIGITAL,
    )
    # Postal copies are signed on paper: their fields stay out of the electronic document.
    places = [
        p
        for p in rendered.places
        if not any(s.field_name == p.name and s.route == POSTAL for s in signers)
    ]
    issued = await signing.issue(
        rendered.pdf,
        places,
        authority.issue_signer(organisation.name, case.number, organisation.name, "签发"),
        authority.timestamper,
        name=organisation.name,
        reason="人民调解协议书签发（文本锁定）",
    )
    now = utcnow()
    done = await session.execute(
        update(AgreementVersion)
        .where(AgreementVersion.id == version.id, AgreementVersion.status == V_DRAFT)
        .values(
            status=V_ISSUED,
            issued_at=now,
            pdf=issued,
            issued_sha256=hashlib.sha256(issued).hexdigest(),
            pdf_sha256=hashlib.sha256(issued).hexdigest(),
            revision=1,
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(done, "rowcount", 0) != 1:
        raise Conflict(
            N_("This version has already been issued. Change the draft to issue a new version."),
            code="agreement_already_issued",
        )
    await session.execute(
        update(Agreement)
        .where(Agreement.id == agreement.id)
        .values(status=SIGNING, route=POSTAL if wet else agreement.route, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    session.add_all(signers)
    await session.flush()
    await session.refresh(version)
    await session.refresh(agreement)
    await _event(
        session,
        actor,
        agreement,
        EV_ISSUED,
        version=version,
        details={"sha256": version.issued_sha256},
    )
    await _audit(
        session,
        actor,
        AuditAction.AGREEMENT_ISSUED,
        case,
        agreement,
        version=version.number,
        document_id=version.document_id,
        sha256=version.issued_sha256,
    )
    if link_for is not None:
        for signer in signers:
            if signer.kind == PARTY and signer.route == DIGITAL and signer.phone:
                await do_notify(
                    session,
                    actor,
                    sender,
                    Notification(
                        channel=SMS,
                        recipient=signer.phone,
                        body=docs.texts(
                            SMS_SIGN_LINK, {"number": case.number, "link": link_for(signer)}
                        ),
                        case_id=case.id,
                    ),
                    case=case,
                )
    return version


# ---- signers: view, code, sign ----------------------------------------------------------------


async def signer_context(
    session: AsyncSession, signer: AgreementSigner
) -> tuple[Agreement, Case, AgreementVersion]:
    agreement = await get_agreement(session, signer.agreement_id)
    case = await get_case(session, agreement.case_id)
    version = await session.get(AgreementVersion, signer.version_id, populate_existing=True)
    assert version is not None
    return agreement, case, version


def _check_active(signer: AgreementSigner, version: AgreementVersion) -> None:
    if signer.status == VOID or version.status == V_VOID:
        raise Conflict(
            N_("The agreement was changed after this link was sent. You will receive a new link."),
            code="agreement_version_void",
        )


async def do_view(session: AsyncSession, actor: Actor, signer: AgreementSigner) -> None:
    """First view of the issued document by this signer (time, IP, browser kept)."""
    agreement, case, version = await signer_context(session, signer)
    if signer.viewed_at is not None:
        return
    done = await session.execute(
        update(AgreementSigner)
        .where(AgreementSigner.id == signer.id, AgreementSigner.viewed_at.is_(None))
        .values(viewed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if getattr(done, "rowcount", 0) == 1:
        await _event(session, actor, agreement, EV_VIEWED, version=version, signer=signer)
        await _audit(
            session, actor, AuditAction.AGREEMENT_VIEWED, case, agreement, signer_id=signer.id
        )
    await session.refresh(signer)


def _code_hash(secret: str, signer: AgreementSigner, code: str) -> str:
    message = f"{signer.id}:{signer.link_version}:{code}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


async def do_send_code(
    session: AsyncSession,
    actor: Actor,
    signer: AgreementSigner,
    sender: Sender,
    docs: DocumentSettings,
) -> str:
    """A fresh six-digit code to the signer's phone (any earlier code is void); returns the
    masked recipient to show ("sent to 138****0001")."""
    agreement, case, version = await signer_context(session, signer)
    _check_active(signer, version)
    if signer.status == SIGNED:
        raise Conflict(N_("You have already signed this agreement."), code="already_signed")
    if signer.kind != PARTY or signer.route != DIGITAL:
        raise Conflict(N_("This signer does not sign with a code."), code="signing_code_not_used")
    if not signer.phone:
        raise Conflict(
            N_("No phone number is on file for you. Ask the mediation office to add one."),
            code="signing_no_phone",
        )
    now = utcnow()
    live = (
        signer.code_hash
        and signer.code_expires_at is not None
        and now < signer.code_expires_at
        and signer.code_attempts < docs.code_max_attempts
    )
    if live and signer.code_expires_at is not None:
        sent_at = signer.code_expires_at - docs.code_ttl
        if now - sent_at < CODE_RESEND_AFTER:
            raise Conflict(
                N_("A code was sent less than a minute ago. Please wait for the text message."),
                code="signing_code_too_soon",
            )
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    signer.code_hash = _code_hash(docs.secret, signer, code)
    signer.code_expires_at = now + docs.code_ttl
    signer.code_attempts = 0
    signer.code_verified_at = None
    await session.flush()
    minutes = max(1, int(docs.code_ttl.total_seconds() // 60))
    await do_notify(
        session,
        actor,
        sender,
        Notification(
            channel=SMS,
            recipient=signer.phone,
            body=docs.texts(SMS_CODE, {"number": case.number, "code": code, "minutes": minutes}),
            case_id=case.id,
        ),
        case=case,
    )
    masked = mask_recipient(signer.phone)
    await _event(
        session,
        actor,
        agreement,
        EV_CODE_SENT,
        version=version,
        signer=signer,
        details={"to": masked},
    )
    await _audit(
        session,
        actor,
        AuditAction.SIGNING_CODE_SENT,
        case,
        agreement,
        signer_id=signer.id,
        to=masked,
    )
    return masked


async def do_verify_code(
    session: AsyncSession,
    actor: Actor,
    signer: AgreementSigner,
    code: str,
    docs: DocumentSettings,
) -> None:
    """Confirm the signer's identity. Wrong, expired or exhausted codes are refused with a
    reason; each failure is counted (the refusal is committed) and audited."""
    agreement, case, version = await signer_context(session, signer)
    _check_active(signer, version)
    now = utcnow()
    if not signer.code_hash or signer.code_expires_at is None:
        raise Invalid(N_("Ask for a code first."), code="signing_code_missing")
    if signer.code_attempts >= docs.code_max_attempts:
        raise CodeRefused(
            N_("Too many wrong codes. Ask for a new code."), code="signing_code_exhausted"
        )
    if now >= signer.code_expires_at:
        raise CodeRefused(
            N_("This code has expired. Ask for a new code."), code="signing_code_expired"
        )
    given = code.strip() if isinstance(code, str) else ""
    if not (given.isdigit() and len(given) == CODE_DIGITS) or not hmac.compare_digest(
        _code_hash(docs.secret, signer, given), signer.code_hash
    ):
        # Counted in SQL, so parallel guesses cannot share one attempt.
        await session.execute(
            update(AgreementSigner)
            .where(AgreementSigner.id == signer.id)
            .values(code_attempts=AgreementSigner.code_attempts + 1)
            .execution_options(synchronize_session=False)
        )
        await session.refresh(signer)
        left = max(0, docs.code_max_attempts - signer.code_attempts)
        await _event(session, actor, agreement, EV_CODE_FAILED, version=version, signer=signer)
        await _audit(
            session,
            actor,
            AuditAction.SIGNING_CODE_FAILED,
            case,
            agreement,
            signer_id=signer.id,
            left=left,
        )
        raise CodeRefused(
            N_("The code is wrong. %(left)s attempts left."), code="signing_code_wrong", left=left
        )
    signer.code_verified_at = now
    signer.code_hash = ""  # one use
    signer.verified_recipient = mask_recipient(signer.phone)
    await session.flush()
    await _event(
        session,
        actor,
        agreement,
        EV_CODE_VERIFIED,
        version=version,
        signer=signer,
        details={"to": signer.verified_recipient},
    )
    await _audit(
        session, actor, AuditAction.SIGNING_CODE_VERIFIED, case, agreement, signer_id=signer.id
    )


def check_turn(signer: AgreementSigner, all_signers: list[AgreementSigner], order: str) -> None:
    """Parties (in parallel or in order), then the mediator, then the seal."""
    others = [s for s in all_signers if s.id != signer.id and s.status != VOID]
    parties = [s for s in others if s.kind == PARTY]
    waiting: list[AgreementSigner] = []
    if signer.kind == SEAL:
        waiting = [s for s in others if s.status != SIGNED]
    elif signer.kind == MEDIATOR:
        waiting = [s for s in parties if s.status != SIGNED]
    elif order == SEQUENTIAL:
        waiting = [s for s in parties if s.position < signer.position and s.status != SIGNED]
    if waiting:
        raise Conflict(
            N_("It is not your turn yet: %(names)s must sign first."),
            code="signing_not_your_turn",
            names="、".join(s.name for s in waiting),
        )


def check_may_sign_as_staff(user: User, signer: AgreementSigner, case: Case) -> None:
    # Still the case's mediator (a recused mediator no longer signs).
    if signer.kind == MEDIATOR and signer.user_id == user.id == case.mediator_id:
        return
    if signer.kind == SEAL and (
        case_access.is_system_admin(user)
        or (user.role == "org_admin" and user.organisation_id == case.organisation_id)
    ):
        return
    raise Forbidden(
        N_(
            "Only the case's mediator signs as mediator, and only an administrator of the organisation applies its seal."
        ),
        code="signing_forbidden",
    )


async def do_sign(
    session: AsyncSession,
    actor: Actor,
    signer: AgreementSigner,
    authority: Authority,
    docs: DocumentSettings,
    *,
    drawing_png: bytes | None,
    typed_name: str = "",
) -> AgreementSigner:
    """Apply this signer's signature (the seal for the seal signer) as the next incremental
    revision of the PDF, with a one-time key certified for them.

    Concurrency: the version row is locked first (every signature of one agreement is
    serialised: each appends to the bytes the previous one produced), then the signer moves
    pending → signed with a conditional UPDATE; of two simultaneous clicks exactly one wins."""
    agreement, case, version = await signer_context(session, signer)
    _check_active(signer, version)
    if signer.kind == PARTY:
        # Only the party themself, through their own link: never staff on their behalf.
        if actor.kind != "party" or actor.id not in (signer.party_id, signer.agent_id):
            raise Forbidden(
                N_("Only the party can give their own signature, through their own link."),
                code="signing_forbidden",
            )
        if signer.route != DIGITAL:
            raise Conflict(N_("This copy is signed on paper."), code="signing_postal")
        verified = signer.code_verified_at
        if verified is None or utcnow() - verified > VERIFIED_WINDOW:
            raise Forbidden(
                N_("Confirm your identity with the one-time code first."),
                code="signing_code_required",
            )
    elif actor.user is None:
        raise Forbidden(N_("You do not have access to this."), code="forbidden")
    else:
        check_may_sign_as_staff(actor.user, signer, case)
    image = None
    if signer.kind == PARTY and drawing_png is None and typed_name.strip():
        if not agreement.allow_typed_name:
            raise Invalid(
                N_("This agreement must be signed by hand: draw your signature."),
                code="typed_name_not_allowed",
            )
        if typed_name.strip() != signer.name:
            raise Invalid(
                N_("Type your name exactly as written in the agreement: %(name)s"),
                code="typed_name_mismatch",
                name=signer.name,
            )
        from esign.stamps import typed_signature

        image = typed_signature(signer.name, docs.font_path)
    elif signer.kind != SEAL:
        if drawing_png is None:
            raise Invalid(N_("Draw your signature first."), code="signature_missing")
        try:
            image = signing.signature_image(drawing_png)
        except signing.BadImage:
            raise Invalid(
                N_("The drawn signature could not be read. Draw it again."),
                code="signature_invalid",
            ) from None
    if image is not None:
        from esign.stamps import with_date

        image = with_date(image, utcnow(), docs.font_path)
    # Lock the version (PostgreSQL: row lock; SQLite: the write lock of BEGIN IMMEDIATE).
    await session.execute(
        update(AgreementVersion)
        .where(AgreementVersion.id == version.id)
        .values(revision=AgreementVersion.revision)
        .execution_options(synchronize_session=False)
    )
    await session.refresh(version)
    _check_active(signer, version)
    all_signers = await signers_of(session, version)
    me = next(s for s in all_signers if s.id == signer.id)
    if me.status == SIGNED:
        raise Conflict(N_("This signature has already been given."), code="already_signed")
    check_turn(me, all_signers, agreement.signing_order)
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
        raise Conflict(N_("This signature has already been given."), code="already_signed")
    assert version.pdf is not None
    organisation = await session.get(Organisation, case.organisation_id)
    assert organisation is not None
    role = {PARTY: "当事人", MEDIATOR: "人民调解员", SEAL: "人民调解委员会印章"}[signer.kind]
    if signer.agent_id is not None:
        party = next((p for p in case.parties if p.id == signer.party_id), None)
        role = f"委托代理人（代{party.name if party else ''}）"
    key = authority.issue_signer(
        signer.name, case.number, organisation.name if signer.kind == SEAL else "", role
    )
    seal = None
    if signer.kind == SEAL:
        from esign.stamps import seal_pdf

        seal = seal_pdf(organisation.name, docs.font_path)
    signed = await signing.sign_field(
        version.pdf,
        signer.field_name,
        key,
        authority.timestamper,
        image=image,
        seal_pdf=seal,
        name=signer.name,
        reason=f"{role}签署人民调解协议书",
        final=signer.kind == SEAL,
    )
    del key  # the one-time private key is never stored
    digest = hashlib.sha256(signed).hexdigest()
    await session.execute(
        update(AgreementVersion)
        .where(AgreementVersion.id == version.id, AgreementVersion.revision == version.revision)
        .values(pdf=signed, pdf_sha256=digest, revision=version.revision + 1)
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(AgreementSigner)
        .where(AgreementSigner.id == signer.id)
        .values(revision_sha256=digest)
        .execution_options(synchronize_session=False)
    )
    await session.refresh(signer)
    await session.refresh(version)
    await _event(
        session,
        actor,
        agreement,
        EV_SIGNED,
        version=version,
        signer=signer,
        details={"sha256": digest},
    )
    await _audit(
        session,
        actor,
        AuditAction.AGREEMENT_SIGNED,
        case,
        agreement,
        signer_id=signer.id,
        kind=signer.kind,
        sha256=digest,
    )
    if signer.kind == SEAL:
        await _complete(session, actor, case, agreement, version, authority, docs)
    return signer


async def _complete(
    session: AsyncSession,
    actor: Actor,
    case: Case,
    agreement: Agreement,
    version: AgreementVersion,
    authority: Authority,
    docs: DocumentSettings,
) -> None:
    from esign.completion import certificate_pdf

    now = utcnow()
    await session.execute(
        update(Agreement)
        .where(Agreement.id == agreement.id, Agreement.status == SIGNING)
        .values(status=EFFECTIVE, effective_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.refresh(agreement)
    events = list(
        await session.scalars(
            select(SignatureEvent)
            .where(SignatureEvent.version_id == version.id)
            .order_by(SignatureEvent.id)
        )
    )
    signers = await signers_of(session, version)
    version.completion_pdf = await certificate_pdf(
        case,
        agreement,
        version,
        signers,
        events,
        authority,
        docs.font_path,
        docs.verify_url(version.document_id),
    )
    await session.flush()
    await _audit(
        session,
        actor,
        AuditAction.AGREEMENT_EFFECTIVE,
        case,
        agreement,
        document_id=version.document_id,
        sha256=version.pdf_sha256,
    )
    if case.status == lifecycle.IN_MEDIATION:
        await lifecycle.do_transition(session, actor, case, lifecycle.AGREEMENT_REACHED)


async def find_version_by_document(
    session: AsyncSession, document_id: str
) -> AgreementVersion | None:
    if not document_id or len(document_id) > 40:
        return None
    return await session.scalar(
        select(AgreementVersion).where(AgreementVersion.document_id == document_id)
    )


async def find_version_by_sha256(session: AsyncSession, sha256: str) -> AgreementVersion | None:
    return await session.scalar(
        select(AgreementVersion)
        .where((AgreementVersion.pdf_sha256 == sha256) | (AgreementVersion.issued_sha256 == sha256))
        .limit(1)
    )


async def count_signed(session: AsyncSession, version: AgreementVersion) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(AgreementSigner)
            .where(AgreementSigner.version_id == version.id, AgreementSigner.status == SIGNED)
        )
        or 0
    )
