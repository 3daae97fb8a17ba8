"""Personal links to confirm a frozen hearing record (``/r/{token}``), sent to each party by text
message when the record is frozen. A hearing link expires a day after the hearing; confirming
may take longer, so this link lives ``CONFIRMATION_LINK_DAYS`` and names only the record and the
party (``itsdangerous``, a salt used for nothing else, the secret from the caller). It grants
reading that one frozen record and answering it — nothing else."""

from __future__ import annotations

import datetime as dt
from typing import Any

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.ext.asyncio import AsyncSession

from cases.catalogue import N_
from cases.errors import Forbidden
from cases.models import Case, Party
from notes.models import NoteDocument

SALT = "yuntiao.record-confirmation.v1"
CONFIRMATION_LINK_DAYS = 30
MAX_TOKEN_CHARS = 400


class ConfirmationLinkError(Forbidden):
    code = "record_link_invalid"


def _serializer(secret: str | bytes) -> URLSafeTimedSerializer:
    if not secret:
        raise ValueError("an empty secret would make confirmation links forgeable")
    return URLSafeTimedSerializer(secret, salt=SALT)


def issue_confirmation_link(secret: str | bytes, document: NoteDocument, party: Party) -> str:
    return str(_serializer(secret).dumps({"d": document.id, "p": party.id}))


async def read_confirmation_link(
    session: AsyncSession, secret: str | bytes, token: str
) -> tuple[NoteDocument, Case, Party]:
    """The frozen record, its case and the party a link was issued to, or a
    ``ConfirmationLinkError`` saying what to do."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise _invalid()
    try:
        payload: Any = _serializer(secret).loads(
            token, max_age=int(dt.timedelta(days=CONFIRMATION_LINK_DAYS).total_seconds())
        )
    except SignatureExpired:
        raise ConfirmationLinkError(
            N_(
                "This confirmation link has expired. Please contact the mediation office to "
                "confirm the hearing record."
            ),
            code="record_link_expired",
        ) from None
    except BadData:
        raise _invalid() from None
    if not isinstance(payload, dict):
        raise _invalid()
    document_id, party_id = payload.get("d"), payload.get("p")
    if not isinstance(document_id, int) or not isinstance(party_id, int):
        raise _invalid()
    document = await session.get(NoteDocument, document_id)
    party = await session.get(Party, party_id)
    if document is None or party is None or document.frozen_at is None:
        raise _invalid()
    case = await session.get(Case, document.case_id)
    if case is None or party.case_id != case.id:
        raise _invalid()
    return document, case, party


def _invalid() -> ConfirmationLinkError:
    return ConfirmationLinkError(
        N_(
            "This confirmation link is not valid. Check that you opened the whole link from "
            "your message, or contact the mediation office."
        )
    )
