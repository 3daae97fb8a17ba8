"""A hearing of demo case 1 set up for the notes tests: mediator, clerk, the applicant company and
the respondent 刘某 (both admitted), and 义乌 (a respondent still in the lobby), each with a link."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from cases.actor import Actor
from cases.models import User
from cases.uow import transaction
from rooms import hearings
from rooms.access import participant_actor
from rooms.invitations import issue_invitation

APPLICANT = "宜昌某家居用品有限公司"
RESPONDENT = "刘某"
WAITING = "义乌某电子商务有限公司"
MEDIATOR = "李静"
CLERK = "陈书记员"


async def make_hearing(sessionmaker: Any, secret: str) -> dict[str, Any]:
    """``{"hearing": id, "case": id, name: (participant id, link)}``."""
    async with transaction(sessionmaker) as session:
        from cases.intake import get_case

        case = await get_case(session, 1)
        clerk = await session.scalar(select(User).where(User.username == "clerk"))
        assert clerk is not None
        hearing = await hearings.do_schedule_hearing(
            session,
            Actor.for_user(case.mediator),
            case,
            hearings.HearingInput(
                title="第一次调解",
                scheduled_at=dt.datetime.now(dt.UTC),
                duration_minutes=60,
                clerk_ids=(clerk.id,),
            ),
        )
        links: dict[str, Any] = {"hearing": hearing.id, "case": case.id}
        by_name = {p.display_name: p for p in hearing.participants}
        mediator = by_name[MEDIATOR]
        await hearings.do_join(session, participant_actor(mediator), mediator)
        for name in (APPLICANT, RESPONDENT, WAITING):
            p = by_name[name]
            await hearings.do_acknowledge_rights(session, participant_actor(p), p)
            await hearings.do_join(session, participant_actor(p), p)
            if name != WAITING:
                await hearings.do_admit(session, participant_actor(mediator), p, by=mediator)
        for p in hearing.participants:
            links[p.display_name] = (p.id, issue_invitation(secret, hearing, p))
    return links
