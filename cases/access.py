"""Who may see and do what with organisations and cases. One place, tested like the security
decision it is. Parties have no staff account; their access comes from hearing links."""

from __future__ import annotations

from sqlalchemy import Select, false

from cases.catalogue import N_
from cases.errors import Forbidden
from cases.models import Case, User

ADMIN_ROLES = frozenset({"system_admin", "org_admin"})
INTAKE_ROLES = frozenset({"system_admin", "org_admin", "clerk"})


def is_system_admin(user: User) -> bool:
    return user.role == "system_admin"


def same_organisation(user: User, organisation_id: int | None) -> bool:
    return is_system_admin(user) or (
        user.organisation_id is not None and user.organisation_id == organisation_id
    )


def can_view_case(user: User, case: Case) -> bool:
    """Admins and clerks see their organisation's cases; a mediator sees the cases assigned to them."""
    if is_system_admin(user):
        return True
    if user.role in ("org_admin", "clerk"):
        return same_organisation(user, case.organisation_id)
    return user.role == "mediator" and case.mediator_id == user.id


def can_manage_case(user: User, case: Case) -> bool:
    """Intake, parties and dispatch: administrators and clerks of the organisation."""
    return user.role in INTAKE_ROLES and same_organisation(user, case.organisation_id)


def can_progress_case(user: User, case: Case) -> bool:
    """Move the case through its lifecycle: the assigned mediator or a manager of the case."""
    return can_manage_case(user, case) or (user.role == "mediator" and case.mediator_id == user.id)


def can_reveal_id_numbers(user: User, case: Case) -> bool:
    return (user.role in ADMIN_ROLES and same_organisation(user, case.organisation_id)) or (
        user.role == "mediator" and case.mediator_id == user.id
    )


def require(allowed: bool) -> None:
    if not allowed:
        raise Forbidden(N_("You do not have access to this."))


def visible_cases(query: Select[Case], user: User) -> Select[Case]:
    """Restrict a case query to what ``user`` may see (the same rule as ``can_view_case``)."""
    if is_system_admin(user):
        return query
    if user.role in ("org_admin", "clerk"):
        return query.where(Case.organisation_id == user.organisation_id)
    if user.role == "mediator":
        return query.where(Case.mediator_id == user.id)
    return query.where(false())  # no staff role: nothing
