"""Sharing recordings with parties: the only way a party ever lists or fetches a recording.

Staff decide (``check_share``): the organisation's administrators (and the system
administrator) share or revoke, never the mediator — disclosing an evidence-grade recording is
the organisation's decision, and a participant file recorded in a caucus holds what one side
said to the mediator in confidence. A share names one ``Party`` of the recording's case; "all"
adds one share per party. A party reaches a recording only while an unrevoked share names them,
the recording is of their own case and not deleted (``shared_recording``). Both changes are
audited (``recording.shared``, ``recording.share_revoked``) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cases import access
from cases.actor import Actor
from cases.audit import AuditAction, record
from cases.catalogue import N_
from cases.errors import Forbidden, Invalid, NotFound
from cases.models import Case, Party, User, utcnow
from recordings import archive
from recordings.models import RecordingFile, RecordingShare

_NOT_SHARED = N_("This recording has not been shared with you.")


def can_share(user: User, case: Case) -> bool:
    """Administrators of the case's organisation, and the system administrator."""
    if access.is_system_admin(user):
        return True
    return user.role in access.ADMIN_ROLES and access.same_organisation(user, case.organisation_id)


def check_share(user: User, case: Case) -> None:
    if not can_share(user, case):
        raise Forbidden(
            N_("Only an administrator of the case's organisation can share recordings."),
            code="forbidden",
        )


async def active_shares(
    session: AsyncSession, recording_ids: Iterable[int]
) -> dict[int, list[RecordingShare]]:
    """Unrevoked shares by recording id."""
    ids = list(recording_ids)
    if not ids:
        return {}
    rows = (
        await session.scalars(
            select(RecordingShare)
            .where(RecordingShare.recording_id.in_(ids), RecordingShare.revoked_at.is_(None))
            .order_by(RecordingShare.id)
        )
    ).all()
    found: dict[int, list[RecordingShare]] = {}
    for share in rows:
        found.setdefault(share.recording_id, []).append(share)
    return found


async def _parties(session: AsyncSession, case: Case, choice: str) -> list[Party]:
    """The parties ``choice`` names: one party id of this case, or ``all``."""
    parties = list(
        (
            await session.scalars(select(Party).where(Party.case_id == case.id).order_by(Party.id))
        ).all()
    )
    if choice == "all":
        return parties
    chosen = [p for p in parties if choice.isdigit() and p.id == int(choice)]
    if not chosen:
        raise Invalid(N_("Choose a party of this case."), code="party_not_in_case")
    return chosen


async def do_share(
    session: AsyncSession,
    actor: Actor,
    user: User,
    row: RecordingFile,
    case: Case,
    choice: str,
) -> list[RecordingShare]:
    """Share ``row`` with one party of its case (``choice`` = party id) or all of them; a
    party it is already shared with is skipped. One ``recording.shared`` per new share."""
    check_share(user, case)
    if row.case_id != case.id:  # pragma: no cover - the caller loads the case of the row
        raise Invalid(N_("Choose a party of this case."), code="party_not_in_case")
    archive.check_not_deleted(row)
    existing = {s.party_id for s in (await active_shares(session, [row.id])).get(row.id, [])}
    added = []
    for party in await _parties(session, case, choice):
        if party.id in existing:
            continue
        share = RecordingShare(recording_id=row.id, party_id=party.id, shared_by_id=user.id)
        session.add(share)
        await session.flush()
        await record(
            session,
            actor,
            AuditAction.RECORDING_SHARED,
            object_type="recording_file",
            object_id=row.id,
            case_id=case.id,
            organisation_id=case.organisation_id,
            details={"share_id": share.id, "party_id": party.id, "party": party.name},
        )
        added.append(share)
    return added


async def do_revoke(
    session: AsyncSession,
    actor: Actor,
    user: User,
    row: RecordingFile,
    case: Case,
    choice: str,
) -> list[RecordingShare]:
    """Withdraw the active shares of ``row`` with one party (``choice`` = party id) or all.
    One ``recording.share_revoked`` per share withdrawn."""
    check_share(user, case)
    wanted = {p.id: p for p in await _parties(session, case, choice)}
    now = utcnow()
    revoked = []
    for share in (await active_shares(session, [row.id])).get(row.id, []):
        if share.party_id not in wanted:
            continue
        share.revoked_at = now
        share.revoked_by_id = user.id
        await record(
            session,
            actor,
            AuditAction.RECORDING_SHARE_REVOKED,
            object_type="recording_file",
            object_id=row.id,
            case_id=case.id,
            organisation_id=case.organisation_id,
            details={
                "share_id": share.id,
                "party_id": share.party_id,
                "party": wanted[share.party_id].name,
            },
        )
        revoked.append(share)
    await session.flush()
    return revoked


async def viewer_parties(session: AsyncSession, party_id: int) -> set[int]:
    """The party rows whose shares a participant sees: their own, and for an agent (代理人)
    also the party they represent — an agent acts for that party."""
    party = await session.get(Party, party_id)
    represented = party.represents_id if party is not None else None
    return {party_id} | ({represented} if represented is not None else set())


async def shared_with(
    session: AsyncSession, party_ids: Collection[int], case_id: int
) -> list[RecordingFile]:
    """The recordings of ``case_id`` currently shared with any of ``party_ids`` (a party; an
    agent and the party they represent), newest first."""
    return list(
        (
            await session.scalars(
                select(RecordingFile)
                .join(RecordingShare, RecordingShare.recording_id == RecordingFile.id)
                .where(
                    RecordingShare.party_id.in_(party_ids),
                    RecordingShare.revoked_at.is_(None),
                    RecordingFile.case_id == case_id,
                    RecordingFile.deleted_at.is_(None),
                )
                .distinct()
                .order_by(RecordingFile.created_at.desc(), RecordingFile.id)
            )
        ).all()
    )


async def shared_recording(
    session: AsyncSession, party_ids: Collection[int], case_id: int, recording_id: int | None
) -> RecordingFile:
    """The recording, if it is shared now with any of ``party_ids`` (404 when there is no such
    recording or it was deleted; 403 when it is another case's or not shared with them)."""
    row = await session.get(RecordingFile, recording_id) if recording_id else None
    if row is None:
        raise NotFound(N_("There is no such recording."), code="recording_not_found")
    if row.case_id != case_id:
        raise Forbidden(_NOT_SHARED, code="recording_not_shared")
    share = await session.scalar(
        select(RecordingShare.id).where(
            RecordingShare.recording_id == row.id,
            RecordingShare.party_id.in_(party_ids),
            RecordingShare.revoked_at.is_(None),
        )
    )
    if share is None:
        raise Forbidden(_NOT_SHARED, code="recording_not_shared")
    archive.check_not_deleted(row)
    return row
