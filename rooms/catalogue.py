"""Closed vocabularies of hearings, each code with its translatable English label (``N_``), and
the people-readable labels of the hearing actions in the audit trail."""

from __future__ import annotations

from cases.audit import AuditAction
from cases.catalogue import N_

SCHEDULED = "scheduled"
OPEN = "open"
ENDED = "ended"
HEARING_STATUSES: dict[str, str] = {
    SCHEDULED: N_("Scheduled"),
    OPEN: N_("In progress"),
    ENDED: N_("Ended"),
}

MEDIATOR = "mediator"
CLERK = "clerk"
PARTY = "party"
AGENT = "agent"
OBSERVER = "observer"
# The platform's own receive-only peer that records a hearing: never listed, never in a lobby,
# receives the media of every participant who agreed to the recording, sends nothing.
RECORDER = "recorder"
PARTICIPANT_KINDS: dict[str, str] = {
    MEDIATOR: N_("Mediator"),
    CLERK: N_("Clerk"),
    PARTY: N_("Party"),
    AGENT: N_("Agent"),
    OBSERVER: N_("Observer"),
    RECORDER: N_("Recorder"),
}
# Staff run the hearing: they skip the lobby, see the lobby and presence in every sub-room.
STAFF_KINDS = frozenset({MEDIATOR, CLERK})

OBSERVER_ROLES: dict[str, str] = {
    "interpreter": N_("Interpreter"),
    "expert": N_("Expert"),
    "observer": N_("Observer"),
}

APPLICANT = "applicant"
RESPONDENT = "respondent"
NEUTRAL = "neutral"
SIDES: dict[str, str] = {
    APPLICANT: N_("Applicant side"),
    RESPONDENT: N_("Respondent side"),
    NEUTRAL: N_("Neutral"),
}

INVITED = "invited"
WAITING = "waiting"
ADMITTED = "admitted"
DENIED = "denied"
REMOVED = "removed"
LEFT = "left"
PARTICIPANT_STATES: dict[str, str] = {
    INVITED: N_("Invited"),
    WAITING: N_("Waiting to be admitted"),
    ADMITTED: N_("In the hearing"),
    DENIED: N_("Not admitted"),
    REMOVED: N_("Removed from the hearing"),
    LEFT: N_("Left"),
}

MAIN_ROOM = "main"
MAX_CHAT_CHARS = 2000


# How a case history shows each hearing action (merged into the page's audit labels).
HEARING_AUDIT_LABELS: dict[str, str] = {
    AuditAction.HEARING_SCHEDULED: N_("Hearing scheduled"),
    AuditAction.HEARING_OPENED: N_("Hearing opened"),
    AuditAction.HEARING_ENDED: N_("Hearing ended"),
    AuditAction.INVITATION_REVOKED: N_("Hearing link revoked"),
    AuditAction.PARTICIPANT_JOINED: N_("Joined the hearing"),
    AuditAction.PARTICIPANT_ADMITTED: N_("Admitted to the hearing"),
    AuditAction.PARTICIPANT_DENIED: N_("Not admitted to the hearing"),
    AuditAction.PARTICIPANT_REMOVED: N_("Removed from the hearing"),
    AuditAction.PARTICIPANT_LEFT: N_("Left the hearing"),
    AuditAction.RIGHTS_ACKNOWLEDGED: N_("Rights and obligations acknowledged"),
    AuditAction.RECORDING_CONSENT: N_("Recording consent given or refused"),
    AuditAction.CAUCUS_STARTED: N_("Private caucus started"),
    AuditAction.CAUCUS_MOVED: N_("Moved to a caucus room"),
    AuditAction.CAUCUS_ENDED: N_("Private caucus ended"),
    AuditAction.RECORDING_STARTED: N_("Recording started"),
    AuditAction.RECORDING_STOPPED: N_("Recording stopped"),
}
