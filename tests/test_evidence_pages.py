"""Evidence pages on both engines: the staff and party lists with previews (made once, stored
encrypted), examination through the party's page, the matrix, receipts whose proof verifies
independently, authorisation on every page route, and the housekeeping job."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import io
import re
from html import unescape
from typing import Any

import pytest
from PIL import Image
from reportlab.pdfgen import canvas
from sqlalchemy import func, select, update

from config import Settings
from evidence.models import EvidencePreview, EvidenceUpload, TreeHead
from tests.helpers import CSRF_RE, api_headers, login
from tests.test_evidence_api import other_case
from tests.test_evidence_support import (
    create_upload,
    leaf,
    party_token,
    root_from_path,
    upload,
)
from web.context import SETTINGS


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, seed_demo=False)


@pytest.fixture
async def staff(client: Any, demo_logins: dict[str, str]) -> dict[str, str]:
    return await api_headers(client, "mediator", demo_logins["mediator"])


def png_bytes(width: int = 900, height: int = 600) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def real_pdf() -> bytes:
    out = io.BytesIO()
    c = canvas.Canvas(out, invariant=1)  # same bytes every time
    c.drawString(100, 700, "Loan note")
    c.showPage()
    c.save()
    return out.getvalue()


def texts(html: str, attribute: str) -> list[str]:
    return [unescape(m) for m in re.findall(rf"<[^>]*{attribute}[^>]*>([^<]*)<", html)]


async def test_staff_page_lists_items_with_previews_made_once(
    client: Any, staff: dict[str, str], sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    assert (
        await upload(client, staff, png_bytes(), filename="照片.png", title="现场照片")
    ).status == 204
    assert (await upload(client, staff, real_pdf(), title="借条")).status == 204
    assert (
        await upload(client, staff, b"ID3\x04\x00" + bytes(300), filename="录音.mp3", title="录音")
    ).status == 204
    await login(client, "mediator", demo_logins["mediator"])
    page = await client.get("/cases/1/evidence")
    assert page.status == 200
    html = await page.text()
    assert "现场照片" in html and "借条" in html and 'id="upload-form"' in html
    assert html.count("data-preview") == 3
    # An image and a PDF get a real PNG preview, 320 px at most; audio an icon.
    for number in (1, 2):
        resp = await client.get(f"/cases/1/evidence/{number}/preview")
        assert resp.status == 200 and resp.headers["Content-Type"] == "image/png"
        with Image.open(io.BytesIO(await resp.read())) as image:
            assert max(image.size) <= 320 and min(image.size) > 50
    with Image.open(
        io.BytesIO(await (await client.get("/cases/1/evidence/1/preview")).read())
    ) as image:
        assert image.getpixel((10, 10))[0] > 150  # red, like the photo
    resp = await client.get("/cases/1/evidence/3/preview", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/static/img/evidence-audio.svg"
    # Made once: asking again adds no preview; the stored copy is encrypted.
    again = await client.get("/cases/1/evidence/1/preview")
    assert again.status == 200
    async with sessionmaker() as session:
        rows = (
            await session.scalars(select(EvidencePreview).order_by(EvidencePreview.item_id))
        ).all()
    assert [(r.item_id, r.status) for r in rows] == [(1, "ready"), (2, "ready"), (3, "unavailable")]
    data_dir = client.app[SETTINGS].data_dir
    stored = (data_dir / "evidence" / "blobs" / rows[0].blob_id[:2] / rows[0].blob_id).read_bytes()
    assert b"\x89PNG" not in stored
    # The matrix page, the receipt and the case page link.
    assert (await client.get("/cases/1/evidence/examination")).status == 200
    case_page = await (await client.get("/cases/1")).text()
    assert 'href="/cases/1/evidence"' in case_page


def ffmpeg_video(fmt: str) -> bytes:
    import subprocess

    return subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=duration=1:size=320x240:rate=5",
         "-pix_fmt", "yuv420p", "-movflags", "frag_keyframe+empty_moov", "-f", fmt, "pipe:1"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip


async def test_apple_formats_are_accepted_and_videos_get_a_frame(
    client: Any, staff: dict[str, str], demo_logins: dict[str, str]
) -> None:
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(500)
    assert (await upload(client, staff, heic, filename="IMG_0001.HEIC", title="照片")).status == 204
    mov = ffmpeg_video("mov")
    assert mov[4:12] == b"ftypqt  "
    assert (await upload(client, staff, mov, filename="IMG_0002.MOV", title="视频")).status == 204
    listing = await (await client.get("/api/v1/cases/1/evidence", headers=staff)).json()
    assert [i["file_type"] for i in listing["items"]] == ["heic", "mov"]
    await login(client, "mediator", demo_logins["mediator"])
    resp = await client.get("/cases/1/evidence/1/preview", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/static/img/evidence-heic.svg"
    resp = await client.get("/cases/1/evidence/2/preview")
    assert resp.status == 200 and resp.headers["Content-Type"] == "image/png"
    html = await (await client.get("/cases/1/evidence")).text()
    assert "苹果 HEIC 照片" in html


async def test_receipt_shows_a_proof_that_verifies(
    client: Any, staff: dict[str, str], demo_logins: dict[str, str]
) -> None:
    for n in range(3):
        assert (
            await upload(client, staff, real_pdf() + bytes([n]), title=f"证据{n}")
        ).status == 204
    await login(client, "mediator", demo_logins["mediator"])
    html = await (await client.get("/cases/1/evidence/2/receipt")).text()
    entry = unescape(re.search(r'<pre class="mono receipt-entry">([^<]*)</pre>', html).group(1))
    index = int(texts(html, "data-receipt-leaf")[0])
    size = int(texts(html, "data-receipt-tree-size")[0])
    root = texts(html, "data-receipt-root")[0]
    path_html = re.search(r"data-receipt-path>(.*?)</ol>", html, re.S).group(1)
    path = [bytes.fromhex(p) for p in re.findall(r"<li>([0-9a-f]{64})</li>", path_html)]
    assert root_from_path(index, size, leaf(entry.encode()), path).hex() == root
    assert '"event":"submitted"' in entry and texts(html, "data-receipt-number") == ["2"]
    assert "RFC 6962" in html


async def test_party_page_upload_form_examination_and_errors(
    client: Any, staff: dict[str, str], sessionmaker: Any
) -> None:
    applicant = await party_token(client, sessionmaker, 1, "applicant")
    respondent = await party_token(client, sessionmaker, 1, "respondent")
    assert (
        await upload(client, {"X-Hearing-Token": applicant}, real_pdf(), title="借条")
    ).status == 204
    # The applicant sees their item but no examination form for it; the respondent does.
    html = await (await client.get(f"/h/{applicant}/evidence")).text()
    assert "借条" in html and "stance_authenticity" not in html
    assert f'data-token="{applicant}"' in html
    page = await client.get(f"/h/{respondent}/evidence")
    assert page.headers["Referrer-Policy"] == "no-referrer"
    html = await page.text()
    assert "stance_authenticity" in html
    csrf = CSRF_RE.search(html).group(1)
    # A dispute without a reason: the page says why and keeps the form open.
    resp = await client.post(
        f"/h/{respondent}/evidence/1/opinions",
        data={"csrf_token": csrf, "stance_legality": "disputed"},
    )
    assert resp.status == 422
    assert "请说明不认可这份证据合法性的理由" in await resp.text()
    resp = await client.post(
        f"/h/{respondent}/evidence/1/opinions",
        data={
            "csrf_token": csrf,
            "stance_authenticity": "acknowledged",
            "stance_legality": "disputed",
            "reason_legality": "借条系事后补写",
        },
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
    html = await (await client.get(resp.headers["Location"])).text()
    assert "您的意见：不认可" in html and "借条系事后补写" in html
    # Correcting through the page is a new linked entry.
    opinion_id = re.search(r'name="corrects_legality" value="(\d+)"', html).group(1)
    resp = await client.post(
        f"/h/{respondent}/evidence/1/opinions",
        data={
            "csrf_token": csrf,
            "stance_legality": "acknowledged",
            "corrects_legality": opinion_id,
        },
        allow_redirects=False,
    )
    assert resp.status == 303
    grid = await (await client.get("/api/v1/cases/1/evidence/examination", headers=staff)).json()
    cell = next(
        c for c in grid["items"][0]["cells"] if c["property"] == "legality" and c["current"]
    )
    assert len(cell["history"]) == 2 and cell["current"]["corrects"] == int(opinion_id)
    # The applicant cannot examine their own item through the page either (same browser cookie).
    resp = await client.post(
        f"/h/{applicant}/evidence/1/opinions",
        data={"csrf_token": csrf, "stance_relevance": "acknowledged"},
    )
    assert resp.status == 403
    # Preview, receipt and content through the link.
    assert (await client.get(f"/h/{respondent}/evidence/1/preview")).status == 200
    assert (await client.get(f"/h/{respondent}/evidence/1/receipt")).status == 200
    content = await client.get(f"/h/{respondent}/evidence/1/content")
    assert content.status == 200 and await content.read() == real_pdf()
    # The pre-join page links to the evidence page.
    assert f'href="/h/{respondent}/evidence"' in await (await client.get(f"/h/{respondent}")).text()


async def test_evidence_pages_refuse_outsiders(
    client: Any, staff: dict[str, str], sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    assert (await upload(client, staff, real_pdf())).status == 204
    case2 = await other_case(client, demo_logins)
    stranger = await party_token(client, sessionmaker, case2, "applicant")
    # A party's link reaches only its own case: case 2 has no item 1.
    for path in ("preview", "receipt", "content"):
        assert (await client.get(f"/h/{stranger}/evidence/1/{path}")).status == 404
    # A forged link, and staff without business in case 1.
    assert (await client.get("/h/abc.def/evidence")).status == 403
    await login(client, "mediator2", demo_logins["mediator2"])
    for path in ("", "/examination", "/1/preview", "/1/receipt"):
        assert (await client.get(f"/cases/1/evidence{path}")).status == 403, path
    # Nobody signed in: the staff pages ask for a sign-in.
    client.session.cookie_jar.clear()
    resp = await client.get("/cases/1/evidence", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/login")


async def test_housekeeping_expires_abandoned_uploads_and_signs_tree_heads(
    client: Any, staff: dict[str, str], sessionmaker: Any
) -> None:
    from evidence import housekeeping
    from web.evidence import EVIDENCE

    rt = client.app[EVIDENCE].get()
    location = (await create_upload(client, staff, 5000)).headers["Location"]
    fresh = (await create_upload(client, staff, 5000)).headers["Location"]
    await client.patch(
        location,
        data=real_pdf()[:1000],
        headers={
            **staff,
            "Tus-Resumable": "1.0.0",
            "Content-Type": "application/offset+octet-stream",
            "Upload-Offset": "0",
        },
    )
    old_id = int(location.rsplit("/", 1)[1])
    async with sessionmaker() as session:
        await session.execute(
            update(EvidenceUpload)
            .where(EvidenceUpload.id == old_id)
            .values(updated_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=4))
        )
        await session.commit()
        blob_id = (await session.get(EvidenceUpload, old_id)).blob_id
    assert any(rt.store.pending.glob(f"{blob_id}.*"))
    assert (await upload(client, staff, real_pdf())).status == 204
    done = await housekeeping.run_once(
        sessionmaker, rt, dt.timedelta(hours=72), dt.timedelta(hours=1)
    )
    assert done.expired == 1 and done.signed is not None and done.signed.tree_size == 1
    assert not any(rt.store.pending.glob(f"{blob_id}.*"))
    assert (await client.head(location, headers={**staff, "Tus-Resumable": "1.0.0"})).status == 404
    assert (await client.head(fresh, headers={**staff, "Tus-Resumable": "1.0.0"})).status == 200
    # Not due again until the ledger grows and the interval passes.
    again = await housekeeping.run_once(
        sessionmaker, rt, dt.timedelta(hours=72), dt.timedelta(hours=1)
    )
    assert again.expired == 0 and again.signed is None
    # The heads are published, to anyone.
    public = await (await client.get("/api/v1/evidence/ledger/tree-heads")).json()
    assert [h["tree_size"] for h in public["tree_heads"]] == [1] and public["public_key"]
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(TreeHead)) == 1


async def test_a_damaged_copy_is_a_readable_error_page(
    client: Any, staff: dict[str, str], sessionmaker: Any, caplog: Any
) -> None:
    from evidence.models import EvidenceItem

    token = await party_token(client, sessionmaker, 1, "respondent")
    assert (await upload(client, staff, real_pdf())).status == 204
    async with sessionmaker() as session:
        item = await session.scalar(select(EvidenceItem))
    path = client.app[SETTINGS].data_dir / "evidence" / "blobs" / item.blob_id[:2] / item.blob_id
    raw = bytearray(path.read_bytes())
    raw[-40] ^= 0x01
    path.write_bytes(bytes(raw))
    resp = await client.get(f"/h/{token}/evidence/1/content")
    assert resp.status == 500
    assert "存储副本已损坏" in await resp.text()
    caplog.clear()  # the server rightly logged the damage


async def test_mediator_records_an_oral_opinion_on_the_matrix_page(
    client: Any, staff: dict[str, str], sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    from tests.test_evidence_examination import party_ids

    assert (await upload(client, staff, real_pdf(), title="借条")).status == 204
    ids = await party_ids(sessionmaker)
    csrf = await login(client, "mediator", demo_logins["mediator"])
    page = await (await client.get("/cases/1/evidence/examination")).text()
    assert 'id="record"' in page
    form = {
        "csrf_token": csrf,
        "number": "1",
        "party_id": str(ids["respondent"]),
        "property": "authenticity",
        "stance": "disputed",
    }
    resp = await client.post("/cases/1/evidence/examination", data=form)
    assert resp.status == 422 and "请说明不认可这份证据真实性的理由" in await resp.text()
    form["reason"] = "复印件，无原件核对"
    resp = await client.post("/cases/1/evidence/examination", data=form, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    # Again without ticking "correction": refused; ticked: a linked correction.
    form.update(stance="acknowledged", reason="")
    resp = await client.post("/cases/1/evidence/examination", data=form)
    assert resp.status == 409
    resp = await client.post(
        "/cases/1/evidence/examination", data={**form, "correction": "yes"}, allow_redirects=False
    )
    assert resp.status == 303
    html = await (await client.get(resp.headers["Location"])).text()
    assert "复印件，无原件核对" in html and "由工作人员记录" in html and "已更正" in html
    # Staff without business in the case cannot record.
    client.session.cookie_jar.clear()
    csrf = await login(client, "mediator2", demo_logins["mediator2"])
    resp = await client.post("/cases/1/evidence/examination", data={**form, "csrf_token": csrf})
    assert resp.status == 403


async def test_receipt_as_pdf_with_the_hash_and_the_proof(
    client: Any, staff: dict[str, str], sessionmaker: Any
) -> None:
    import hashlib
    import subprocess

    data = real_pdf()
    assert (await upload(client, staff, data, title="借条<b>&")).status == 204
    token = await party_token(client, sessionmaker, 1, "respondent")
    page = await (await client.get(f"/h/{token}/evidence/1/receipt")).text()
    assert f'href="/h/{token}/evidence/1/receipt.pdf"' in page
    resp = await client.get(f"/h/{token}/evidence/1/receipt.pdf")
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/pdf"
    pdf = await resp.read()
    assert pdf.startswith(b"%PDF") and b"/FontFile2" in pdf  # the CJK font is embedded
    done = await asyncio.to_thread(
        subprocess.run,
        ["pdftotext", "-layout", "-", "-"],
        input=pdf,
        capture_output=True,
        check=True,
    )
    text = done.stdout.decode()
    compact = "".join(text.split())
    assert "证据回执" in compact and "借条<b>&" in compact
    assert hashlib.sha256(data).hexdigest() in compact
    assert "如何核验本回执" in compact
    # A party of another case cannot fetch it for case 1's item (their link has no item 1).
    assert (await client.get("/h/forged.token/evidence/1/receipt.pdf")).status == 403
