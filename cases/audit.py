"""The audit trail: a typed catalogue of actions and an append-only, hash-chained table.

``record`` is called inside the transaction of the change it describes, so an audit row exists
exactly when the change does. Each row's ``hash`` is SHA-256 over its canonical content and the
previous row's hash; ``verify_chain`` recomputes the chain and names the first row that does not fit
(edited, deleted or inserted behind our back).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from cases.actor import Actor
from cases.models import AuditEntry, dialect_name, utcnow

GENESIS_HASH = "0" * 64


class AuditAction(StrEnum):
    """Every action the trail knows. Adding one is a deliberate act (and a test checks the docs)."""

    LOGIN_SUCCEEDED = "login.succeeded"
    LOGIN_FAILED = "login.failed"
    LOGIN_LOCKED = "login.locked"
    LOGOUT = "logout"
    API_TOKEN_ISSUED = "api_token.issued"  # noqa: S105 (an event name, not a secret)
    USER_CREATED = "user.created"
    ORGANISATION_CREATED = "organisation.created"
    ORGANISATION_UPDATED = "organisation.updated"
    CASE_CREATED = "case.created"
    CASE_OPENED = "case.opened"
    CASE_TRANSITIONED = "case.transitioned"
    CASE_ROUTED = "case.routed"
    CASE_ASSIGNED = "case.assigned"
    ASSIGNMENT_REFUSED = "case.assignment_refused"
    RECUSAL_RECORDED = "case.recusal"
    PARTY_ADDED = "party.added"
    ID_NUMBER_REVEALED = "party.id_number_revealed"
    DISPATCH_RULE_ADDED = "dispatch_rule.added"
    DISPATCH_RULE_REMOVED = "dispatch_rule.removed"
    RELATIONSHIP_DECLARED = "mediator.relationship_declared"
    DEMO_SEEDED = "demo.seeded"
    HEARING_SCHEDULED = "hearing.scheduled"
    HEARING_OPENED = "hearing.opened"
    HEARING_ENDED = "hearing.ended"
    INVITATION_REVOKED = "hearing.invitation_revoked"
    PARTICIPANT_JOINED = "hearing.participant_joined"
    PARTICIPANT_ADMITTED = "hearing.participant_admitted"
    PARTICIPANT_DENIED = "hearing.participant_denied"
    PARTICIPANT_REMOVED = "hearing.participant_removed"
    PARTICIPANT_LEFT = "hearing.participant_left"
    RIGHTS_ACKNOWLEDGED = "hearing.rights_acknowledged"
    RECORDING_CONSENT = "hearing.recording_consent"
    CAUCUS_STARTED = "hearing.caucus_started"
    CAUCUS_MOVED = "hearing.caucus_moved"
    CAUCUS_ENDED = "hearing.caucus_ended"
    NOTIFICATION_QUEUED = "notification.queued"
    EVIDENCE_SUBMITTED = "evidence.submitted"
    EVIDENCE_VIEWED = "evidence.viewed"
    EVIDENCE_DOWNLOADED = "evidence.downloaded"
    EVIDENCE_WITHDRAWN = "evidence.withdrawn"
    EVIDENCE_MATCH_CHECKED = "evidence.match_checked"
    RECORDING_STARTED = "hearing.recording_started"
    RECORDING_STOPPED = "hearing.recording_stopped"
    RECORDING_ARCHIVED = "recording.archived"
    RECORDING_DOWNLOADED = "recording.downloaded"
    RECORDING_VIEWED = "recording.viewed"
    RECORDING_HOLD_CHANGED = "recording.legal_hold_changed"
    RECORDING_DELETED = "recording.deleted"
    RECORDING_VERIFIED = "recording.verified"
    RECORDING_SHARED = "recording.shared"
    RECORDING_SHARE_REVOKED = "recording.share_revoked"
    EVIDENCE_EXAMINED = "evidence.examined"
    EVIDENCE_PRESENTED = "evidence.presented"
    AGREEMENT_CREATED = "agreement.created"
    AGREEMENT_VERSION_SAVED = "agreement.version_saved"
    AGREEMENT_ISSUED = "agreement.issued"
    AGREEMENT_COMMENTED = "agreement.commented"
    AGREEMENT_VIEWED = "agreement.viewed"
    SIGNING_CODE_SENT = "agreement.code_sent"
    SIGNING_CODE_FAILED = "agreement.code_failed"
    SIGNING_CODE_VERIFIED = "agreement.code_verified"
    AGREEMENT_SIGNED = "agreement.signed"
    AGREEMENT_EFFECTIVE = "agreement.effective"
    POSTAL_DISPATCHED = "agreement.postal_dispatched"
    POSTAL_RETURNED = "agreement.postal_returned"
    JUDICIAL_PACKAGE_EXPORTED = "agreement.judicial_package"
    JUDICIAL_REMINDER_SENT = "agreement.judicial_reminder"
    AGREEMENT_DRAFT_SHARED = "agreement.draft_shared"
    NOTES_RESTORED = "notes.restored"
    RECORD_FROZEN = "notes.record_frozen"
    RECORD_CONFIRMED = "notes.record_confirmed"
    RECORD_OBJECTED = "notes.record_objected"


def canonical_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def _format_time(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat(timespec="microseconds")


def entry_hash(entry: AuditEntry) -> str:
    """SHA-256 of the row's content and its ``prev_hash``: what ``verify_chain`` recomputes."""
    content = [
        entry.seq,
        _format_time(entry.at),
        entry.actor_type,
        entry.actor_id,
        entry.actor_label,
        entry.action,
        entry.object_type,
        entry.object_id,
        entry.case_id,
        entry.organisation_id,
        entry.ip,
        entry.user_agent,
        entry.details,
        entry.prev_hash,
    ]
    return hashlib.sha256(canonical_json(content).encode()).hexdigest()


