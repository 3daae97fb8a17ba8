"""What a file *is*, decided by its content against a closed allowlist.

The allowlist is small and fixed (PDF, JPEG, PNG, GIF, WebP, HEIC, MP3/M4A/WAV/OGG audio,
MP4/WebM/MOV video, DOCX/XLSX/PPTX, DOC/XLS, plain UTF-8 text, and ZIP archives of those), so the signatures
are written out here rather than taken from a general "magic" database: each accepted format is
one readable rule, container formats (ZIP, OLE) are opened and looked into, and anything else is
refused. The name a person gave the file is never consulted.

``sniff(head)`` looks at the first bytes; ZIP and OLE files need the whole file
(``inspect_container`` with a seekable reader), plain text needs every byte to be UTF-8
(checked while streaming, see ``evidence.uploads``).
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
from dataclasses import dataclass
from typing import IO

from cases.catalogue import N_
from evidence.errors import UnsupportedType

SNIFF_BYTES = 4096
MAX_ZIP_MEMBERS = 2000
MAX_NESTED_BYTES = 64 << 20  # an office document or OLE file inside a ZIP is read into memory

# Pseudo-codes of ``sniff``: a container to open, or "could be text".
ZIP = "zip"
OLE = "ole"
TEXT = "text"


@dataclass(frozen=True)
class FileType:
    code: str
    media_type: str
    label: str


FILE_TYPES: dict[str, FileType] = {
    t.code: t
    for t in (
        FileType("pdf", "application/pdf", N_("PDF document")),
        FileType("jpeg", "image/jpeg", N_("JPEG image")),
        FileType("png", "image/png", N_("PNG image")),
        FileType("gif", "image/gif", N_("GIF image")),
        FileType("webp", "image/webp", N_("WebP image")),
        FileType("mp3", "audio/mpeg", N_("MP3 audio")),
        FileType("m4a", "audio/mp4", N_("M4A audio")),
        FileType("wav", "audio/wav", N_("WAV audio")),
        FileType("ogg", "audio/ogg", N_("Ogg audio")),
        FileType("mp4", "video/mp4", N_("MP4 video")),
        FileType("webm", "video/webm", N_("WebM video")),
        # Apple phones: accepted as sent (converting would change the evidence); pages may
        # show no preview of them (``evidence.previews``).
        FileType("mov", "video/quicktime", N_("QuickTime video (MOV)")),
        FileType("heic", "image/heic", N_("HEIC photo")),
        FileType(
            "docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            N_("Word document (DOCX)"),
        ),
        FileType(
            "xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            N_("Excel workbook (XLSX)"),
        ),
        FileType(
            "pptx",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            N_("PowerPoint presentation (PPTX)"),
        ),
        FileType("doc", "application/msword", N_("Word document (DOC)")),
        FileType("xls", "application/vnd.ms-excel", N_("Excel workbook (XLS)")),
        FileType("text", "text/plain; charset=utf-8", N_("Plain text")),
        FileType("zip", "application/zip", N_("ZIP archive")),
    )
}

_MP4_VIDEO_BRANDS = {
    b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"dash", b"M4V ",
    b"mmp4", b"MSNV",
}  # fmt: skip
_MP4_AUDIO_BRANDS = {b"M4A ", b"M4B "}
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"}
# Text may hold tabs, line and page breaks and escape sequences; other C0 controls mean binary.
_BINARY_CONTROLS = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")


def _mp3_frame(head: bytes) -> bool:
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 0b11, (head[1] >> 1) & 0b11
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 0b11
    # Layer "00" is AAC/ADTS, not MP3; the other all-ones/zero fields are reserved.
    return version != 0b01 and layer != 0 and bitrate not in (0, 0xF) and rate != 0b11


def _ftyp_brands(head: bytes) -> set[bytes]:
    """The compatible brands of an ISO BMFF ``ftyp`` box at the start of ``head``."""
    size = min(struct.unpack(">I", head[:4])[0], len(head), 256)
    return {head[i : i + 4] for i in range(16, size - 3, 4)}


def sniff(head: bytes) -> str | None:
    """The type code for ``head`` (the first ``SNIFF_BYTES`` of a file, or all of a shorter one):
    a code of ``FILE_TYPES``, ``ZIP``/``OLE`` (look inside before deciding), ``TEXT`` (valid only
    if the whole file is UTF-8), or ``None`` (not allowed)."""
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"OggS"):
        return "ogg"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _MP4_AUDIO_BRANDS:
            return "m4a"
        if brand in _MP4_VIDEO_BRANDS:
            return "mp4"
        if brand == b"qt  ":
            return "mov"
        if brand in _HEIC_BRANDS or (
            brand in (b"mif1", b"msf1") and _ftyp_brands(head) & _HEIC_BRANDS
        ):
            return "heic"
        return None  # AVIF, other HEIF, camera raw …: not on the list
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        # EBML: WebM declares its DocType early; other Matroska files are not on the list.
        return "webm" if b"\x42\x82\x84webm" in head[:64] else None
    if head.startswith(b"ID3") or _mp3_frame(head):
        return "mp3"
    if head.startswith(b"PK\x03\x04"):
        return ZIP
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return OLE
    if looks_like_text(head):
        return TEXT
    return None


def looks_like_text(head: bytes) -> bool:
    """UTF-8 (a character cut at the end of ``head`` is fine) without binary control bytes."""
    if not head or _BINARY_CONTROLS.search(head):
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Only an incomplete character at the very end is acceptable.
        return exc.reason == "unexpected end of data" and exc.start >= len(head) - 3
    return True


def _reject(what: str = "") -> UnsupportedType:
    if what:
        return UnsupportedType(
            N_(
                "The ZIP archive contains a file that is not allowed (%(name)s). Put only PDF, "
                "images, audio, video, office documents or plain text in it."
            ),
            code="evidence_zip_member_not_allowed",
            name=what[:100],
        )
    return UnsupportedType()


def inspect_container(code: str, fh: IO[bytes], *, nested: bool = False) -> str:
    """Decide ``ZIP``/``OLE`` files by their content: docx/xlsx/pptx/zip, or doc/xls.
    Raises ``UnsupportedType`` (or a more precise code) if the file is not allowed."""
    if code == OLE:
        return _ole_kind(fh)
    if code != ZIP:
        return code
    try:
        archive = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise UnsupportedType(
            N_("The ZIP archive is damaged and cannot be opened. Create it again and resend it."),
            code="evidence_zip_damaged",
        ) from None
    with archive:
        names = set(archive.namelist())
        if "[Content_Types].xml" in names:
            if "word/document.xml" in names:
                return "docx"
            if "xl/workbook.xml" in names:
                return "xlsx"
            if "ppt/presentation.xml" in names:
                return "pptx"
        if nested:
            raise _reject("ZIP")
        members = [info for info in archive.infolist() if not info.is_dir()]
        if not members:
            raise UnsupportedType(
                N_("The ZIP archive is empty. Put the files in it and send it again."),
                code="evidence_zip_empty",
            )
        if len(members) > MAX_ZIP_MEMBERS:
            raise UnsupportedType(
                N_(
                    "The ZIP archive holds more than %(count)d files. Split it into smaller "
                    "archives."
                ),
                code="evidence_zip_too_many",
                count=MAX_ZIP_MEMBERS,
            )
        for info in members:
            _check_member(archive, info)
    return "zip"


def _check_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    if info.flag_bits & 0x1:
        raise UnsupportedType(
            N_(
                "The ZIP archive is protected with a password, so its contents cannot be "
                "checked. Send it without a password."
            ),
            code="evidence_zip_encrypted",
        )
    if info.file_size == 0:
        return
    try:
        with archive.open(info) as member:
            head = member.read(SNIFF_BYTES)
            kind = sniff(head)
            if kind in (ZIP, OLE):
                if info.file_size > MAX_NESTED_BYTES:
                    raise _reject(info.filename)
                data = head + member.read(MAX_NESTED_BYTES)
                inspect_container(kind, io.BytesIO(data), nested=True)
            elif kind is None:
                raise _reject(info.filename)
    except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError, ValueError):
        raise UnsupportedType(
            N_("The ZIP archive is damaged and cannot be opened. Create it again and resend it."),
            code="evidence_zip_damaged",
        ) from None


def _ole_kind(fh: IO[bytes]) -> str:
    """Word (a ``WordDocument`` stream) or Excel (``Workbook``/``Book``) in an OLE2 compound
    file; anything else in that format (installers, mail, other programs) is refused."""
    fh.seek(0)
    header = fh.read(512)
    if len(header) < 512:
        raise UnsupportedType()
    shift = struct.unpack_from("<H", header, 0x1E)[0]
    if shift not in (9, 12):
        raise UnsupportedType()
    sector_size = 1 << shift
    difat = struct.unpack_from("<109I", header, 0x4C)
    sector = struct.unpack_from("<I", header, 0x30)[0]
    names: set[str] = set()
    for _ in range(64):  # the directory chain; real files need a handful of sectors
        if sector >= 0xFFFFFFFA:
            break
        fh.seek((sector + 1) * sector_size)
        block = fh.read(sector_size)
        for offset in range(0, len(block) - 127, 128):
            length = struct.unpack_from("<H", block, offset + 0x40)[0]
            if 2 <= length <= 64:
                names.add(block[offset : offset + length - 2].decode("utf-16-le", "replace"))
        # Next directory sector from the FAT (only the first 109 FAT sectors, from the header).
        per_fat = sector_size // 4
        fat_index, within = divmod(sector, per_fat)
        if fat_index >= len(difat) or difat[fat_index] >= 0xFFFFFFFA:
            break
        fh.seek((difat[fat_index] + 1) * sector_size + within * 4)
        raw = fh.read(4)
        if len(raw) < 4:
            break
        sector = struct.unpack("<I", raw)[0]
    if "WordDocument" in names:
        return "doc"
    if "Workbook" in names or "Book" in names:
        return "xls"
    raise UnsupportedType()
