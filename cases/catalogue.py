"""Closed vocabularies of the domain, each code with its (translatable) English label.

Labels are gettext message ids marked with ``N_``; they are translated at the edge (pages, API),
with Simplified Chinese as the default language.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def N_(message: str) -> str:
    """Mark a string for extraction by Babel without translating it here."""
    return message


class Msg(str):
    """A message id used as a parameter of another message: the edge translates it too
    (e.g. a status label inside "cannot move from … to …")."""


@dataclass(frozen=True)
class Phrase:
    """A message id with its own parameters, used as a parameter of another message or kept
    for later display (e.g. why a mediator is barred); translated at the edge."""

    message: str
    params: dict[str, Any]

    def __str__(self) -> str:
        return self.message % self.params if self.params else self.message


ORGANISATION_KINDS: dict[str, str] = {
    "peoples_committee": N_("People's mediation committee"),
    "industry_room": N_("Industry / professional mediation room"),
    "court_invited": N_("Court-invited mediation organisation"),
    "commercial_centre": N_("Commercial mediation centre"),
}

STAFF_ROLES: dict[str, str] = {
    "system_admin": N_("System administrator"),
    "org_admin": N_("Organisation administrator"),
    "mediator": N_("Mediator"),
    "clerk": N_("Clerk"),
}

PARTY_ROLES: dict[str, str] = {
    "applicant": N_("Applicant"),
    "respondent": N_("Respondent"),
    "third_party": N_("Third party"),
    "agent": N_("Agent"),
}

PARTY_KINDS: dict[str, str] = {
    "person": N_("Natural person"),
    "organisation": N_("Organisation"),
}

INTAKE_CHANNELS: dict[str, str] = {
    "court_referral": N_("Court referral"),
    "department_assignment": N_("Assigned by a government department"),
    "party_application": N_("Application by a party"),
}

DISPUTE_CATEGORIES: dict[str, str] = {
    "family": N_("Marriage and family"),
    "inheritance": N_("Inheritance"),
    "adoption": N_("Adoption"),
    "neighbourhood": N_("Neighbourhood"),
    "property_management": N_("Property management"),
    "labour": N_("Labour"),
    "consumer": N_("Consumer"),
    "contract": N_("Contract"),
    "small_finance": N_("Small-sum finance"),
    "intellectual_property": N_("Intellectual property"),
    "traffic": N_("Road traffic accident"),
    "medical": N_("Medical"),
    "commercial": N_("Commercial"),
    "other": N_("Other"),
}

# Electronic Signature Law Art. 3: these matters need wet signatures (postal route).
WET_SIGNATURE_CATEGORIES = frozenset({"family", "inheritance", "adoption"})
