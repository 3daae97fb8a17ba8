"""Per-participant hearing links: signed, expiring, revocable tokens.

A token is ``itsdangerous.URLSafeTimedSerializer`` output (HMAC-SHA1 under a salt used for
nothing else) over ``{"c": case, "h": hearing, "p": participant, "k": kind, "v": version,
"e": expiry}``. Nothing secret is inside (it is signed, not encrypted); the participant row is the
authority. Revoking bumps ``invitation_version``, so every older link of that participant stops
working at once while nothing needs to be stored per link. The secret is passed in by the caller
(from settings); this module never reads settings.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from cases.actor import Actor
from cases.audit import AuditAction, record
from cases.models import Case
from rooms.access import check_office
from rooms.errors import InvitationExpired, InvitationInvalid, InvitationRevoked
from rooms.models import Hearing, HearingParticipant

SALT = "yuntiao.hearing-invitation.v1"
# Links stay usable this long after the scheduled end: hearings overrun, and a party who opens
# the link late must still see "the hearing has ended" rather than "invalid link".
DEFAULT_GRACE = dt.timedelta(hours=24)
# Longer input is not one of our tokens; refuse before doing any work on it.
MAX_TOKEN_CHARS = 1000

Secret = str | bytes


def _serializer(secret: Secret) -> URLSafeTimedSerializer:
    if not secret:
        raise ValueError("an empty secret would make hearing links forgeable")
    return URLSafeTimedSerializer(secret, salt=SALT)


def default_expiry(hearing: Hearing, grace: dt.timedelta = DEFAULT_GRACE) -> dt.datetime:
    """Scheduled end of the hearing plus ``grace``."""
    return hearing.scheduled_end + grace


def issue_invitation(
    secret: Secret,
    hearing: Hearing,
    participant: HearingParticipant,
    *,
    expires_at: dt.datetime | None = None,
) -> str:
    """A link token for ``participant`` at its current ``invitation_version``, valid until
    ``expires_at`` (default: ``default_expiry(hearing)``). Issuing writes nothing."""
    if participant.hearing_id != hearing.id:
        raise ValueError("participant belongs to another hearing")
    expiry = expires_at or default_expiry(hearing)
    if expiry.tzinfo is None:
        raise ValueError("naive expiry refused: link expiry must carry a zone")
    payload = {
        "c": hearing.case_id,
        "h": hearing.id,
        "p": participant.id,
        "k": participant.kind,
        "v": participant.invitation_version,
        "e": int(expiry.timestamp()),
    }
    return str(_serializer(secret).dumps(payload))


def _int(payload: dict[str, Any], key: str) -> int:
    value = payload.get(key)
    # bool is an int in Python; a signed payload never holds one, but be strict anyway.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvitationInvalid()
    return value


async def read_invitation(
    session: AsyncSession, secret: Secret, token: str, now: dt.datetime
) -> HearingParticipant:
    """The participant a link belongs to, or an ``InvitationError``:

    - ``invitation_invalid``: not signed with ``secret``, damaged, or its hearing, case, kind or
      participant do not match the database (checked first: a forged link never says "expired");
    - ``invitation_expired``: ``now`` is at or past the expiry written in the link;
    - ``invitation_revoked``: a newer link was issued for this participant.

    It does not look at the participant's state or the hearing's status: joining decides that
    (an ended hearing or a removed participant gets its own message there).
    """
    if now.tzinfo is None:
        raise ValueError("naive now refused")
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise InvitationInvalid()
    try:
        payload = _serializer(secret).loads(token)
    except BadData:
        raise InvitationInvalid() from None
    if not isinstance(payload, dict) or not isinstance(payload.get("k"), str):
        raise InvitationInvalid()
    case_id, hearing_id = _int(payload, "c"), _int(payload, "h")
    participant_id, version, expiry = _int(payload, "p"), _int(payload, "v"), _int(payload, "e")
    participant = await session.get(HearingParticipant, participant_id, populate_existing=True)
    hearing = await session.get(Hearing, hearing_id)
    if (
        participant is None
        or hearing is None
        or participant.hearing_id != hearing.id
        or hearing.case_id != case_id
        or participant.kind != payload["k"]
    ):
        raise InvitationInvalid()
    if now.timestamp() >= expiry:
        raise InvitationExpired()
    if version != participant.invitation_version:
        raise InvitationRevoked()
    return participant


async def do_revoke_invitation(
    session: AsyncSession, actor: Actor, participant: HearingParticipant
) -> HearingParticipant:
    """Invalidate every link issued so far to ``participant`` (issue a new one afterwards with
    ``issue_invitation``). Only the case's mediator or the mediation office. Audited.

    A participant already connected keeps their socket until the transport re-reads their token;
    the transport must re-check the token on each event (it then gets ``invitation_revoked``).
    """
    hearing = await session.get(Hearing, participant.hearing_id)
    if hearing is None:  # pragma: no cover - FK guarantees it
        raise InvitationInvalid()
    case = await session.get(Case, hearing.case_id)
    if case is None:  # pragma: no cover - FK guarantees it
        raise InvitationInvalid()
    check_office(actor, case)
    previous = participant.invitation_version
    # An increment in SQL, not read-modify-write: two revocations give two new versions.
    await session.execute(
        update(HearingParticipant)
        .where(HearingParticipant.id == participant.id)
        .values(invitation_version=HearingParticipant.invitation_version + 1)
        .execution_options(synchronize_session=False)
    )
    await session.refresh(participant)
    await record(
        session,
        actor,
        AuditAction.INVITATION_REVOKED,
        object_type="hearing_participant",
        object_id=participant.id,
        case_id=case.id,
        organisation_id=case.organisation_id,
        details={
            "hearing_id": hearing.id,
            "previous_version": previous,
            "version": participant.invitation_version,
        },
    )
    return participant
