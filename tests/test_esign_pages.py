"""Agreement pages on both engines: the mediator drafts, previews, issues and signs through the
case's agreement page (CSRF forms); a party's link opens their signing page (a bad one gets a
readable 403 page); the public verification page judges uploaded PDFs; the CA certificate and
the RFC 3161 endpoint answer."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import FormData
from asn1crypto import algos, tsp

from tests.helpers import api_headers, login
from tests.test_esign_api import TERMS, issued_agreement, new_case, party_signs, png_b64, signer_id
from web.agreements import ESIGN


async def test_mediator_drafts_previews_issues_and_signs(
    client: Any, sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    staff = {
        n: await api_headers(client, n, demo_logins[n]) for n in ("clerk", "mediator", "admin")
    }
    case_id = await new_case(client, sessionmaker, staff)
    csrf = await login(client, "mediator", demo_logins["mediator"])
    page = await client.get(f"/cases/{case_id}/agreements")
    assert page.status == 200
    html = await page.text()
    assert (
        "data-agreement-editor" in html and "买卖合同货款" in html
    )  # the draft starts from the case
    # Live preview: the same template as the PDF, masked ID number, escaped user text.
    preview = await client.post(
        f"/api/v1/cases/{case_id}/agreements/preview",
        json={**TERMS, "extra": "<b>不得</b>"},
        headers={"X-CSRF-Token": csrf},
    )
    text = (await preview.json())["text"]
    assert "# 人民调解协议书" in text and "3301**********1232" in text and "&lt;b&gt;" in text
    form = {
        "csrf_token": csrf,
        "action": "create",
        "facts": TERMS["facts"],
        "dispute": TERMS["dispute"],
        "responsibilities": "",
        "items": "\n".join(TERMS["items"]),
        "performance_manner": TERMS["performance_manner"],
        "performance_place": TERMS["performance_place"],
        "performance_deadline": TERMS["performance_deadline"],
        "copies": "3",
        "signing_order": "parallel",
        "extra": "",
    }
    resp = await client.post(f"/cases/{case_id}/agreements", data=form)
    assert resp.status == 200, await resp.text()
    html = await resp.text()
    agreement_id = int(re.search(r'name="agreement_id" value="(\d+)"', html).group(1))  # type: ignore[union-attr]
    resp = await client.post(
        f"/cases/{case_id}/agreements",
        data={"csrf_token": csrf, "action": "share", "agreement_id": str(agreement_id)},
    )
    assert resp.status == 200 and "data-review-links" in await resp.text()
    # A missing field comes back as a readable error on the page, not a 500.
    resp = await client.post(
        f"/cases/{case_id}/agreements",
        data={
            **form,
            "action": "update",
            "agreement_id": str(agreement_id),
            "performance_place": "",
        },
    )
    assert resp.status == 422 and "履行地点" in await resp.text()
    resp = await client.post(
        f"/cases/{case_id}/agreements",
        data={"csrf_token": csrf, "action": "issue", "agreement_id": str(agreement_id)},
    )
    assert resp.status == 200
    html = await resp.text()
    links = re.findall(r'value="(http[^"]+/sign/[^"]+)"', html)
    assert len(links) == 2
    # Without the CSRF token nothing happens.
    resp = await client.post(
        f"/cases/{case_id}/agreements", data={"action": "issue", "agreement_id": str(agreement_id)}
    )
    assert resp.status == 403
    # The parties sign through the API (their page's script does the same), in a browser
    # without the mediator's session.
    client.session.cookie_jar.clear()
    for link, phone in zip(links, ("13900000001", "13900000002"), strict=True):
        token = link.rsplit("/sign/", 1)[1]
        page = await client.get(f"/sign/{token}")
        assert page.status == 200 and "data-sign" in await page.text()
        assert page.headers["Referrer-Policy"] == "no-referrer"
        assert (await party_signs(client, sessionmaker, agreement_id, token, phone)).status == 200
    # The mediator signs on the page with a drawing.
    csrf = await login(client, "mediator", demo_logins["mediator"])
    detail = await (
        await client.get(f"/api/v1/agreements/{agreement_id}", headers=staff["mediator"])
    ).json()
    resp = await client.post(
        f"/cases/{case_id}/agreements",
        data={
            "csrf_token": csrf,
            "action": "sign",
            "agreement_id": str(agreement_id),
            "signer_id": str(signer_id(detail, "mediator")),
            "drawing": png_b64(3),
        },
    )
    assert resp.status == 200, await resp.text()
    assert 'data-signer-status="signed"' in await resp.text()
    # The case page shows where the agreement stands.
    case_page = await (await client.get(f"/cases/{case_id}")).text()
    assert "data-agreement-summary" in case_page and "已签 3 / 共 4" in case_page


async def test_bad_signing_link_gets_a_readable_page(client: Any) -> None:
    resp = await client.get("/sign/not-a-token")
    assert resp.status == 403
    html = await resp.text()
    assert "签署链接无效" in html


async def test_verification_page_and_ca_and_tsa(
    client: Any, sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    staff = {
        n: await api_headers(client, n, demo_logins[n]) for n in ("clerk", "mediator", "admin")
    }
    agreement = await issued_agreement(client, sessionmaker, staff)
    aid = agreement["id"]
    doc_id = agreement["version"]["document_id"]
    page = await client.get(f"/agreements/verify?id={doc_id}")
    assert page.status == 200 and doc_id in await page.text()
    unknown = await client.get("/agreements/verify?id=YT-NOPE")
    assert "没有" in await unknown.text()
    pdf = await (
        await client.get(f"/api/v1/agreements/{aid}/document", headers=staff["mediator"])
    ).read()
    form_page = await client.get("/agreements/verify")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', await form_page.text()).group(1)  # type: ignore[union-attr]

    async def upload(data: bytes) -> str:
        form = FormData()
        form.add_field("csrf_token", csrf)
        form.add_field("file", data, filename="a.pdf", content_type="application/pdf")
        resp = await client.post("/agreements/verify", data=form)
        assert resp.status == 200
        return await resp.text()

    good = await upload(pdf)
    assert (
        'data-verdict="genuine"' in good
        and "宜昌某电池材料有限公司" in good
        or 'data-verdict="genuine"' in good
    )
    changed = bytearray(pdf)
    changed[pdf.index(b"ReportLab PDF Library")] = ord("Q")
    bad = await upload(bytes(changed))
    assert 'data-verdict="not-genuine"' in bad and "改动" in bad
    ca = await client.get("/agreements/ca.pem")
    assert ca.status == 200 and b"BEGIN CERTIFICATE" in await ca.read()
    request = tsp.TimeStampReq(
        {
            "version": 1,
            "message_imprint": {
                "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                "hashed_message": b"\x01" * 32,
            },
            "cert_req": True,
        }
    )
    resp = await client.post(
        "/api/v1/tsa", data=request.dump(), headers={"Content-Type": "application/timestamp-query"}
    )
    assert resp.status == 200 and resp.content_type == "application/timestamp-reply"
    reply = tsp.TimeStampResp.load(await resp.read())
    assert reply["status"]["status"].native == "granted"
    resp = await client.post(
        "/api/v1/tsa", data=b"junk", headers={"Content-Type": "application/timestamp-query"}
    )
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "tsa_request_invalid"
    assert client.app[ESIGN].authority.ca_pem.startswith(b"-----BEGIN CERTIFICATE")


async def test_parties_review_the_draft_and_comment(
    client: Any, sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    staff = {
        n: await api_headers(client, n, demo_logins[n]) for n in ("clerk", "mediator", "admin")
    }
    case_id = await new_case(client, sessionmaker, staff)
    resp = await client.post(
        f"/api/v1/cases/{case_id}/agreements", json={"terms": TERMS}, headers=staff["mediator"]
    )
    aid = (await resp.json())["id"]
    resp = await client.post(f"/api/v1/agreements/{aid}/share", headers=staff["mediator"])
    assert resp.status == 200, await resp.text()
    links = (await resp.json())["links"]
    assert len(links) == 2
    # Each party got their link by text message.
    from sqlalchemy import select

    from cases.notifications import OutboxMessage

    async with sessionmaker() as session:
        bodies = list(
            await session.scalars(
                select(OutboxMessage.body).where(OutboxMessage.body.contains("/review/"))
            )
        )
    assert len(bodies) == 2
    path = links[1]["url"].split("://", 1)[1].split("/", 1)[1]
    page = await client.get("/" + path)
    assert page.status == 200
    html = await page.text()
    assert "申请人放弃主张逾期付款利息" in html and "3301**********1232" in html
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    resp = await client.post(
        "/" + path, data={"csrf_token": csrf, "text": "付款期限请改为11月30日。"}
    )
    assert resp.status == 200 and "意见已发送" in await resp.text()
    detail = await (await client.get(f"/api/v1/agreements/{aid}", headers=staff["mediator"])).json()
    assert detail["comments"][0]["author"] == "孙某"
    assert "11月30日" in detail["comments"][0]["text"]
    # A forged link, and a link to a draft that has since changed, get readable pages.
    assert (await client.get("/review/forged")).status == 403
    await client.post(
        f"/api/v1/agreements/{aid}/versions", json={"terms": TERMS}, headers=staff["mediator"]
    )
    old = await client.get("/" + path)
    assert old.status == 409 and "草稿已更新" in await old.text()
