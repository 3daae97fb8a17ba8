"""PAdES signing of agreement PDFs with pyHanko: pure functions from bytes to bytes.

The revisions of a signed agreement, in order:

1. the rendered PDF (reportlab, ``documents``);
2. **issue**: the signature fields of every signer are added at their slots on the signature
   page, and the platform certifies the document on behalf of the organisation (invisible
   certification signature, DocMDP ``FILL_FORMS``). From here on any change other than filling
   those fields invalidates it: the document is locked after the first signature. (PDF allows a
   certification signature only as the *first* signature, so it cannot be the seal's.)
3. one approval signature per party, then the mediator — each an incremental update with a
   visible stamp carrying that signer's drawn signature, each made with that signer's one-time key
   (``pki.Authority.issue_signer``), each with an RFC 3161 timestamp;
4. the organisation's seal, last: its field carries a lock dictionary (FieldMDP all fields,
   DocMDP "no changes"), so once sealed nothing more may be added.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.content import ImportedPdfPage
from pyhanko.pdf_utils.images import PdfImage
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import BasePdfFileWriter
from pyhanko.sign import fields
from pyhanko.sign.signers import PdfSignatureMetadata, PdfSigner, Signer
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko.stamp import StaticStampStyle

from esign import speedups

ISSUE_FIELD = "issue"
MAX_SIGNATURE_PNG_BYTES = 512 * 1024
MAX_SIGNATURE_PIXELS = 2400 * 1200


class BadImage(ValueError):
    """The drawn signature is not a PNG we accept."""


@dataclass(frozen=True)
class FieldPlace:
    """A signature field to create at issue time: ``page`` is 1-based, ``rect`` in points."""

    name: str
    page: int
    rect: tuple[float, float, float, float]
    locks_document: bool = False


def signature_image(png: bytes) -> Image.Image:
    """The signer's drawing, checked: a real PNG of sane size, flattened onto white."""
    if len(png) > MAX_SIGNATURE_PNG_BYTES or not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise BadImage("not a PNG, or too large")
    try:
        image = Image.open(io.BytesIO(png))
        if image.width * image.height > MAX_SIGNATURE_PIXELS or image.format != "PNG":
            raise BadImage("image too large")
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise BadImage(str(exc)) from None
    rgba = image.convert("RGBA")
    flat = Image.new("RGB", rgba.size, "white")
    flat.paste(rgba, mask=rgba.getchannel("A"))
    darkest = flat.convert("L").getextrema()[0]
    if not isinstance(darkest, (int, float)) or darkest > 200:
        raise BadImage("the drawing is empty")
    return flat


class _PdfBytesPage(ImportedPdfPage):
    """``ImportedPdfPage`` from bytes in memory (the seal drawn by reportlab)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(file_name="", page_ix=0)
        self._data = data

    def render(self) -> bytes:
        import binascii
        import uuid

        from pyhanko.pdf_utils.layout import BoxConstraints

        writer: BasePdfFileWriter = self._ensure_writer
        reader = PdfFileReader(io.BytesIO(self._data))
        xobj = writer.import_page_as_xobject(reader, page_ix=0)
        name = b"/Import" + binascii.hexlify(uuid.uuid4().bytes)
        self.resources.xobject[name.decode("ascii")] = xobj
        x1, y1, x2, y2 = xobj.get_object()["/BBox"]
        self.box = BoxConstraints(width=abs(x1 - x2), height=abs(y1 - y2))
        return name + b" Do"


# Measured: a signature container is the signer's certificate, the TSA's certificate and
# ~1.6 KB of structure (signed attributes, the ECDSA signature, the timestamp token's own
# attributes and RSA signature). pyHanko's default estimate adds 50% for unknown external
# timestamp servers; ours is in process and predictable, and every reserved byte is parsed
# again (as hex, in Python) at each validation.
CMS_OVERHEAD = 1600
CMS_MARGIN = 1024


def _reserve(signer: Signer, timestamper: TimeStamper) -> int | None:
    """Room for the signature container, in hex digits (what pyHanko's ``bytes_reserved``
    counts), or None to let pyHanko estimate (another timestamper, or no certificate)."""
    tsa_cert = getattr(timestamper, "tsa_cert", None)
    if signer.signing_cert is None or tsa_cert is None:
        return None
    size = len(signer.signing_cert.dump()) + len(tsa_cert.dump()) + CMS_OVERHEAD + CMS_MARGIN
    return 2 * size


def _stamp(background: PdfImage | ImportedPdfPage) -> StaticStampStyle:
    # The drawing alone: any stamp text would use a built-in, unembedded font without Chinese
    # glyphs. The signer's name is printed by the slot, the time is in the signature.
    return StaticStampStyle(background=background, background_opacity=1.0, border_width=0)


def _meta(
    field_name: str, name: str, reason: str, location: str, **kw: object
) -> PdfSignatureMetadata:
    return PdfSignatureMetadata(
        field_name=field_name,
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
        name=name or None,
        reason=reason or None,
        location=location or None,
        **kw,  # type: ignore[arg-type]
    )


def _off_loop(work: Callable[[], Coroutine[Any, Any, bytes]]) -> Awaitable[bytes]:
    """Run a pyHanko coroutine on its own event loop in a worker thread. Signing is ~0.1 s of
    CPU: in the server's loop it would stall every hearing's signaling for that long; in a
    thread the loop keeps getting the interpreter between the thread's slices."""
    speedups.install()  # each signer re-reads the earlier signatures (their hex /Contents)
    return asyncio.to_thread(lambda: asyncio.run(work()))


