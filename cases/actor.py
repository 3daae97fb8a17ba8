"""Who does something, from where: passed to every state-changing function and into the audit."""

from __future__ import annotations

from dataclasses import dataclass

from cases.models import User


@dataclass(frozen=True)
class Actor:
    """The origin of a change. ``user`` is None for parties (``party_id``) and the system."""

    kind: str  # user | party | system
    id: int | None = None
    label: str = ""
    ip: str = ""
    user_agent: str = ""
    user: User | None = None

    @classmethod
    def for_user(cls, user: User, ip: str = "", user_agent: str = "") -> Actor:
        return cls("user", user.id, user.username, ip, user_agent[:300], user)

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls("system", None, label)
