"""Agreements through the API, on both engines: the whole flow with two parties, the mediator
and the seal (every signature checked with pyHanko and poppler), one-time codes refused when
wrong or expired, concurrent clicks, a party confined to their own agreement, a draft change
voiding pending signatures, the postal route, verification and judicial confirmation."""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import io
import os
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from cases.models import User
from cases.notifications import OutboxMessage
from cases.uow import transaction
from esign.models import Agreement, AgreementSigner
from esign.verify import verify_pdf
from tests.helpers import api_headers
from tests.test_api import COURT_CASE
from tests.test_esign_signing import drawing_png, pdfsig
from web.agreements import ESIGN

TERMS: dict[str, Any] = {
    "facts": "申请人向被申请人供应电池材料，被申请人尚欠货款十二万元未付。",
    "dispute": "货款金额及支付期限。",
    "responsibilities": "被申请人未按约付款，应承担主要责任。",
    "items": [
        "被申请人孙某于2026年12月31日前向申请人支付货款人民币壹拾贰万元整（¥120,000.00）。",
        "申请人放弃主张逾期付款利息。",
    ],
    "performance_manner": "银行转账至申请人指定账户",
    "performance_place": "湖北省宜昌市",
    "performance_deadline": "2026年12月31日前",
    "copies": 3,
}
CODE_RE = re.compile(r"验证码(\d{6})")


def tool(args: list[str]) -> str:
    """A poppler tool's output (sync, so it is called from tests as a plain function)."""
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def png_b64(seed: int = 0) -> str:
    return "data:image/png;base64," + base64.b64encode(drawing_png(seed)).decode()


async def error_code(resp: Any) -> str:
    return str((await resp.json())["error"]["code"])


@pytest.fixture
async def staff(client: Any, demo_logins: dict[str, str]) -> dict[str, dict[str, str]]:
    return {
        name: await api_headers(client, name, demo_logins[name])
        for name in ("clerk", "mediator", "admin", "mediator2")
    }


async def new_case(
    client: Any, sessionmaker: Any, staff: dict[str, dict[str, str]], category: str = "contract"
) -> int:
    body = copy.deepcopy(COURT_CASE)
    body["category"] = category
    resp = await client.post("/api/v1/cases", json=body, headers=staff["clerk"])
    assert resp.status == 201, await resp.text()
    case_id = int((await resp.json())["id"])
    async with sessionmaker() as session:
        mediator_id = await session.scalar(select(User.id).where(User.username == "mediator"))
    resp = await client.post(
        f"/api/v1/cases/{case_id}/assignment",
        json={"mediator_id": mediator_id},
        headers=staff["clerk"],
    )
    assert resp.status == 200, await resp.text()
    for target in ("notified", "in_mediation"):
        resp = await client.post(
            f"/api/v1/cases/{case_id}/transitions", json={"to": target}, headers=staff["mediator"]
        )
        assert resp.status == 200, await resp.text()
    return case_id


async def issued_agreement(
    client: Any,
    sessionmaker: Any,
    staff: dict[str, dict[str, str]],
    *,
    order: str = "parallel",
    category: str = "contract",
) -> dict[str, Any]:
    case_id = await new_case(client, sessionmaker, staff, category)
    resp = await client.post(
        f"/api/v1/cases/{case_id}/agreements",
        json={"terms": TERMS, "signing_order": order},
        headers=staff["mediator"],
    )
    assert resp.status == 201, await resp.text()
    agreement = await resp.json()
    resp = await client.post(
        f"/api/v1/agreements/{agreement['id']}/issue", json={}, headers=staff["mediator"]
    )
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def party_tokens(
    client: Any, agreement_id: int, staff: dict[str, dict[str, str]]
) -> list[tuple[int, str]]:
    resp = await client.get(f"/api/v1/agreements/{agreement_id}/links", headers=staff["mediator"])
    assert resp.status == 200, await resp.text()
    return [
        (link["signer_id"], link["url"].rsplit("/sign/", 1)[1])
        for link in (await resp.json())["links"]
    ]


async def last_code(sessionmaker: Any, phone: str) -> str:
    async with sessionmaker() as session:
        body = await session.scalar(
            select(OutboxMessage.body)
            .where(OutboxMessage.recipient == phone)
            .order_by(OutboxMessage.id.desc())
            .limit(1)
        )
    match = CODE_RE.search(body or "")
    assert match, body
    return match.group(1)


