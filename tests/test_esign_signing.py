"""Signing without the database: the platform CA and TSA, one-time signer keys, PAdES
signatures as incremental updates, the seal, and what pyHanko and poppler's ``pdfsig`` say
about the result — valid when untouched; a changed byte or an appended page detected."""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from reportlab.platypus import Paragraph

from config import Settings
from documents.pdf import PageMarks, Slot, grid, render, styles
from esign import pki, signing, stamps, verify

CASE_NO = "（2026）伍联调字第12号"


def drawing_png(seed: int = 0) -> bytes:
    image = Image.new("RGBA", (300, 120), (0, 0, 0, 0))
    ImageDraw.Draw(image).line(
        [(10, 80), (80 + seed, 20), (150, 90), (280, 30)], fill=(0, 0, 0, 255), width=5
    )
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def pdfsig(pdf: bytes, tmp_path: Path, nss_dir: Path | None = None) -> list[dict[str, str]]:
    """pdfsig's report, one dict per signature (its "  - Key: value" lines). With ``nss_dir``
    (an NSS database holding the platform CA) it checks the chains against it; without, it
    skips OCSP. poppler 22.12 with ``-no-ocsp`` reports even a trusted chain as "Unknown issue
    with Certificate", so the trusting run goes without it — our certificates name no OCSP
    responder, so nothing is fetched (as root it runs without a network to make sure)."""
    path = tmp_path / "check.pdf"
    path.write_bytes(pdf)
    args = ["pdfsig", "-no-ocsp", str(path)]
    if nss_dir is not None:
        args = ["pdfsig", "-nssdir", f"sql:{nss_dir}", str(path)]
        if os.geteuid() == 0 and shutil.which("unshare"):
            args = ["unshare", "-n", *args]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60).stdout
    blocks = re.split(r"^Signature #\d+:$", out, flags=re.M)[1:]
    result = []
    for block in blocks:
        entry: dict[str, str] = {}
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("- ") and ":" in line:
                key, _, value = line[2:].partition(":")
                entry[key.strip()] = value.strip()
            elif line.startswith("- "):
                entry[line[2:].strip()] = ""
        result.append(entry)
    return result


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("esign-data")


@pytest.fixture(scope="module")
def authority(data_dir: Path) -> pki.Authority:
    return pki.load_authority(Settings(data_dir=data_dir))


@pytest.fixture(scope="module")
def signed(authority: pki.Authority) -> bytes:
    return asyncio.run(sign_all(authority))


async def sign_all(authority: pki.Authority) -> bytes:
    font = Settings().document_font_path
    st = styles(font)
    flow = [Paragraph("人民调解协议书", st.title)]
    flow += [
        Paragraph(f"第{i}条 乙方于2026年12月31日前支付甲方人民币伍万元整。", st.body)
        for i in range(40)
    ]
    flow.append(
        grid(
            [
                [Slot("party-1", 160, 60), Slot("party-2", 160, 60)],
                [Slot("mediator", 160, 60), Slot("seal", 130, 130)],
            ]
        )
    )
    rendered = render(flow, PageMarks("YT-TEST-1", CASE_NO, "http://x.test/verify"), font)
    places = [
        signing.FieldPlace(name, box.page, box.rect, locks_document=name == "seal")
        for name, box in rendered.boxes.items()
    ]
    pdf = await signing.issue(
        rendered.data,
        places,
        authority.issue_signer("伍家岗区人民调解委员会", CASE_NO, role="签发"),
        authority.timestamper,
        name="org",
    )
    for field, who, seed in (
        ("party-1", "张三", 0),
        ("party-2", "李四", 9),
        ("mediator", "王五", 20),
    ):
        pdf = await signing.sign_field(
            pdf,
            field,
            authority.issue_signer(who, CASE_NO, role="当事人"),
            authority.timestamper,
            image=signing.signature_image(drawing_png(seed)),
            name=who,
        )
    return await signing.sign_field(
        pdf,
        "seal",
        authority.issue_signer("伍家岗区人民调解委员会", CASE_NO, role="印章"),
        authority.timestamper,
        seal_pdf=stamps.seal_pdf("伍家岗区人民调解委员会", font),
        name="seal",
        final=True,
    )


