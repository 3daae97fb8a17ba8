"""Who may read and write which notes (``notes.access.grant``), on the real rows of a hearing:
the security decision tested as one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from cases.actor import Actor
from cases.dispatch import do_assign_mediator
from cases.intake import get_case
from cases.models import User, utcnow
from cases.protect import FieldCipher
from cases.uow import transaction
from notes import access, store
from rooms import hearings
from rooms.access import participant_actor
from tests.conftest import TEST_FIELD_KEY
from tests.notes_fixtures import APPLICANT, CLERK, MEDIATOR, RESPONDENT, WAITING, make_hearing
from web.context import SETTINGS


async def test_grants(client: Any, sessionmaker: Any) -> None:
    secret = client.app[SETTINGS].secret_key
    links = await make_hearing(sessionmaker, secret)
    case_id, hearing_id = links["case"], links["hearing"]
    keys = {
        "record": f"record:{hearing_id}",
        "shared": f"shared:{case_id}",
        "private": f"private:{case_id}",
    }

    async def grants(session: Any, principal: access.Principal) -> dict[str, tuple[bool, bool]]:
        out = {}
        for name, key in keys.items():
            document, case = await store.open_document(session, key)
            g = access.grant(principal, document, case)
            out[name] = (g.read, g.write)
        return out

    async def by_link(session: Any, name: str) -> access.Principal:
        return await access.by_link(session, secret, links[name][1], utcnow())

    async def staff(session: Any, username: str) -> access.Principal:
        user = await session.scalar(select(User).where(User.username == username))
        return access.staff(user)

    rw, r, none = (True, True), (True, False), (False, False)
    async with transaction(sessionmaker) as session:
        assert await grants(session, await by_link(session, MEDIATOR)) == {
            "record": rw,
            "shared": rw,
            "private": rw,
        }
        assert await grants(session, await by_link(session, CLERK)) == {
            "record": rw,
            "shared": rw,
            "private": rw,
        }
        assert await grants(session, await by_link(session, APPLICANT)) == {
            "record": r,
            "shared": r,
            "private": none,
        }
        # Still in the lobby: shared notes yes, the record not yet.
        assert await grants(session, await by_link(session, WAITING)) == {
            "record": none,
            "shared": r,
            "private": none,
        }
        assert await grants(session, await staff(session, "mediator")) == {
            "record": rw,
            "shared": rw,
            "private": rw,
        }
        # Not this case's mediator: nothing at all; an administrator of the office: everything.
        assert await grants(session, await staff(session, "mediator2")) == {
            "record": none,
            "shared": none,
            "private": none,
        }
        assert (await grants(session, await staff(session, "admin")))["private"] == rw

        # A removed party loses the record and the shared notes.
        respondent = (await by_link(session, RESPONDENT)).participant
        mediator = (await by_link(session, MEDIATOR)).participant
        assert respondent is not None and mediator is not None
        await hearings.do_remove(session, participant_actor(mediator), respondent, by=mediator)
        assert await grants(session, await by_link(session, RESPONDENT)) == {
            "record": none,
            "shared": none,
            "private": none,
        }
        # A mediator whose case went to someone else (回避) keeps no write access by link.
        other = await session.scalar(select(User).where(User.username == "mediator2"))
        case = await get_case(session, case_id)
        admin = await session.scalar(select(User).where(User.username == "admin"))
        await do_assign_mediator(
            session, Actor.for_user(admin), FieldCipher(TEST_FIELD_KEY), case, other.id
        )
        assert (await grants(session, await by_link(session, MEDIATOR)))["private"] == none