async def _lock_chain(session: AsyncSession) -> None:
    """Serialise appends so two transactions cannot both extend the same tail.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: every write transaction is already
    ``BEGIN IMMEDIATE`` (see ``server.db``), which serialises writers.
    """
    if dialect_name(session) == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(72430001)"))


async def record(
    session: AsyncSession,
    actor: Actor,
    action: AuditAction,
    *,
    object_type: str = "",
    object_id: Any = "",
    case_id: int | None = None,
    organisation_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one row in the caller's transaction; the caller commits (or rolls back) both."""
    await _lock_chain(session)
    last = (
        await session.execute(
            select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
        )
    ).first()
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
    entry = AuditEntry(
        seq=seq,
        # The database keeps microseconds; so must the hash.
        at=utcnow(),
        actor_type=actor.kind,
        actor_id=actor.id,
        actor_label=actor.label[:200],
        action=str(action),
        object_type=object_type,
        object_id=str(object_id),
        case_id=case_id,
        organisation_id=organisation_id,
        ip=actor.ip[:64],
        user_agent=actor.user_agent[:300],
        details=canonical_json(details or {}),
        prev_hash=prev_hash,
    )
    entry.hash = entry_hash(entry)
    session.add(entry)
    await session.flush()
    return entry


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    rows: int
    first_bad_seq: int | None = None
    problem: str = ""


async def verify_chain(session: AsyncSession, batch: int = 5000) -> ChainReport:
    """Walk the whole trail in order; report the first row whose hash or link does not fit."""
    expected_prev = GENESIS_HASH
    expected_seq = 1
    rows = 0
    last_seq = 0
    while True:
        result = await session.execute(
            select(AuditEntry)
            .where(AuditEntry.seq > last_seq)
            .order_by(AuditEntry.seq)
            .limit(batch)
        )
        entries = result.scalars().all()
        if not entries:
            return ChainReport(True, rows)
        for entry in entries:
            if entry.seq != expected_seq:
                return ChainReport(
                    False,
                    rows,
                    expected_seq,
                    f"row {expected_seq} is missing (next is {entry.seq})",
                )
            if entry.prev_hash != expected_prev:
                return ChainReport(
                    False, rows, entry.seq, f"row {entry.seq} does not link to row {entry.seq - 1}"
                )
            if entry_hash(entry) != entry.hash:
                return ChainReport(
                    False, rows, entry.seq, f"row {entry.seq} was altered (hash mismatch)"
                )
            expected_prev = entry.hash
            expected_seq += 1
            rows += 1
            last_seq = entry.seq
        session.expunge_all()
