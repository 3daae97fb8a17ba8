"""The pages a participant opens from their own hearing link (no account needed):

- ``GET /h/{token}`` — the pre-join page: the hearing, who they are, a camera/microphone preview
  (``hearing-prejoin.js``), the notice of rights and obligations (权利义务告知书, 人民调解法
  Art. 23–24) and, when the hearing is recorded, the recording-consent question;
- ``POST /h/{token}/ready`` — writes the acknowledgement and the consent answer (audited by
  ``rooms.hearings``), then redirects to the room;
- ``GET /h/{token}/room`` — the hearing room shell; ``hearing-room.js`` connects to the
  ``/hearing`` socket.io namespace with the token and renders everything from ``sync``.

The token is the participant's only credential and it sits in the URL path, so these pages send
``Referrer-Policy: no-referrer`` and are never cached. A bad link (forged, expired, withdrawn)
gets a readable 403 page that says to ask the mediation office for a new link.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from cases.catalogue import N_
from cases.errors import Conflict, DomainError, Invalid
from cases.models import Case, utcnow
from recordings import sharing
from rooms import hearings
from rooms.access import participant_actor
from rooms.catalogue import (
    DENIED,
    ENDED,
    OBSERVER,
    OBSERVER_ROLES,
    PARTICIPANT_KINDS,
    REMOVED,
    SIDES,
    STAFF_KINDS,
)
from rooms.errors import InvitationError
from rooms.invitations import read_invitation
from rooms.models import Hearing, HearingParticipant
from web import i18n
from web.context import client_ip, settings, template_context, transaction
from web.i18n import gettext as _

# Texts the room script shows. They are translated here (the script has no gettext) and handed
# to it in a data attribute; the keys are what ``hearing-*.js`` look up.
ROOM_TEXTS: dict[str, str] = {
    "connecting": N_("Connecting to the hearing…"),
    "reconnecting_self": N_(
        "The connection to the hearing was lost. Reconnecting… Keep this page open."
    ),
    "connected": N_("Connected."),
    "waiting_title": N_("Please wait: the mediator will let you in shortly"),
    "waiting_body": N_(
        "You are in the waiting room. Keep this page open; the hearing starts for you as soon "
        "as the mediator admits you. Your camera and microphone are not sent to anyone yet."
    ),
    "denied": N_(
        "The mediator did not admit you to this hearing. Please contact the mediation office."
    ),
    "removed": N_(
        "You were removed from this hearing. You can come back only when the mediator admits "
        "you again; please contact the mediation office."
    ),
    "replaced": N_(
        "This link was opened in another window or on another device, so this page has "
        "stopped. Continue there, or reload this page to continue here."
    ),
    "ended": N_("The hearing has ended. Thank you for taking part. You can close this page."),
    "left": N_("You have left the hearing. To come back, open your link again."),
    "leave_confirm": N_("Leave the hearing? To come back you will have to wait for the mediator."),
    "end_confirm": N_("End the hearing for everyone? Nobody can rejoin afterwards."),
    "remove_confirm": N_("Remove %(name)s from the hearing?"),
    "you": N_("You"),
    "state_reconnecting": N_("Reconnecting…"),
    "state_left": N_("Left"),
    "state_waiting": N_("Waiting"),
    "state_invited": N_("Not arrived yet"),
    "state_denied": N_("Not admitted"),
    "state_removed": N_("Removed"),
    "state_admitted": N_("In the hearing"),
    "muted": N_("Microphone off"),
    "camera_off": N_("Camera off"),
    "sharing": N_("Sharing the screen"),
    "hand": N_("Hand raised"),
    # Button labels say what a tap does; short enough for six buttons across a phone.
    "mic_off": N_("Unmute"),
    "mic_on": N_("Mute"),
    "cam_off": N_("Start video"),
    "cam_on": N_("Stop video"),
    "share_start": N_("Share screen"),
    "share_stop": N_("Stop sharing"),
    "hand_up": N_("Raise hand"),
    "hand_down": N_("Lower hand"),
    "mute_request": N_(
        "The mediator turned your microphone off. Turn it on again when you want to speak."
    ),
    "hand_raised_by": N_("%(name)s raised their hand."),
    "no_media": N_(
        "Your camera and microphone could not be started. You can still follow the hearing; "
        "to speak, allow the camera and microphone and reload the page, or join by phone."
    ),
    "audio_only": N_(
        "No camera is available: you take part with sound only. The others see your name."
    ),
    "screen_failed": N_("Screen sharing did not start. Nothing was shared."),
    "screen_unsupported": N_("This browser cannot share the screen (phones usually cannot)."),
    "sound_blocked": N_("The browser blocked the sound. Tap here to hear the others."),
    "quality_good": N_("Good connection"),
    "quality_fair": N_("Unstable connection"),
    "quality_poor": N_("Poor connection: the picture may freeze; turning your camera off helps."),
    "quality_unknown": N_("Connection quality not known yet"),
    "chat_empty": N_("No messages yet. Messages are kept with the case file."),
    "chat_caucus": N_("Only the people in your current room see these messages."),
    "lobby_empty": N_("Nobody is waiting."),
    "admit": N_("Admit"),
    "deny": N_("Do not admit"),
    "remove": N_("Remove from the hearing"),
    "readmit": N_("Admit again"),
    "move_to": N_("To %(room)s"),
    "recording_ready": N_("Everyone here agreed to the recording."),
    "recording_missing": N_("Not agreed to the recording: %(names)s. The recording cannot start."),
    "recording_running": N_("Recording: everyone sees the red sign."),
    "mute_other": N_("Mute"),
    "room_main": N_("Main hearing room"),
    "room_applicant": N_("Applicant side room"),
    "room_respondent": N_("Respondent side room"),
    "room_label": N_("Room: %(room)s"),
    "in_room": N_("in %(room)s"),
    "caucus_on": N_("Private caucus in progress: you only see and hear the people in your room."),
    "someone_waiting": N_("%(name)s is waiting to be admitted."),
    "error": N_("Not done: %(message)s"),
    "kind_mediator": N_("Mediator"),
    "kind_clerk": N_("Clerk"),
    "kind_party": N_("Party"),
    "kind_agent": N_("Agent"),
    "kind_observer": N_("Observer"),
    "side_applicant": N_("Applicant side"),
    "side_respondent": N_("Respondent side"),
    "side_neutral": N_("Neutral"),
}

# Texts of the pre-join page's script (camera/microphone guidance).
PREJOIN_TEXTS: dict[str, str] = {
    "starting": N_("Starting your camera and microphone…"),
    "ready": N_("Your camera and microphone work. Check that you can be seen and heard."),
    "denied": N_(
        "You did not allow this page to use your camera and microphone. Tap the camera or lock "
        "icon in the address bar, choose “Allow”, then reload this page."
    ),
    "no_camera": N_(
        "No camera was found. You can still take part with sound only; the others will see "
        "your name instead of your picture."
    ),
    "no_microphone": N_(
        "No microphone was found. Connect a headset or a microphone and reload this page, or "
        "take part by phone (see below)."
    ),
    "no_devices": N_(
        "No camera or microphone was found. Connect a headset and reload this page, or take "
        "part by phone (see below)."
    ),
    "busy": N_(
        "The camera or microphone is being used by another program. Close other video or "
        "call apps, then reload this page."
    ),
    "unsupported": N_(
        "This browser cannot use the camera here. Open the link in a recent browser (Chrome, "
        "Edge, Firefox or Safari); inside WeChat, tap “…” and choose “Open in browser”."
    ),
    "audio_only_chosen": N_("You will join without your camera."),
    "default_device": N_("Default device"),
    "camera_n": N_("Camera %(n)s"),
    "microphone_n": N_("Microphone %(n)s"),
}


def setup(app: web.Application) -> None:
    """Add the participant pages (see the module docstring)."""
    app.router.add_get("/h/{token}", prejoin)
    app.router.add_post("/h/{token}/ready", ready)
    app.router.add_get("/h/{token}/room", room)


# ---- helpers ------------------------------------------------------------------------------------


def _texts(table: dict[str, str]) -> dict[str, str]:
    return {key: _(text) for key, text in table.items()}


def _render(
    request: web.Request, template: str, values: dict[str, Any], status: int = 200
) -> web.Response:
    response = aiohttp_jinja2.render_template(
        template, request, template_context(request, **values), status=status
    )
    # The link is the participant's credential and sits in the path: never leak it to another
    # site in a Referer header, and never keep these pages in a cache.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _link_error(request: web.Request, exc: InvitationError) -> web.Response:
    return _render(
        request,
        "hearing_prejoin.html",
        {
            "link_error": i18n.translate(exc.message, exc.params, settings(request).timezone),
            "link_error_code": exc.code,
        },
        status=403,
    )


def _when(hearing: Hearing, zone: str) -> str:
    tz = ZoneInfo(zone)
    start = hearing.scheduled_at.astimezone(tz)
    end = hearing.scheduled_end.astimezone(tz)
    end_text = (
        end.strftime("%H:%M") if end.date() == start.date() else end.strftime("%Y-%m-%d %H:%M")
    )
    return _(
        "%(start)s – %(end)s (%(zone)s)",
        start=start.strftime("%Y-%m-%d %H:%M"),
        end=end_text,
        zone=i18n.zone_label(zone),
    )


def role_label(participant: HearingParticipant) -> str:
    """The role as people read it: "Party · Applicant side", "Mediator", "Interpreter"."""
    if participant.kind == OBSERVER:
        base = _(OBSERVER_ROLES.get(participant.observer_role, OBSERVER_ROLES["observer"]))
    else:
        base = _(PARTICIPANT_KINDS.get(participant.kind, participant.kind))
    side = SIDES.get(participant.side)
    if participant.kind in STAFF_KINDS or side is None or participant.side == "neutral":
        return base
    return _("%(role)s · %(side)s", role=base, side=_(side))


async def _open(
    session: AsyncSession, request: web.Request
) -> tuple[HearingParticipant, Hearing, Case]:
    token = request.match_info["token"]
    participant = await read_invitation(session, settings(request).secret_key, token, utcnow())
    hearing = await hearings.get_hearing(session, participant.hearing_id)
    case = await session.get(Case, hearing.case_id)
    if case is None:  # pragma: no cover - the foreign key guarantees it
        raise web.HTTPNotFound()
    return participant, hearing, case


def _needs_rights(participant: HearingParticipant) -> bool:
    """Everyone but staff is told their rights; parties and agents must confirm (rooms)."""
    return participant.kind not in STAFF_KINDS


def _needs_consent(participant: HearingParticipant, hearing: Hearing) -> bool:
    return hearing.record and participant.kind not in STAFF_KINDS


def _blocked_message(participant: HearingParticipant, hearing: Hearing) -> str | None:
    """Why this link cannot enter the hearing now (the page then offers no join button)."""
    if hearing.status == ENDED:
        return _("This hearing has ended. If you have questions, contact the mediation office.")
    if participant.state == DENIED:
        return _(
            "The mediator did not admit you to this hearing. Please contact the mediation office."
        )
    if participant.state == REMOVED:
        return _(
            "You were removed from this hearing. You can come back only when the mediator "
            "admits you again; please contact the mediation office."
        )
    return None


def _page_values(
    request: web.Request, participant: HearingParticipant, hearing: Hearing, case: Case
) -> dict[str, Any]:
    organisation = case.organisation
    return {
        "link_error": None,
        "participant": participant,
        "hearing": hearing,
        "case": case,
        "organisation": organisation,
        "role": role_label(participant),
        "when": _when(hearing, settings(request).timezone),
        "token": request.match_info["token"],
        "is_staff": participant.kind in STAFF_KINDS,
        "needs_rights": _needs_rights(participant),
        "needs_consent": _needs_consent(participant, hearing),
        "blocked": _blocked_message(participant, hearing),
        "texts": _texts(PREJOIN_TEXTS),
    }


# ---- handlers -----------------------------------------------------------------------------------


async def prejoin(request: web.Request) -> web.StreamResponse:
    try:
        async with transaction(request) as session:
            participant, hearing, case = await _open(session, request)
            values = _page_values(request, participant, hearing, case)
            shared = (
                await sharing.shared_with(
                    session, await sharing.viewer_parties(session, participant.party_id), case.id
                )
                if participant.party_id is not None
                else []
            )
    except InvitationError as exc:
        return _link_error(request, exc)
    values.update(
        shared_recordings=len(shared),
        error=None,
        acknowledged=participant.rights_acknowledged_at is not None,
        consent=participant.recording_consent,
    )
    return _render(request, "hearing_prejoin.html", values)


async def ready(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    acknowledged = form.get("acknowledge") == "yes"
    raw_consent = form.get("recording_consent")
    consent = {"yes": True, "no": False}.get(raw_consent if isinstance(raw_consent, str) else "")
    token = request.match_info["token"]
    try:
        async with transaction(request) as session:
            participant, hearing, case = await _open(session, request)
            values = _page_values(request, participant, hearing, case)
            try:
                if values["blocked"]:
                    raise Conflict(N_("This link cannot enter the hearing now."), code="blocked")
                if values["needs_rights"] and not acknowledged:
                    raise Invalid(
                        N_(
                            "Please read the notice of your rights and obligations and tick "
                            "the box to confirm it."
                        ),
                        code="rights_not_acknowledged",
                    )
                if values["needs_consent"] and consent is None:
                    raise Invalid(
                        N_("Please answer whether you agree to the recording."),
                        code="recording_consent_required",
                    )
                actor = participant_actor(
                    participant, client_ip(request), request.headers.get("User-Agent", "")
                )
                if values["needs_rights"]:
                    await hearings.do_acknowledge_rights(session, actor, participant)
                if values["needs_consent"] and consent is not None:
                    await hearings.do_record_consent(session, actor, participant, consent)
            except DomainError as exc:
                values.update(
                    error=None
                    if values["blocked"]
                    else i18n.translate(exc.message, exc.params, settings(request).timezone),
                    acknowledged=acknowledged or participant.rights_acknowledged_at is not None,
                    consent=consent,
                )
                status = 409 if isinstance(exc, Conflict) else 422
                return _render(request, "hearing_prejoin.html", values, status=status)
    except InvitationError as exc:
        return _link_error(request, exc)
    response = web.Response(status=303, headers={"Location": f"/h/{token}/room"})
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


async def room(request: web.Request) -> web.StreamResponse:
    try:
        async with transaction(request) as session:
            participant, hearing, case = await _open(session, request)
            values = _page_values(request, participant, hearing, case)
    except InvitationError as exc:
        return _link_error(request, exc)
    token = request.match_info["token"]
    missing_rights = values["needs_rights"] and participant.rights_acknowledged_at is None
    missing_consent = values["needs_consent"] and participant.recording_consent is None
    if (missing_rights or missing_consent) and not values["blocked"]:
        # Straight to the room without the notice (an old bookmark): read it first.
        response = web.Response(status=303, headers={"Location": f"/h/{token}"})
        response.headers["Referrer-Policy"] = "no-referrer"
        return response
    values.update(room_texts=_texts(ROOM_TEXTS))
    return _render(request, "hearing_room.html", values)
