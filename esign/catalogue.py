"""Vocabularies of agreements and signing, each code with its translatable label."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cases.audit import AuditAction
from cases.catalogue import N_

# Text messages. The caller supplies the translation (``Texts``; the server's default language):
# this package does not translate, the web layer does.
Texts = Callable[[str, dict[str, Any]], str]
SMS_SIGN_LINK = N_(
    "[Yuntiao] The mediation agreement of case %(number)s is ready. Open your own link to read "
    "and sign it: %(link)s"
)
SMS_CODE = N_(
    "[Yuntiao] Your code to sign the mediation agreement of case %(number)s: %(code)s, valid "
    "for %(minutes)s minutes. If you are not signing, ignore this message."
)
SMS_DRAFT = N_(
    "[Yuntiao] The draft mediation agreement of case %(number)s (version %(version)s) is ready. "
    "Please read it and tell the mediator what should change: %(link)s"
)
SMS_JUDICIAL = N_(
    "[Yuntiao] The mediation agreement of case %(number)s is in force. To have it confirmed by "
    "a court, both parties apply together to the people's court by %(deadline)s."
)


def untranslated(message: str, params: dict[str, Any]) -> str:
    """``Texts`` without a catalogue (English message ids)."""
    return message % params


# Agreement status
DRAFT = "draft"
SIGNING = "signing"
EFFECTIVE = "effective"  # every party, the mediator and the seal: in force (Art. 29)
STATUSES: dict[str, str] = {
    DRAFT: N_("Draft"),
    SIGNING: N_("Being signed"),
    EFFECTIVE: N_("In force"),
}

# Version status
V_DRAFT = "draft"
V_ISSUED = "issued"
V_VOID = "void"
VERSION_STATUSES: dict[str, str] = {
    V_DRAFT: N_("Draft"),
    V_ISSUED: N_("Issued for signing"),
    V_VOID: N_("Replaced by a later version"),
}

# Routes
DIGITAL = "digital"
POSTAL = "postal"
ROUTES: dict[str, str] = {
    DIGITAL: N_("Electronic signatures"),
    POSTAL: N_("Signed on paper, by post"),
}

# Signing order among the parties (the mediator always follows them, the seal comes last)
PARALLEL = "parallel"
SEQUENTIAL = "sequential"
ORDERS: dict[str, str] = {
    PARALLEL: N_("Parties sign in any order"),
    SEQUENTIAL: N_("Parties sign in the order listed"),
}

# Signer kinds and states
PARTY = "party"
MEDIATOR = "mediator"
SEAL = "seal"
SIGNER_KINDS: dict[str, str] = {
    PARTY: N_("Party"),
    MEDIATOR: N_("Mediator"),
    SEAL: N_("Seal of the organisation"),
}
PENDING = "pending"
SIGNED = "signed"
VOID = "void"
SIGNER_STATUSES: dict[str, str] = {
    PENDING: N_("Waiting for signature"),
    SIGNED: N_("Signed"),
    VOID: N_("Void (the draft changed)"),
}

# Postal shipment states
DISPATCHED = "dispatched"
RETURNED = "returned"
SHIPMENT_STATUSES: dict[str, str] = {
    DISPATCHED: N_("Sent to the party"),
    RETURNED: N_("Signed copy returned"),
}

# Signature events kept for the certificate of completion
EV_ISSUED = "issued"
EV_VIEWED = "viewed"
EV_CODE_SENT = "code_sent"
EV_CODE_FAILED = "code_failed"
EV_CODE_VERIFIED = "code_verified"
EV_SIGNED = "signed"
EV_VOIDED = "voided"
EVENTS: dict[str, str] = {
    EV_ISSUED: N_("Issued for signing"),
    EV_VIEWED: N_("Viewed the document"),
    EV_CODE_SENT: N_("One-time code sent"),
    EV_CODE_FAILED: N_("Wrong one-time code"),
    EV_CODE_VERIFIED: N_("Identity confirmed with a one-time code"),
    EV_SIGNED: N_("Signed"),
    EV_VOIDED: N_("Signature request void"),
}

# Judicial confirmation: the parties apply jointly within 30 days of the agreement taking
# effect (People's Mediation Law Art. 33).
JUDICIAL_DEADLINE_DAYS = 30

# How the case history names the audit actions of this package (``web.pages.AUDIT_LABELS``).
ESIGN_AUDIT_LABELS: dict[str, str] = {
    AuditAction.AGREEMENT_CREATED: N_("Agreement drafted"),
    AuditAction.AGREEMENT_VERSION_SAVED: N_("Agreement draft changed (new version)"),
    AuditAction.AGREEMENT_ISSUED: N_("Agreement issued for signing"),
    AuditAction.AGREEMENT_COMMENTED: N_("Comment on the agreement draft"),
    AuditAction.AGREEMENT_VIEWED: N_("Agreement viewed by a signer"),
    AuditAction.SIGNING_CODE_SENT: N_("One-time signing code sent"),
    AuditAction.SIGNING_CODE_FAILED: N_("Wrong one-time signing code"),
    AuditAction.SIGNING_CODE_VERIFIED: N_("Signer's identity confirmed"),
    AuditAction.AGREEMENT_SIGNED: N_("Agreement signed"),
    AuditAction.AGREEMENT_EFFECTIVE: N_("Agreement in force (sealed)"),
    AuditAction.POSTAL_DISPATCHED: N_("Agreement sent by post"),
    AuditAction.POSTAL_RETURNED: N_("Signed agreement returned by post"),
    AuditAction.JUDICIAL_PACKAGE_EXPORTED: N_("Judicial confirmation package exported"),
    AuditAction.JUDICIAL_REMINDER_SENT: N_("Judicial confirmation reminder sent"),
    AuditAction.AGREEMENT_DRAFT_SHARED: N_("Agreement draft sent to the parties for review"),
}
