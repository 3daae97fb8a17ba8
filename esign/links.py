"""Each signer's personal link: a signed, expiring token (itsdangerous, as ``rooms.invitations``)
over ``{"a": agreement, "s": signer, "v": link_version}``. The signer row is the authority: a
new version of the draft voids its signers, so their old links stop working."""

from __future__ import annotations

from typing import Any

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.ext.asyncio import AsyncSession

from cases.catalogue import N_
from cases.errors import Forbidden
from esign.models import AgreementSigner

SALT = "yuntiao.agreement-signer.v1"
MAX_TOKEN_CHARS = 500


def _serializer(secret: str | bytes) -> URLSafeTimedSerializer:
    if not secret:
        raise ValueError("an empty secret would make signing links forgeable")
    return URLSafeTimedSerializer(secret, salt=SALT)


def issue_link_token(secret: str | bytes, signer: AgreementSigner) -> str:
    payload = {"a": signer.agreement_id, "s": signer.id, "v": signer.link_version}
    return str(_serializer(secret).dumps(payload))


def _int(payload: dict[str, Any], key: str) -> int:
    value = payload.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise Forbidden(N_("This signing link is not valid."), code="signing_link_invalid")
    return value


async def read_link_token(
    session: AsyncSession, secret: str | bytes, token: str, max_age_s: int
) -> AgreementSigner:
    """The signer of a link, or ``Forbidden`` (invalid, expired, or replaced by a new version)."""
    invalid = Forbidden(N_("This signing link is not valid."), code="signing_link_invalid")
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise invalid
    try:
        payload = _serializer(secret).loads(token, max_age=max_age_s)
    except SignatureExpired:
        raise Forbidden(
            N_("This signing link has expired. Ask the mediation office for a new one."),
            code="signing_link_expired",
        ) from None
    except BadData:
        raise invalid from None
    if not isinstance(payload, dict):
        raise invalid
    signer = await session.get(AgreementSigner, _int(payload, "s"), populate_existing=True)
    if (
        signer is None
        or signer.agreement_id != _int(payload, "a")
        or signer.link_version != _int(payload, "v")
    ):
        raise invalid
    return signer


REVIEW_SALT = "yuntiao.agreement-review.v1"


def issue_review_token(secret: str | bytes, agreement_id: int, party_id: int, version: int) -> str:
    """A party's link to read one draft version and comment on it (no signing)."""
    if not secret:
        raise ValueError("an empty secret would make review links forgeable")
    serializer = URLSafeTimedSerializer(secret, salt=REVIEW_SALT)
    return str(serializer.dumps({"a": agreement_id, "p": party_id, "n": version}))


def read_review_token(secret: str | bytes, token: str, max_age_s: int) -> tuple[int, int, int]:
    """(agreement id, party id, version number) of a review link, or ``Forbidden``. The caller
    checks that the party belongs to the agreement's case and which version is current."""
    invalid = Forbidden(N_("This review link is not valid."), code="review_link_invalid")
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise invalid
    try:
        payload = URLSafeTimedSerializer(secret, salt=REVIEW_SALT).loads(token, max_age=max_age_s)
    except SignatureExpired:
        raise Forbidden(
            N_("This review link has expired. Ask the mediation office for a new one."),
            code="review_link_expired",
        ) from None
    except BadData:
        raise invalid from None
    if not isinstance(payload, dict):
        raise invalid
    return _int(payload, "a"), _int(payload, "p"), _int(payload, "n")
