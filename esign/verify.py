"""Is this PDF a genuine, unmodified agreement of this platform? pyHanko validation of every
signature against the platform CA, judged on ``bottom_line`` (cryptographically intact, trusted
chain, valid timestamp, changes within the DocMDP/FieldMDP permissions) — never on ``valid``
alone, which a tampered file can still report.

Used by the public verification page and by ``yuntiao esign verify FILE`` (offline: it needs
only the CA certificate).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
from dataclasses import dataclass, field

from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils.misc import PdfReadError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from cases.catalogue import N_
from esign import speedups
from esign.signing import ISSUE_FIELD

MAX_PDF_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class SignatureReport:
    """One signature as a reader should see it."""

    field: str
    signer: str  # the certificate's common name
    unit: str  # organisational unit: case number and role
    signed_at: dt.datetime | None  # the trusted timestamp, else what the signer's software said
    timestamped: bool
    intact: bool
    valid: bool
    trusted: bool
    bottom_line: bool
    certification: bool
    covers_whole_file: bool
    modification: str  # pyHanko's ModificationLevel name, "" when not evaluated

    @property
    def state(self) -> str:
        return "valid" if self.bottom_line else ("broken" if not self.intact else "invalid")


@dataclass(frozen=True)
class DocumentReport:
    sha256: str
    size: int
    document_id: str
    signatures: list[SignatureReport] = field(default_factory=list)
    problem: str = ""  # a message id when the file is not a genuine, unmodified agreement

    @property
    def ok(self) -> bool:
        return not self.problem


def _name_part(name: asn1_x509.Name, key: str) -> str:
    value = name.native.get(key, "")
    return str(value[0] if isinstance(value, list) else value)


def _document_id(reader: PdfFileReader) -> str:
    try:
        info = reader.trailer_view.get("/Info")
        if info is None:
            return ""
        subject = info.get_object().get("/Subject")
        return str(subject) if subject is not None else ""
    except (KeyError, PdfReadError, AttributeError):
        return ""


async def verify_pdf(data: bytes, ca_cert: asn1_x509.Certificate) -> DocumentReport:
    """Validate every signature of ``data``; ``problem`` says what is wrong, if anything.
    Runs in a worker thread (its own event loop): an uploaded PDF may take a while to parse,
    and the server's loop must not stall meanwhile."""
    return await asyncio.to_thread(lambda: asyncio.run(_verify_pdf(data, ca_cert)))


async def _verify_pdf(data: bytes, ca_cert: asn1_x509.Certificate) -> DocumentReport:
    speedups.install()  # pyHanko's hex strings and X.509 name matching, ~2x faster
    sha256 = hashlib.sha256(data).hexdigest()

    def report(
        document_id: str, problem: str, found: list[SignatureReport] | None = None
    ) -> DocumentReport:
        return DocumentReport(sha256, len(data), document_id, found or [], problem)

    if not data.startswith(b"%PDF-"):
        return report("", N_("This file is not a PDF."))
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        embedded = list(reader.embedded_signatures)
        document_id = _document_id(reader)
    except (PdfReadError, ValueError, KeyError, TypeError, IndexError):
        return report("", N_("This PDF is damaged and cannot be read."))
    if not embedded:
        return report(document_id, N_("This PDF carries no electronic signature of this platform."))
    context = ValidationContext(trust_roots=[ca_cert], allow_fetching=False)
    reports: list[SignatureReport] = []
    last = len(embedded) - 1
    for index, sig in enumerate(embedded):
        # Modification analysis (every later revision against the signature's permissions) for
        # the first signature — the issue's DocMDP certification, which every later revision
        # must respect — and the last (the seal's lock; nothing may follow it). Signatures in
        # between lock nothing, and re-analysing every later revision for each of them made
        # validation quadratic in the number of signers.
        skip_diff = 0 < index < last
        try:
            status = await async_validate_pdf_signature(sig, context, context, skip_diff=skip_diff)
        except Exception:  # noqa: BLE001 - a damaged signature is a finding, not a crash
            reports.append(
                SignatureReport(
                    field=str(sig.field_name),
                    signer="",
                    unit="",
                    signed_at=None,
                    timestamped=False,
                    intact=False,
                    valid=False,
                    trusted=False,
                    bottom_line=False,
                    certification=sig.field_name == ISSUE_FIELD,
                    covers_whole_file=False,
                    modification="",
                )
            )
            continue
        ts = status.timestamp_validity
        subject = status.signing_cert.subject
        reports.append(
            SignatureReport(
                field=str(sig.field_name),
                signer=_name_part(subject, "name") or _name_part(subject, "common_name"),
                unit=_name_part(subject, "organizational_unit_name"),
                signed_at=ts.timestamp if ts is not None else status.signer_reported_dt,
                timestamped=ts is not None and ts.valid and ts.intact and ts.trusted,
                intact=status.intact,
                valid=status.valid,
                trusted=status.trusted,
                bottom_line=status.bottom_line,
                certification=sig.field_name == ISSUE_FIELD,
                covers_whole_file=status.coverage == SignatureCoverageLevel.ENTIRE_FILE,
                modification=status.modification_level.name if status.modification_level else "",
            )
        )
    problem = ""
    if not any(r.certification for r in reports):
        problem = N_("This PDF was not issued by this platform.")
    elif not all(r.intact for r in reports):
        problem = N_("The document was changed after it was signed.")
    elif not all(r.trusted for r in reports):
        problem = N_("A signature was not made with a certificate of this platform.")
    elif not all(r.bottom_line for r in reports):
        problem = N_("The document was changed after it was signed, or a signature is invalid.")
    elif not reports[-1].covers_whole_file:
        problem = N_("Something was added to the document after the last signature.")
    return report(document_id, problem, reports)


def report_lines(report: DocumentReport) -> list[str]:
    """The report as text (English; the command line is for administrators)."""
    head = "GENUINE" if report.ok else "NOT GENUINE"
    lines = [
        f"{head}: sha256 {report.sha256}, {report.size} bytes, document {report.document_id or '-'}"
    ]
    if report.problem:
        lines.append(f"  problem: {report.problem}")
    for s in report.signatures:
        when = s.signed_at.isoformat() if s.signed_at else "-"
        state = "valid" if s.bottom_line else ("MODIFIED" if not s.intact else "INVALID")
        extra = " (issue, DocMDP)" if s.certification else ""
        trusted = "trusted" if s.trusted else "UNTRUSTED"
        stamp = "timestamped" if s.timestamped else "no trusted timestamp"
        lines.append(
            f"  - {s.field}{extra}: {s.signer} [{s.unit}] at {when}: {state}, {trusted}, {stamp}"
        )
    return lines


def load_ca(path: str) -> asn1_x509.Certificate:
    """A CA certificate from a PEM or DER file."""
    from pyhanko.keys import load_cert_from_pemder

    return load_cert_from_pemder(path)
