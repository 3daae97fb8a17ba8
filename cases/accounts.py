"""Staff accounts: creation, password login with lockout, browser sessions and API tokens.

Passwords are hashed with argon2id (argon2-cffi). Session cookies and API tokens are random
values of which only the SHA-256 is stored, so a database leak does not leak live credentials.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cases.actor import Actor
from cases.audit import AuditAction, record
from cases.catalogue import DISPUTE_CATEGORIES, N_, STAFF_ROLES
from cases.errors import AuthenticationFailed, Conflict, Invalid, NotFound
from cases.models import ApiToken, Organisation, User, WebSession, utcnow
from cases.protect import FieldCipher, normalise_id_number

_hasher = PasswordHasher()
# Verified against when the username does not exist, so both paths cost the same time.
_DUMMY_HASH = _hasher.hash("yuntiao-no-such-user")
_USERNAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{3,80}$")
MIN_PASSWORD_LENGTH = 10


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(
            N_("A password needs at least %(n)d characters."),
            code="weak_password",
            n=MIN_PASSWORD_LENGTH,
        )


async def create_user(
    session: AsyncSession,
    actor: Actor,
    *,
    username: str,
    password: str,
    display_name: str,
    role: str,
    organisation_id: int | None,
    phone: str = "",
    categories: list[str] | None = None,
    cipher: FieldCipher | None = None,
    id_number: str = "",
) -> User:
    """Create a staff account (audited). System administrators belong to no organisation."""
    if not _USERNAME_RE.match(username):
        raise Invalid(
            N_("A username has 3–80 letters, digits, dots, dashes or underscores."),
            code="invalid_username",
        )
    if role not in STAFF_ROLES:
        raise Invalid(N_("Unknown role: %(role)s"), code="invalid_role", role=role)
    if role != "system_admin":
        if organisation_id is None or await session.get(Organisation, organisation_id) is None:
            raise Invalid(
                N_("Choose the organisation this account belongs to."), code="organisation_required"
            )
    else:
        organisation_id = None
    unknown = set(categories or []) - set(DISPUTE_CATEGORIES)
    if unknown:
        raise Invalid(
            N_("Unknown dispute category: %(category)s"),
            code="invalid_category",
            category=sorted(unknown)[0],
        )
    check_password_strength(password)
    exists = await session.scalar(select(User.id).where(User.username == username))
    if exists:
        raise Conflict(
            N_("The username %(username)s is taken."), code="username_taken", username=username
        )
    user = User(
        username=username,
        display_name=display_name.strip() or username,
        role=role,
        organisation_id=organisation_id,
        password_hash=_hasher.hash(password),
        phone=phone.strip(),
        categories=list(categories or []),
    )
    if id_number.strip() and cipher is not None:
        number = normalise_id_number(id_number)
        user.id_number_enc = cipher.encrypt(number)
        user.id_number_index = cipher.index(number)
    session.add(user)
    await session.flush()
    await record(
        session,
        actor,
        AuditAction.USER_CREATED,
        object_type="user",
        object_id=user.id,
        organisation_id=organisation_id,
        details={"username": username, "role": role},
    )
    return user


async def authenticate(
    session: AsyncSession,
    actor: Actor,
    username: str,
    password: str,
    *,
    max_failures: int,
    lockout: dt.timedelta,
) -> User:
    """Check a password. After ``max_failures`` wrong passwords in a row the account is locked for
    ``lockout``; a locked account refuses even the right password. Every outcome is audited.

    The caller must commit even when this raises, so failed attempts are counted and audited.
    """
    user = await session.scalar(select(User).where(User.username == username.strip()))
    now = utcnow()
    if user is None or not user.active:
        _verify(_DUMMY_HASH, password)
        await record(
            session,
            actor,
            AuditAction.LOGIN_FAILED,
            object_type="user",
            details={"username": username[:80], "reason": "unknown_user"},
        )
        raise AuthenticationFailed(N_("Wrong username or password."))
    if user.locked_until is not None and user.locked_until > now:
        await record(
            session,
            actor,
            AuditAction.LOGIN_FAILED,
            object_type="user",
            object_id=user.id,
            organisation_id=user.organisation_id,
            details={"username": user.username, "reason": "locked"},
        )
        raise AuthenticationFailed(
            N_(
                "Too many wrong passwords: this account is locked until %(until)s. "
                "Wait, or ask an administrator to unlock it."
            ),
            code="account_locked",
            until=user.locked_until,
        )
    if not _verify(user.password_hash, password):
        failures = user.failed_logins + 1
        locked_until = now + lockout if failures >= max_failures else None
        await session.execute(
            update(User)
            .where(User.id == user.id)
            .values(failed_logins=failures, locked_until=locked_until)
        )
        await record(
            session,
            actor,
            AuditAction.LOGIN_FAILED,
            object_type="user",
            object_id=user.id,
            organisation_id=user.organisation_id,
            details={"username": user.username, "reason": "wrong_password", "failures": failures},
        )
        if locked_until is not None:
            await record(
                session,
                actor,
                AuditAction.LOGIN_LOCKED,
                object_type="user",
                object_id=user.id,
                organisation_id=user.organisation_id,
                details={"until": locked_until.isoformat()},
            )
            raise AuthenticationFailed(
                N_(
                    "Too many wrong passwords: this account is locked until %(until)s. "
                    "Wait, or ask an administrator to unlock it."
                ),
                code="account_locked",
                until=locked_until,
            )
        raise AuthenticationFailed(N_("Wrong username or password."))
    user.failed_logins = 0
    user.locked_until = None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    await record(
        session,
        actor,
        AuditAction.LOGIN_SUCCEEDED,
        object_type="user",
        object_id=user.id,
        organisation_id=user.organisation_id,
    )
    return user


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class IssuedSession:
    token: str  # the cookie value; shown once, never stored
    csrf_token: str
    expires_at: dt.datetime


async def open_session(
    session: AsyncSession, user: User, *, max_age: dt.timedelta, ip: str, user_agent: str
) -> IssuedSession:
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires = utcnow() + max_age
    session.add(
        WebSession(
            token_hash=token_digest(token),
            user_id=user.id,
            csrf_token=csrf,
            expires_at=expires,
            ip=ip[:64],
            user_agent=user_agent[:300],
        )
    )
    # Sweep this user's expired sessions while we are here.
    await session.execute(
        delete(WebSession).where(WebSession.user_id == user.id, WebSession.expires_at < utcnow())
    )
    return IssuedSession(token, csrf, expires)


async def resolve_session(session: AsyncSession, token: str) -> tuple[User, WebSession] | None:
    row = await session.get(WebSession, token_digest(token))
    if row is None or row.expires_at <= utcnow():
        return None
    user = await session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    return user, row


async def close_session(session: AsyncSession, actor: Actor, token: str) -> None:
    row = await session.get(WebSession, token_digest(token))
    if row is not None:
        await session.delete(row)
        await record(session, actor, AuditAction.LOGOUT, object_type="user", object_id=row.user_id)


async def issue_api_token(
    session: AsyncSession, actor: Actor, user: User, *, name: str, max_age: dt.timedelta
) -> tuple[str, ApiToken]:
    """Create a bearer token for ``user``; the plain token is returned once and never stored."""
    token = "yt_" + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=user.id,
        token_hash=token_digest(token),
        name=name[:100],
        expires_at=utcnow() + max_age,
    )
    session.add(row)
    await session.flush()
    await record(
        session,
        actor,
        AuditAction.API_TOKEN_ISSUED,
        object_type="user",
        object_id=user.id,
        organisation_id=user.organisation_id,
        details={"token_id": row.id, "name": name[:100]},
    )
    return token, row


async def resolve_api_token(session: AsyncSession, token: str) -> User | None:
    row = await session.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(token)))
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
        return None
    user = await session.get(User, row.user_id)
    return user if user is not None and user.active else None


async def get_user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(N_("No such account."))
    return user