async def issue(
    pdf: bytes,
    places: Sequence[FieldPlace],
    signer: Signer,
    timestamper: TimeStamper,
    *,
    name: str,
    reason: str = "",
    location: str = "",
) -> bytes:
    """Revision 2: add every signer's empty field, then certify (DocMDP FILL_FORMS)."""
    return await _off_loop(
        lambda: _issue(
            pdf, places, signer, timestamper, name=name, reason=reason, location=location
        )
    )


async def _issue(
    pdf: bytes,
    places: Sequence[FieldPlace],
    signer: Signer,
    timestamper: TimeStamper,
    *,
    name: str,
    reason: str = "",
    location: str = "",
) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    for place in places:
        lock = {}
        if place.locks_document:
            lock = {
                "field_mdp_spec": fields.FieldMDPSpec(action=fields.FieldMDPAction.ALL),
                "doc_mdp_update_value": fields.MDPPerm.NO_CHANGES,
            }
        fields.append_signature_field(
            writer,
            fields.SigFieldSpec(
                sig_field_name=place.name,
                on_page=place.page - 1,
                box=tuple(round(v) for v in place.rect),  # type: ignore[arg-type]
                **lock,  # type: ignore[arg-type]
            ),
        )
    meta = _meta(
        ISSUE_FIELD,
        name,
        reason,
        location,
        certify=True,
        docmdp_permissions=fields.MDPPerm.FILL_FORMS,
    )
    out = io.BytesIO()
    await PdfSigner(
        meta,
        signer=signer,
        timestamper=timestamper,
        new_field_spec=fields.SigFieldSpec(sig_field_name=ISSUE_FIELD),
    ).async_sign_pdf(writer, output=out, bytes_reserved=_reserve(signer, timestamper))
    return out.getvalue()


async def sign_field(
    pdf: bytes,
    field_name: str,
    signer: Signer,
    timestamper: TimeStamper,
    *,
    image: Image.Image | None = None,
    seal_pdf: bytes | None = None,
    name: str,
    reason: str = "",
    location: str = "",
    final: bool = False,
) -> bytes:
    """An approval signature into the existing field ``field_name``, as an incremental update,
    with the drawn ``image`` (or the ``seal_pdf`` drawing) as its visible stamp. ``final``:
    the field's lock forbids any later change (the seal)."""
    return await _off_loop(
        lambda: _sign_field(
            pdf,
            field_name,
            signer,
            timestamper,
            image=image,
            seal_pdf=seal_pdf,
            name=name,
            reason=reason,
            location=location,
            final=final,
        )
    )


async def _sign_field(
    pdf: bytes,
    field_name: str,
    signer: Signer,
    timestamper: TimeStamper,
    *,
    image: Image.Image | None = None,
    seal_pdf: bytes | None = None,
    name: str,
    reason: str = "",
    location: str = "",
    final: bool = False,
) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    background: PdfImage | ImportedPdfPage | None = None
    if seal_pdf is not None:
        background = _PdfBytesPage(seal_pdf)
    elif image is not None:
        background = PdfImage(image)
    out = io.BytesIO()
    await PdfSigner(
        _meta(
            field_name,
            name,
            reason,
            location,
            **({"docmdp_permissions": fields.MDPPerm.NO_CHANGES} if final else {}),
        ),
        signer=signer,
        timestamper=timestamper,
        stamp_style=_stamp(background) if background is not None else None,
    ).async_sign_pdf(
        writer,
        output=out,
        existing_fields_only=True,
        bytes_reserved=_reserve(signer, timestamper),
    )
    return out.getvalue()


def field_names(pdf: bytes) -> list[str]:
    """Names of the signature fields in ``pdf`` (filled or not), in document order."""
    reader = PdfFileReader(io.BytesIO(pdf))
    names = []
    for name, _value, _ref in fields.enumerate_sig_fields(reader, filled_status=None):
        names.append(str(name))
    return names


_ = generic  # re-exported for callers that inspect signature dictionaries
