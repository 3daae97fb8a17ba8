"""How the case history and the archive pages name recording actions and file kinds."""

from __future__ import annotations

from cases.audit import AuditAction
from cases.catalogue import N_
from recordings.models import COMPOSITE_FILE, HEARING_FILE, PARTICIPANT_FILE, TIMELINE_FILE

RECORDING_AUDIT_LABELS: dict[str, str] = {
    AuditAction.RECORDING_ARCHIVED: N_("Recording archived"),
    AuditAction.RECORDING_DOWNLOADED: N_("Recording downloaded"),
    AuditAction.RECORDING_VIEWED: N_("Recording played"),
    AuditAction.RECORDING_HOLD_CHANGED: N_("Legal hold on a recording changed"),
    AuditAction.RECORDING_DELETED: N_("Recording deleted at the end of its retention period"),
    AuditAction.RECORDING_VERIFIED: N_("Recording integrity checked"),
    AuditAction.RECORDING_SHARED: N_("Recording shared with a party"),
    AuditAction.RECORDING_SHARE_REVOKED: N_("Sharing of a recording with a party withdrawn"),
}

FILE_KINDS: dict[str, str] = {
    PARTICIPANT_FILE: N_("One participant"),
    COMPOSITE_FILE: N_("Everyone: picture grid and mixed sound"),
    HEARING_FILE: N_("Whole hearing, every recorded part joined"),
    TIMELINE_FILE: N_("Timeline"),
}