async def party_signs(
    client: Any, sessionmaker: Any, agreement_id: int, token: str, phone: str, seed: int = 0
) -> Any:
    headers = {"X-Signing-Token": token}
    base = f"/api/v1/agreements/{agreement_id}/signing"
    assert (await client.post(base + "/view", headers=headers)).status == 200
    resp = await client.post(base + "/code", headers=headers)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["sent_to"] == phone[:3] + "****" + phone[-4:]
    code = await last_code(sessionmaker, phone)
    resp = await client.post(base + "/code/verify", json={"code": code}, headers=headers)
    assert resp.status == 200, await resp.text()
    return await client.post(base + "/signature", json={"drawing": png_b64(seed)}, headers=headers)


def signer_id(agreement: dict[str, Any], kind: str) -> int:
    return int(next(s["id"] for s in agreement["signers"] if s["kind"] == kind))


# ---- the whole flow ---------------------------------------------------------------------------


async def test_full_flow_two_parties_mediator_and_seal(
    client: Any, sessionmaker: Any, staff: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    agreement = await issued_agreement(client, sessionmaker, staff)
    aid = agreement["id"]
    assert agreement["status"] == "signing"
    assert [s["kind"] for s in agreement["signers"]] == ["party", "party", "mediator", "seal"]
    # The issue sent each party their link by text message.
    async with sessionmaker() as session:
        bodies = list(
            await session.scalars(
                select(OutboxMessage.body).where(OutboxMessage.body.contains("/sign/"))
            )
        )
    assert len(bodies) == 2

    tokens = await party_tokens(client, aid, staff)
    phones = ["13900000001", "13900000002"]
    # The seal cannot come before the others.
    resp = await client.post(
        f"/api/v1/agreements/{aid}/signers/{signer_id(agreement, 'seal')}/signature",
        json={},
        headers=staff["admin"],
    )
    assert resp.status == 409 and await error_code(resp) == "signing_not_your_turn"
    for (sid, token), phone, seed in zip(tokens, phones, (0, 15), strict=True):
        resp = await party_signs(client, sessionmaker, aid, token, phone, seed)
        assert resp.status == 200, await resp.text()
        me = (await resp.json())["me"]
        assert me["id"] == sid and me["status"] == "signed"
    # Only the case's mediator signs as mediator; only an org admin seals.
    mediator_signer = signer_id(agreement, "mediator")
    resp = await client.post(
        f"/api/v1/agreements/{aid}/signers/{mediator_signer}/signature",
        json={"drawing": png_b64(30)},
        headers=staff["admin"],
    )
    assert resp.status == 403
    resp = await client.post(
        f"/api/v1/agreements/{aid}/signers/{mediator_signer}/signature",
        json={"drawing": png_b64(30)},
        headers=staff["mediator"],
    )
    assert resp.status == 200, await resp.text()
    resp = await client.post(
        f"/api/v1/agreements/{aid}/signers/{signer_id(agreement, 'seal')}/signature",
        json={},
        headers=staff["admin"],
    )
    assert resp.status == 200, await resp.text()
    done = await resp.json()
    assert done["status"] == "effective" and done["effective_at"] and done["judicial_deadline"]
    assert all(s["status"] == "signed" for s in done["signers"])

    pdf_resp = await client.get(f"/api/v1/agreements/{aid}/document", headers=staff["mediator"])
    assert pdf_resp.status == 200 and pdf_resp.content_type == "application/pdf"
    pdf = await pdf_resp.read()
    authority = client.app[ESIGN].authority
    report = await verify_pdf(pdf, authority.ca_cert_asn1)
    assert report.ok, report.problem
    names = [s.signer for s in report.signatures]
    assert names[1:3] == ["宜昌某电池材料有限公司", "孙某"]
    assert [s.field for s in report.signatures] == [
        "issue",
        f"party-{agreement['signers'][0]['party_id']}",
        f"party-{agreement['signers'][1]['party_id']}",
        "mediator",
        "seal",
    ]
    assert all(s.bottom_line and s.trusted and s.timestamped for s in report.signatures)
    # poppler agrees that every signature is intact.
    sigs = pdfsig(pdf, tmp_path)
    assert len(sigs) == 5 and all(s["Signature Validation"] == "Signature is Valid." for s in sigs)
    # The font is embedded, and the Chinese terms come out as text (ID numbers masked).
    path = tmp_path / "agreement.pdf"
    path.write_bytes(pdf)
    fonts = tool(["pdffonts", str(path)])
    assert "WenQuanYiMicroHei" in fonts and all(
        line.split()[-5:-3] == ["yes", "yes"] for line in fonts.splitlines()[2:] if line.strip()
    )
    text = tool(["pdftotext", str(path), "-"])
    flat = text.replace("\n", "")
    assert "人民调解协议书" in text and "申请人放弃主张逾期付款利息" in flat
    assert "3301**********1232" in text and "330102198503151232" not in text
    # The certificate of completion.
    cert = await client.get(f"/api/v1/agreements/{aid}/completion", headers=staff["mediator"])
    assert cert.status == 200
    cert_pdf = await cert.read()
    cert_report = await verify_pdf(cert_pdf, authority.ca_cert_asn1)
    assert cert_report.ok
    (tmp_path / "c.pdf").write_bytes(cert_pdf)
    cert_text = tool(["pdftotext", str(tmp_path / "c.pdf"), "-"])
    assert "139****0001" in cert_text and report.sha256[:16] in cert_text.replace("\n", "")
    # Public verification: genuine, and the platform holds the same bytes.
    resp = await client.post(
        "/api/v1/agreements/verification", data=pdf, headers={"Content-Type": "application/pdf"}
    )
    result = await resp.json()
    assert result["genuine"] and result["registered"] and result["matches_platform_copy"]
    assert len(result["signatures"]) == 5 and all(s["valid"] for s in result["signatures"])
    tampered = bytearray(pdf)
    at = pdf.index(b"ReportLab PDF Library")
    tampered[at] = ord("Q")
    resp = await client.post(
        "/api/v1/agreements/verification",
        data=bytes(tampered),
        headers={"Content-Type": "application/pdf"},
    )
    result = await resp.json()
    assert not result["genuine"] and result["problem"]
    # The case moved on, and the history names what happened.
    case = await client.get(f"/api/v1/cases/{done['case_id']}", headers=staff["mediator"])
    assert (await case.json())["status"] == "agreement_reached"


async def test_wrong_and_expired_codes_are_refused(
    client: Any, sessionmaker: Any, staff: dict[str, dict[str, str]]
) -> None:
    agreement = await issued_agreement(client, sessionmaker, staff)
    aid = agreement["id"]
    (sid, token), _second = await party_tokens(client, aid, staff)
    headers = {"X-Signing-Token": token}
    base = f"/api/v1/agreements/{aid}/signing"
    # No code yet, no signature.
    resp = await client.post(base + "/signature", json={"drawing": png_b64()}, headers=headers)
    assert resp.status == 403 and await error_code(resp) == "signing_code_required"
    assert (await client.post(base + "/code", headers=headers)).status == 200
    code = await last_code(sessionmaker, "13900000001")
    wrong = f"{(int(code) + 1) % 1000000:06d}"
    resp = await client.post(base + "/code/verify", json={"code": wrong}, headers=headers)
    assert resp.status == 422 and await error_code(resp) == "signing_code_wrong"
    assert "4" in (await resp.json())["error"]["message"]  # attempts left, in the message
    for _ in range(4):
        await client.post(base + "/code/verify", json={"code": wrong}, headers=headers)
    # Exhausted: even the right code is refused now.
    resp = await client.post(base + "/code/verify", json={"code": code}, headers=headers)
    assert resp.status == 422 and await error_code(resp) == "signing_code_exhausted"
    # A new code works — unless it has expired.
    assert (await client.post(base + "/code", headers=headers)).status == 200
    code = await last_code(sessionmaker, "13900000001")
    async with sessionmaker() as session:
        await session.execute(
            update(AgreementSigner)
            .where(AgreementSigner.id == sid)
            .values(code_expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
        await session.commit()
    resp = await client.post(base + "/code/verify", json={"code": code}, headers=headers)
    assert resp.status == 422 and await error_code(resp) == "signing_code_expired"
    resp = await client.post(base + "/signature", json={"drawing": png_b64()}, headers=headers)
    assert resp.status == 403
    # Each failure is in the case's audit trail.
    async with sessionmaker() as session:
        from cases.models import AuditEntry

        actions = list(
            await session.scalars(
                select(AuditEntry.action).where(AuditEntry.action == "agreement.code_failed")
            )
        )
    assert len(actions) == 5


async def test_two_simultaneous_clicks_exactly_one_signs(
    client: Any, sessionmaker: Any, staff: dict[str, dict[str, str]]
) -> None:
    agreement = await issued_agreement(client, sessionmaker, staff)
    aid = agreement["id"]
    (_sid, token), (_sid2, token2) = await party_tokens(client, aid, staff)
    first = await party_signs(client, sessionmaker, aid, token2, "13900000002")
    assert first.status == 200
    headers = {"X-Signing-Token": token}
    base = f"/api/v1/agreements/{aid}/signing"
    await client.post(base + "/code", headers=headers)
    code = await last_code(sessionmaker, "13900000001")
    assert (
        await client.post(base + "/code/verify", json={"code": code}, headers=headers)
    ).status == 200
    clicks = await asyncio.gather(
        *(
            client.post(base + "/signature", json={"drawing": png_b64(i)}, headers=headers)
            for i in range(2)
        )
    )
    assert sorted(r.status for r in clicks) == [200, 409]
    loser = next(r for r in clicks if r.status == 409)
    assert await error_code(loser) == "already_signed"
    pdf = await (
        await client.get(f"/api/v1/agreements/{aid}/document", headers=staff["mediator"])
    ).read()
    report = await verify_pdf(pdf, client.app[ESIGN].authority.ca_cert_asn1)
    assert report.ok and len(report.signatures) == 3  # issue + two parties, not three


async def test_parallel_signers_at_once_both_land(
    client: Any, sessionmaker: Any, staff: dict[str, dict[str, str]]
) -> None:
    agreement = await issued_agreement(client, sessionmaker, staff)
    aid = agreement["id"]
    tokens = await party_tokens(client, aid, staff)
    base = f"/api/v1/agreements/{aid}/signing"
    for (_sid, token), phone in zip(tokens, ("13900000001", "13900000002"), strict=True):
        await client.post(base + "/code", headers={"X-Signing-Token": token})
        code = await last_code(sessionmaker, phone)
        await client.post(
            base + "/code/verify", json={"code": code}, headers={"X-Signing-Token": token}
        )
    results = await asyncio.gather(
        *(
            client.post(
                base + "/signature", json={"drawing": png_b64(i)}, headers={"X-Signing-Token": t}
            )
            for i, (_sid, t) in enumerate(tokens)
        )
    )
    assert [r.status for r in results] == [200, 200]
    pdf = await (
        await client.get(f"/api/v1/agreements/{aid}/document", headers=staff["mediator"])
    ).read()
    report = await verify_pdf(pdf, client.app[ESIGN].authority.ca_cert_asn1)
    assert report.ok and len(report.signatures) == 3


async def test_sequential_order_is_enforced(
    client: Any, sessionmaker: Any, staff: dict[str, dict[str, str]]
) -> None:
    agreement = await issued_agreement(client, sessionmaker, staff, order="sequential")
    aid = agreement["id"]
    (_s1, first), (_s2, second) = await party_tokens(client, aid, staff)
    resp = await party_signs(client, sessionmaker, aid, second, "13900000002")
    assert resp.status == 409 and await error_code(resp) == "signing_not_your_turn"
    assert (await party_signs(client, sessionmaker, aid, first, "13900000001")).status == 200
    headers = {"X-Signing-Token": second}
    resp = await client.post(
        f"/api/v1/agreements/{aid}/signing/signature", json={"drawing": png_b64()}, headers=headers
    )
    assert resp.status == 200, await resp.text()


async def test_a_party_sees_only_their_own_agreement(
    client: Any, sessionmaker: Any, staff: dict[str, dict[str, str]]
) -> None:
    mine = await issued_agreement(client, sessionmaker, staff)
    other = await issued_agreement(client, sessionmaker, staff)
    (_sid, token), _ = await party_tokens(client, mine["id"], staff)
    headers = {"X-Signing-Token": token}
    assert (await client.get(f"/api/v1/agreements/{mine['id']}", headers=headers)).status == 200
    for path in ("", "/document"):
        resp = await client.get(f"/api/v1/agreements/{other['id']}{path}", headers=headers)
        assert resp.status == 403, path
    for path in ("/signing/view", "/signing/code"):
        assert (
            await client.post(f"/api/v1/agreements/{other['id']}{path}", headers=headers)
        ).status == 403
    # A party's view does not show other signers' contact or network details.
    data = await (await client.get(f"/api/v1/agreements/{mine['id']}", headers=headers)).json()
    assert "signed_ip" not in data["signers"][1] and "versions" not in data
    # Staff actions are not for a signing link, and nobody gets in without a credential.
    resp = await client.post(f"/api/v1/agreements/{mine['id']}/issue", json={}, headers=headers)
    assert resp.status == 403
    assert (await client.get(f"/api/v1/agreements/{mine['id']}")).status == 401
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    resp = await client.get(f"/api/v1/agreements/{mine['id']}", headers={"X-Signing-Token": forged})
    assert resp.status == 403 and await error_code(resp) == "signing_link_invalid"
    # A mediator of another case sees nothing either.
    assert (
        await client.get(f"/api/v1/agreements/{mine['id']}", headers=staff["mediator2"])
    ).status == 403


async def test_draft_change_voids_pending_signatures(
    client: Any, sessionmaker: Any, staff: dict[str, dict[str, str]]
) -> None:
    agreement = await issued_agreement(client, sessionmaker, staff)
    aid = agreement["id"]
    (_s1, first), (_s2, second) = await party_tokens(client, aid, staff)
    assert (await party_signs(client, sessionmaker, aid, first, "13900000001")).status == 200
    changed = copy.deepcopy(TERMS)
    changed["items"][0] = changed["items"][0].replace("12月31日", "11月30日")
    resp = await client.post(
        f"/api/v1/agreements/{aid}/versions", json={"terms": changed}, headers=staff["mediator"]
    )
    assert resp.status == 201, await resp.text()
    data = await resp.json()
    assert data["status"] == "draft" and data["version"]["number"] == 2
    assert [v["status"] for v in data["versions"]] == ["void", "draft"]
    resp = await client.post(
        f"/api/v1/agreements/{aid}/signing/code", headers={"X-Signing-Token": second}
    )
    assert resp.status == 409 and await error_code(resp) == "agreement_version_void"
    resp = await client.post(f"/api/v1/agreements/{aid}/issue", json={}, headers=staff["mediator"])
    assert resp.status == 200
    fresh = await party_tokens(client, aid, staff)
    assert {t for _s, t in fresh}.isdisjoint({first, second})
    reissued = await resp.json()
    assert all(s["status"] == "pending" for s in reissued["signers"])
    assert reissued["version"]["document_id"] != agreement["version"]["document_id"]


async def test_postal_route_for_family_matters(
    client: Any, sessionmaker: Any, staff: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    agreement = await issued_agreement(client, sessionmaker, staff, category="family")
    aid = agreement["id"]
    assert agreement["route"] == "postal"
    parties = [s for s in agreement["signers"] if s["kind"] == "party"]
    assert all(s["route"] == "postal" for s in parties)
    # The print-ready copy has signature and fingerprint blocks.
    pdf = await (
        await client.get(f"/api/v1/agreements/{aid}/document", headers=staff["mediator"])
    ).read()
    (tmp_path / "print.pdf").write_bytes(pdf)
    text = tool(["pdftotext", str(tmp_path / "print.pdf"), "-"])
    assert "指印" in text and "电子签名法" in text.replace("\n", "")
    # No one-time codes on the postal route; the return needs a dispatch first.
    (sid, token), _ = await party_tokens(client, aid, staff) or [(0, ""), (0, "")]
    first = parties[0]["id"]
    scan = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (60, 80), "white").save(scan, "PNG")
    ret = f"/api/v1/agreements/{aid}/signers/{first}/return?carrier=EMS&tracking_number=R2&returned_on=2026-11-30"
    resp = await client.post(
        ret, data=scan.getvalue(), headers={**staff["mediator"], "Content-Type": "image/png"}
    )
    assert resp.status == 409 and await error_code(resp) == "postal_not_dispatched"
    for s in parties:
        resp = await client.post(
            f"/api/v1/agreements/{aid}/signers/{s['id']}/dispatch",
            json={
                "carrier": "中国邮政EMS",
                "tracking_number": f"E{s['id']}CN",
                "sent_on": "2026-11-23",
            },
            headers=staff["mediator"],
        )
        assert resp.status == 201, await resp.text()
    state = await (await client.get(f"/api/v1/agreements/{aid}", headers=staff["mediator"])).json()
    assert [x["status"] for x in state["shipments"]] == ["dispatched", "dispatched"]
    # Not a scan type: refused.
    resp = await client.post(
        ret, data=b"hello", headers={**staff["mediator"], "Content-Type": "text/plain"}
    )
    assert resp.status == 422
    # A phone photo of the page is larger than an ordinary request may be (2 MiB here).
    big = io.BytesIO()
    Image.frombytes("RGB", (1100, 1000), os.urandom(1100 * 1000 * 3)).save(big, "PNG")
    assert len(big.getvalue()) > 3 * 1024 * 1024
    for s, body in zip(parties, (io.BytesIO(big.getvalue()), scan.getvalue()), strict=True):
        resp = await client.post(
            f"/api/v1/agreements/{aid}/signers/{s['id']}/return?carrier=EMS&tracking_number=R{s['id']}&returned_on=2026-11-30",
            data=body,
            headers={**staff["mediator"], "Content-Type": "image/png"},
        )
        assert resp.status == 201, await resp.text()
        assert (await resp.json())["evidence_item_number"] >= 1
    state = await (await client.get(f"/api/v1/agreements/{aid}", headers=staff["mediator"])).json()
    assert [x["status"] for x in state["shipments"]] == ["returned", "returned"]
    assert all(
        x["document_sha256"] == state["version"]["issued_sha256"] for x in state["shipments"]
    )
    # The scans are evidence of the case, with the agreement's hash in their purpose.
    ev = await (
        await client.get(f"/api/v1/cases/{state['case_id']}/evidence", headers=staff["mediator"])
    ).json()
    assert len(ev["items"]) == 2 and state["version"]["issued_sha256"] in ev["items"][0]["purpose"]
    # Then the mediator and the seal, electronically.
    for kind, who, body in (
        ("mediator", "mediator", {"drawing": png_b64()}),
        ("seal", "admin", {}),
    ):
        resp = await client.post(
            f"/api/v1/agreements/{aid}/signers/{signer_id(agreement, kind)}/signature",
            json=body,
            headers=staff[who],
        )
        assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "effective"


async def test_judicial_package_and_reminder(
    client: Any, sessionmaker: Any, staff: dict[str, dict[str, str]]
) -> None:
    agreement = await issued_agreement(client, sessionmaker, staff)
    aid = agreement["id"]
    resp = await client.get(f"/api/v1/agreements/{aid}/judicial-package", headers=staff["mediator"])
    assert resp.status == 409  # not in force yet
    for (_sid, token), phone in zip(
        await party_tokens(client, aid, staff), ("13900000001", "13900000002"), strict=True
    ):
        assert (await party_signs(client, sessionmaker, aid, token, phone)).status == 200
    for kind, who, body in (
        ("mediator", "mediator", {"drawing": png_b64()}),
        ("seal", "admin", {}),
    ):
        await client.post(
            f"/api/v1/agreements/{aid}/signers/{signer_id(agreement, kind)}/signature",
            json=body,
            headers=staff[who],
        )
    resp = await client.get(f"/api/v1/agreements/{aid}/judicial-package", headers=staff["mediator"])
    assert resp.status == 200 and resp.content_type == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(await resp.read())).namelist()
    assert names[0] == "01-司法确认申请书.pdf"
    assert any(n.startswith("02-调解协议书") for n in names) and "05-证据清单.csv" in names
    assert "06-审计记录证明.csv" in names and "07-调解笔录-说明.txt" in names
    package = zipfile.ZipFile(io.BytesIO(await resp.read()))
    certificate = await verify_pdf(
        package.read("06-审计记录证明.pdf"), client.app[ESIGN].authority.ca_cert_asn1
    )
    assert certificate.ok
    agreement_pdf = next(n for n in names if n.startswith("02-"))
    assert (
        await verify_pdf(package.read(agreement_pdf), client.app[ESIGN].authority.ca_cert_asn1)
    ).ok
    # The hook for a hearing-record module: its file goes into the package instead of the note.
    from cases.actor import Actor
    from cases.models import Case
    from cases.uow import transaction as unit_of_work
    from esign.judicial import do_export_package

    async def hearing_record(session: Any, case: Any) -> tuple[str, bytes]:
        return ("调解笔录.pdf", b"%PDF-1.4 record of " + str(case.id).encode())

    async with unit_of_work(sessionmaker) as session:
        agreement_row = await session.get(Agreement, aid)
        case_row = await session.get(Case, agreement_row.case_id)
        zipped = await do_export_package(
            session,
            Actor.system(),
            case_row,
            agreement_row,
            client.app[ESIGN].docs.font_path,
            client.app[ESIGN].authority,
            hearing_record=hearing_record,
        )
    names = zipfile.ZipFile(io.BytesIO(zipped)).namelist()
    assert "07-调解笔录.pdf" in names and "07-调解笔录-说明.txt" not in names
    # By default the package takes the case's frozen hearing record (notes): the PDF the
    # parties confirmed, byte for byte.
    import hashlib

    from notes.catalogue import RECORD
    from notes.models import NoteDocument

    frozen = b"%PDF-1.4 frozen hearing record"
    digest = hashlib.sha256(frozen).hexdigest()
    async with unit_of_work(sessionmaker) as session:
        agreement_row = await session.get(Agreement, aid)
        case_row = await session.get(Case, agreement_row.case_id)
        session.add(
            NoteDocument(
                key=f"test-record-{case_row.id}",
                kind=RECORD,
                case_id=case_row.id,
                frozen_at=dt.datetime.now(dt.UTC),
                frozen_pdf=frozen,
                frozen_sha256=digest,
            )
        )
        await session.flush()
        zipped = await do_export_package(
            session,
            Actor.system(),
            case_row,
            agreement_row,
            client.app[ESIGN].docs.font_path,
            client.app[ESIGN].authority,
        )
    package = zipfile.ZipFile(io.BytesIO(zipped))
    assert package.read(f"07-调解笔录-{digest[:12]}.pdf") == frozen
    # The reminder goes out once, when the deadline is near.
    from cases.notifications import OutboxSender
    from cases.uow import transaction
    from esign.judicial import do_send_reminders
    from web.agreements import sms_texts

    zh = sms_texts("zh_CN")

    now = dt.datetime.now(dt.UTC)
    async with transaction(sessionmaker) as session:
        assert (
            await do_send_reminders(session, Actor.system(), OutboxSender(session), now, 7, zh)
            == []
        )
        await session.execute(
            update(Agreement)
            .where(Agreement.id == aid)
            .values(effective_at=now - dt.timedelta(days=24))
        )
    async with transaction(sessionmaker) as session:
        assert await do_send_reminders(
            session, Actor.system(), OutboxSender(session), now, 7, zh
        ) == [aid]
    async with transaction(sessionmaker) as session:
        assert (
            await do_send_reminders(session, Actor.system(), OutboxSender(session), now, 7, zh)
            == []
        )
        bodies = list(
            await session.scalars(
                select(OutboxMessage.body).where(OutboxMessage.body.contains("司法确认"))
            )
        )
    assert len(bodies) == 2  # one per party


async def test_typed_name_only_where_allowed(
    client: Any, sessionmaker: Any, staff: dict[str, dict[str, str]]
) -> None:
    agreement = await issued_agreement(client, sessionmaker, staff)
    aid = agreement["id"]
    (_sid, token), _ = await party_tokens(client, aid, staff)
    headers = {"X-Signing-Token": token}
    base = f"/api/v1/agreements/{aid}/signing"
    await client.post(base + "/code", headers=headers)
    code = await last_code(sessionmaker, "13900000001")
    assert (
        await client.post(base + "/code/verify", json={"code": code}, headers=headers)
    ).status == 200
    resp = await client.post(
        base + "/signature", json={"typed_name": "宜昌某电池材料有限公司"}, headers=headers
    )
    assert resp.status == 422 and await error_code(resp) == "typed_name_not_allowed"
    # The mediator allows it: a new version, issued again.
    resp = await client.post(
        f"/api/v1/agreements/{aid}/versions",
        json={"terms": TERMS, "allow_typed_name": True},
        headers=staff["mediator"],
    )
    assert resp.status == 201 and (await resp.json())["allow_typed_name"] is True
    assert (
        await client.post(f"/api/v1/agreements/{aid}/issue", json={}, headers=staff["mediator"])
    ).status == 200
    (_sid, token), _ = await party_tokens(client, aid, staff)
    headers = {"X-Signing-Token": token}
    await client.post(base + "/code", headers=headers)
    code = await last_code(sessionmaker, "13900000001")
    assert (
        await client.post(base + "/code/verify", json={"code": code}, headers=headers)
    ).status == 200
    resp = await client.post(base + "/signature", json={"typed_name": "别人"}, headers=headers)
    assert resp.status == 422 and await error_code(resp) == "typed_name_mismatch"
    resp = await client.post(
        base + "/signature", json={"typed_name": "宜昌某电池材料有限公司"}, headers=headers
    )
    assert resp.status == 200, await resp.text()
    pdf = await (
        await client.get(f"/api/v1/agreements/{aid}/document", headers=staff["mediator"])
    ).read()
    report = await verify_pdf(pdf, client.app[ESIGN].authority.ca_cert_asn1)
    assert report.ok and len(report.signatures) == 2


async def test_nobody_signs_for_a_party_and_codes_are_not_spammed(
    client: Any, sessionmaker: Any, staff: dict[str, dict[str, str]]
) -> None:
    agreement = await issued_agreement(client, sessionmaker, staff)
    aid = agreement["id"]
    (sid, token), _ = await party_tokens(client, aid, staff)
    headers = {"X-Signing-Token": token}
    base = f"/api/v1/agreements/{aid}/signing"
    assert (await client.post(base + "/code", headers=headers)).status == 200
    resp = await client.post(base + "/code", headers=headers)
    assert resp.status == 409 and await error_code(resp) == "signing_code_too_soon"
    code = await last_code(sessionmaker, "13900000001")
    assert (
        await client.post(base + "/code/verify", json={"code": code}, headers=headers)
    ).status == 200
    # Even right after the party confirmed their code, staff cannot sign in their place.
    for who in ("mediator", "admin"):
        resp = await client.post(
            f"/api/v1/agreements/{aid}/signers/{sid}/signature",
            json={"drawing": png_b64()},
            headers=staff[who],
        )
        assert resp.status == 403 and await error_code(resp) == "signing_forbidden"


async def test_an_agent_signs_for_their_party(
    client: Any, sessionmaker: Any, staff: dict[str, dict[str, str]]
) -> None:
    from cases.models import Party

    case_id = await new_case(client, sessionmaker, staff)
    async with transaction(sessionmaker) as session:  # read, then write: as the server writes
        applicant = await session.scalar(
            select(Party).where(Party.case_id == case_id, Party.role == "applicant")
        )
        respondent = await session.scalar(
            select(Party).where(Party.case_id == case_id, Party.role == "respondent")
        )
        agent = await session.scalar(
            select(Party).where(Party.case_id == case_id, Party.role == "agent")
        )
        assert applicant and respondent and agent
        await session.execute(update(Party).where(Party.id == agent.id).values(phone="13900000009"))
    resp = await client.post(
        f"/api/v1/cases/{case_id}/agreements", json={"terms": TERMS}, headers=staff["mediator"]
    )
    aid = (await resp.json())["id"]
    resp = await client.post(
        f"/api/v1/agreements/{aid}/issue",
        json={"agent_party_ids": [respondent.id]},
        headers=staff["mediator"],
    )
    assert resp.status == 422 and await error_code(resp) == "agreement_no_agent"
    resp = await client.post(
        f"/api/v1/agreements/{aid}/issue",
        json={"agent_party_ids": [applicant.id]},
        headers=staff["mediator"],
    )
    assert resp.status == 200, await resp.text()
    first = (await resp.json())["signers"][0]
    assert first["name"] == "钱律师" and "委托代理人" in first["label"]
    (_sid, token), _ = await party_tokens(client, aid, staff)
    assert (await party_signs(client, sessionmaker, aid, token, "13900000009")).status == 200
    pdf = await (
        await client.get(f"/api/v1/agreements/{aid}/document", headers=staff["mediator"])
    ).read()
    report = await verify_pdf(pdf, client.app[ESIGN].authority.ca_cert_asn1)
    assert report.ok and report.signatures[1].signer == "钱律师"
    assert (
        "委托代理人" in report.signatures[1].unit
        and "宜昌某电池材料有限公司" in report.signatures[1].unit
    )