def test_keys_generated_once_private_files_0600(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first = pki.load_authority(settings)
    again = pki.load_authority(settings)
    assert first.ca_pem == again.ca_pem
    for name in ("ca.key", "tsa.key"):
        assert stat.S_IMODE((tmp_path / "esign" / name).stat().st_mode) == 0o600
    assert b"BEGIN CERTIFICATE" in first.ca_pem


def test_each_signature_has_its_own_key(authority: pki.Authority) -> None:
    a = authority.issue_signer("张三", CASE_NO)
    b = authority.issue_signer("张三", CASE_NO)
    assert a.signing_cert.public_key.dump() != b.signing_cert.public_key.dump()
    assert a.signing_cert.issuer == authority.ca_cert_asn1.subject
    assert a.signing_cert.subject.native["common_name"] == "张三"


async def test_pyhanko_every_signature_valid_and_trusted(
    signed: bytes, authority: pki.Authority
) -> None:
    report = await verify.verify_pdf(signed, authority.ca_cert_asn1)
    assert report.ok, report.problem
    assert [s.field for s in report.signatures] == [
        "issue",
        "party-1",
        "party-2",
        "mediator",
        "seal",
    ]
    assert [s.signer for s in report.signatures][1:4] == ["张三", "李四", "王五"]
    for sig in report.signatures:
        assert sig.bottom_line and sig.intact and sig.trusted and sig.timestamped
    assert report.signatures[0].certification
    assert report.signatures[-1].covers_whole_file


async def test_other_ca_is_not_trusted(signed: bytes, tmp_path: Path) -> None:
    stranger = pki.load_authority(Settings(data_dir=tmp_path))
    report = await verify.verify_pdf(signed, stranger.ca_cert_asn1)
    assert not report.ok and not any(s.trusted for s in report.signatures)


def test_pdfsig_reports_every_signature_valid(signed: bytes, tmp_path: Path) -> None:
    sigs = pdfsig(signed, tmp_path)
    assert {s["Signature Field Name"] for s in sigs} == {
        "issue",
        "party-1",
        "party-2",
        "mediator",
        "seal",
    }
    for sig in sigs:
        assert sig["Signature Validation"] == "Signature is Valid.", sig
        assert sig["Signature Type"] == "ETSI.CAdES.detached"
        # Without the platform CA in an NSS database poppler cannot build the chain: it says
        # so, and still checks the signature itself (above). `GET /agreements/ca.pem` is the CA.
        assert sig["Certificate Validation"] in (
            "Certificate issuer isn't Trusted.",
            "Certificate issuer is unknown.",
        )
    seal = next(s for s in sigs if s["Signature Field Name"] == "seal")
    assert "Total document signed" in seal
    assert sum("Total document signed" in s for s in sigs) == 1


def nss_database(ca_pem: Path, directory: Path) -> Path:
    """An NSS database (what poppler checks certificates against) trusting ``ca_pem``."""
    directory.mkdir()
    for args in (
        ["-N", "--empty-password"],
        ["-A", "-n", "yuntiao-ca", "-t", "CT,C,C", "-i", str(ca_pem)],
    ):
        subprocess.run(
            ["certutil", *args, "-d", f"sql:{directory}"], check=True, capture_output=True
        )
    return directory


def test_pdfsig_trusts_every_signature_given_the_platform_ca(
    signed: bytes, data_dir: Path, authority: pki.Authority, tmp_path: Path
) -> None:
    # The CA as the platform keeps it (and serves it at /agreements/ca.pem).
    ca_pem = data_dir / "esign" / "ca.pem"
    assert ca_pem.read_bytes() == authority.ca_pem
    # No certificate in the document names an OCSP responder or a CRL: nothing to fetch.
    reader = PdfFileReader(io.BytesIO(signed))
    certs = [c.chosen for s in reader.embedded_signatures for c in s.signed_data["certificates"]]
    assert len(certs) >= 5
    for cert in certs:
        assert cert.authority_information_access_value is None, cert.subject.human_friendly
        assert cert.crl_distribution_points_value is None, cert.subject.human_friendly
    sigs = pdfsig(signed, tmp_path, nss_database(ca_pem, tmp_path / "nss"))
    assert sorted(s["Signature Field Name"] for s in sigs) == sorted(
        ["issue", "party-1", "party-2", "mediator", "seal"]
    )
    for sig in sigs:
        assert sig["Signature Validation"] == "Signature is Valid.", sig
        assert sig["Certificate Validation"] == "Certificate is Trusted.", sig


def test_pdfsig_does_not_trust_another_ca(signed: bytes, tmp_path: Path) -> None:
    stranger = pki.load_authority(Settings(data_dir=tmp_path / "other"))
    ca_pem = tmp_path / "other-ca.pem"
    ca_pem.write_bytes(stranger.ca_pem)
    sigs = pdfsig(signed, tmp_path, nss_database(ca_pem, tmp_path / "nss"))
    assert len(sigs) == 5
    for sig in sigs:
        assert sig["Signature Validation"] == "Signature is Valid.", sig
        assert sig["Certificate Validation"] != "Certificate is Trusted.", sig


def changed_byte(pdf: bytes) -> bytes:
    """One byte of the signed content changed (the producer string), same length."""
    at = pdf.index(b"ReportLab PDF Library")
    return pdf[:at] + b"Q" + pdf[at + 1 :]


def appended_page(pdf: bytes) -> bytes:
    """A blank page added by an incremental update after the signatures."""
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    page = generic.DictionaryObject(
        {
            generic.NameObject("/Type"): generic.NameObject("/Page"),
            generic.NameObject("/MediaBox"): generic.ArrayObject(
                [generic.NumberObject(n) for n in (0, 0, 595, 842)]
            ),
        }
    )
    writer.insert_page(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


async def test_changed_byte_detected(
    signed: bytes, authority: pki.Authority, tmp_path: Path
) -> None:
    tampered = changed_byte(signed)
    assert len(tampered) == len(signed)
    report = await verify.verify_pdf(tampered, authority.ca_cert_asn1)
    assert not report.ok
    assert not any(s.intact for s in report.signatures)
    assert all(
        s["Signature Validation"] != "Signature is Valid." for s in pdfsig(tampered, tmp_path)
    )


async def test_appended_page_detected(signed: bytes, authority: pki.Authority) -> None:
    report = await verify.verify_pdf(appended_page(signed), authority.ca_cert_asn1)
    assert not report.ok
    assert all(s.intact for s in report.signatures)  # the bytes signed are still there …
    assert not report.signatures[-1].covers_whole_file  # … but something came after them
    assert not all(s.bottom_line for s in report.signatures)  # and it breaks the locks


async def test_not_a_pdf_and_unsigned_pdf(authority: pki.Authority) -> None:
    assert (await verify.verify_pdf(b"hello", authority.ca_cert_asn1)).problem
    font = Settings().document_font_path
    plain = render([Paragraph("无签名", styles(font).body)], PageMarks("X"), font).data
    report = await verify.verify_pdf(plain, authority.ca_cert_asn1)
    assert not report.ok and report.signatures == []


def test_signature_image_refuses_non_png_and_empty() -> None:
    with pytest.raises(signing.BadImage):
        signing.signature_image(b"GIF89a....")
    blank = io.BytesIO()
    Image.new("RGBA", (100, 50), (0, 0, 0, 0)).save(blank, "PNG")
    with pytest.raises(signing.BadImage):
        signing.signature_image(blank.getvalue())


def test_timestamp_endpoint_answers_rfc3161(authority: pki.Authority) -> None:
    from asn1crypto import algos, tsp

    request = tsp.TimeStampReq(
        {
            "version": 1,
            "message_imprint": tsp.MessageImprint(
                {
                    "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                    "hashed_message": b"\x11" * 32,
                }
            ),
            "cert_req": True,
        }
    )
    response = tsp.TimeStampResp.load(authority.timestamper.respond(request.dump()))
    assert response["status"]["status"].native == "granted"
    info = response["time_stamp_token"]["content"]["encap_content_info"]["content"].parsed
    assert info["policy"].dotted == pki.TSA_POLICY_OID
    assert info["message_imprint"]["hashed_message"].native == b"\x11" * 32


def test_long_names_fit_the_certificate(authority: pki.Authority) -> None:
    """A company's full name is longer than a common name may be (64 UTF-8 bytes)."""
    name = "宜昌市伍家岗区某某新能源电池材料科技股份有限公司第一分公司"
    signer = authority.issue_signer(name, CASE_NO, role="当事人")
    subject = signer.signing_cert.subject.native
    assert len(subject["common_name"].encode()) <= 64 and name.startswith(subject["common_name"])
    assert subject["name"] == name
