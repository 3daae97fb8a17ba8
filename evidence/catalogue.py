"""Closed vocabularies of evidence, each code with its translatable English label (``N_``)."""

from __future__ import annotations

from cases.audit import AuditAction
from cases.catalogue import N_

# The categories of evidence of the civil procedure rules, as a mediation file uses them.
CATEGORIES: dict[str, str] = {
    "documentary": N_("Documentary evidence"),
    "physical": N_("Physical evidence (photographs)"),
    "audiovisual": N_("Audio-visual material"),
    "electronic": N_("Electronic data"),
    "witness": N_("Witness statement"),
    "expert": N_("Expert opinion"),
}

SUBMITTED = "submitted"
WITHDRAWN = "withdrawn"
STATUSES: dict[str, str] = {
    SUBMITTED: N_("Submitted"),
    WITHDRAWN: N_("Withdrawn"),
}

# Events of the evidence ledger (``evidence.ledger``). Appending one is a deliberate act.
EV_SUBMITTED = "submitted"
EV_VIEWED = "viewed"
EV_DOWNLOADED = "downloaded"
EV_WITHDRAWN = "withdrawn"
EV_MATCH_CHECKED = "match_checked"
EV_EXAMINED = "examined"
EV_PRESENTED = "presented"
EVENTS: dict[str, str] = {
    EV_SUBMITTED: N_("Evidence submitted"),
    EV_VIEWED: N_("Evidence viewed"),
    EV_DOWNLOADED: N_("Evidence downloaded"),
    EV_WITHDRAWN: N_("Evidence withdrawn"),
    EV_MATCH_CHECKED: N_("File checked against the registered evidence"),
    EV_EXAMINED: N_("Opinion on evidence stated (examination)"),
    EV_PRESENTED: N_("Evidence presented in the hearing"),
}

# Each ledger event is also a row of the case's audit trail (its history page).
EVENT_AUDIT_ACTIONS: dict[str, AuditAction] = {
    EV_SUBMITTED: AuditAction.EVIDENCE_SUBMITTED,
    EV_VIEWED: AuditAction.EVIDENCE_VIEWED,
    EV_DOWNLOADED: AuditAction.EVIDENCE_DOWNLOADED,
    EV_WITHDRAWN: AuditAction.EVIDENCE_WITHDRAWN,
    EV_MATCH_CHECKED: AuditAction.EVIDENCE_MATCH_CHECKED,
    EV_EXAMINED: AuditAction.EVIDENCE_EXAMINED,
    EV_PRESENTED: AuditAction.EVIDENCE_PRESENTED,
}
EVIDENCE_AUDIT_LABELS: dict[str, str] = {
    action: EVENTS[event] for event, action in EVENT_AUDIT_ACTIONS.items()
}

# Upload states (``EvidenceUpload.status``): receiving until the last byte is stored.
UPLOAD_RECEIVING = "receiving"
UPLOAD_COMPLETE = "complete"

MAX_TITLE_CHARS = 200
MAX_PURPOSE_CHARS = 2000
MAX_FILENAME_CHARS = 255

# Examination (质证): each opposing party states, per property, whether they acknowledge it.
AUTHENTICITY = "authenticity"
LEGALITY = "legality"
RELEVANCE = "relevance"
PROPERTIES: dict[str, str] = {
    AUTHENTICITY: N_("Authenticity"),
    LEGALITY: N_("Legality"),
    RELEVANCE: N_("Relevance"),
}
ACKNOWLEDGED = "acknowledged"
DISPUTED = "disputed"
STANCES: dict[str, str] = {
    ACKNOWLEDGED: N_("Acknowledged"),
    DISPUTED: N_("Disputed"),
}
MAX_REASON_CHARS = 2000
