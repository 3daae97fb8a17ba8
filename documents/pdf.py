"""PDF building blocks: the embedded CJK font, paragraph styles, the page frame, ``render``.

Why not reportlab's ``STSong-Light``: it is a CID font reportlab does not embed, so a viewer
without Chinese fonts shows empty boxes (and a court's archive cannot rely on the reader's fonts).
We embed a subset of a TrueType face instead (Debian ``fonts-wqy-microhei``, first face of the
``.ttc``).

Chinese line breaking: reportlab's CJK wrapper hangs at most one character that may not start a
line, and its list lacks most Chinese full-width punctuation, so lines began with "，" or with the
second of "”。". ``_install_line_breaking`` (once per process: these are reportlab module globals)
extends the list and replaces the single-run splitter with ``split_cjk``, which moves the break
back instead (no line starts with closing punctuation, none ends with an opening mark, and digits
or Latin words are not cut).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reportlab.graphics.barcode import qrencoder
from reportlab.lib import colors
from reportlab.lib import textsplit as _rl_textsplit
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable, SimpleDocTemplate, Table, TableStyle
from reportlab.platypus import paragraph as _rl_paragraph

FONT_NAME = "YuntiaoCJK"

# Must not begin a line (GB/T 15834 punctuation and closing marks), in addition to reportlab's.
NO_LINE_START = "，。、；：！？）》〉」』】〕］｝”’…—·%‰℃,.;:!?)]}"
NO_LINE_END = "（《〈「『【〔［｛“‘([{¥￥$"
# Latin words, numbers and amounts ("2026", "50,000.00") stay on one line when they can.
_KEEP_TOGETHER_MAX = 24

MARGIN = 20 * mm
FOOTER_HEIGHT = 14 * mm
QR_SIZE = 16 * mm


def _latin(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c in ".,-_/:%")


def split_cjk(
    word: str, widths: Sequence[float], max_widths: float | Sequence[float]
) -> list[list[Any]]:
    """Greedy line breaking with Chinese rules, reportlab's ``dumbSplit`` contract: a list of
    ``[extra_space, text]`` per line for ``word`` whose character widths are ``widths``."""
    maxima: list[float] = (
        list(max_widths) if isinstance(max_widths, (list, tuple)) else [float(max_widths)]  # type: ignore[arg-type]
    )
    lines: list[list[Any]] = []
    start, used, i, n = 0, 0.0, 0, len(word)
    while i < n:
        limit = maxima[min(len(lines), len(maxima) - 1)]
        used += widths[i]
        if used > limit + 1e-6 and i > start:
            brk = i  # word[brk] would start the next line
            while brk > start + 1 and (word[brk] in NO_LINE_START or word[brk - 1] in NO_LINE_END):
                brk -= 1
            if brk == start + 1:
                brk = i  # nothing better: cut where it overflowed
            back = brk
            while (
                back > start + 1
                and brk - back < _KEEP_TOGETHER_MAX
                and (_latin(word[back - 1]) and _latin(word[back]))
            ):
                back -= 1
            if back > start + 1 and not (_latin(word[back - 1]) and _latin(word[back])):
                if word[back] not in NO_LINE_START and word[back - 1] not in NO_LINE_END:
                    brk = back
            lines.append([limit - sum(widths[start:brk]), word[start:brk].strip()])
            start, used, i = brk, 0.0, brk
            continue
        i += 1
    if start < n:
        limit = maxima[min(len(lines), len(maxima) - 1)]
        lines.append([limit - sum(widths[start:n]), word[start:n]])
    return lines


_CHAR_WIDTHS: dict[tuple[str, float], dict[str, float]] = {}


def char_widths(word: str, font_name: str, font_size: float) -> list[float]:
    """reportlab's ``getCharWidths`` with each character's width remembered per font and size:
    Chinese paragraphs are broken character by character, and reportlab measured each
    character of each paragraph anew (a third of a three-page agreement's rendering)."""
    known = _CHAR_WIDTHS.setdefault((font_name, font_size), {})
    widths = []
    for char in word:
        width = known.get(char)
        if width is None:
            width = known[char] = pdfmetrics.stringWidth(char, font_name, font_size)
        widths.append(width)
    return widths


@functools.cache
def _install_line_breaking() -> None:
    missing = "".join(c for c in NO_LINE_START if c not in _rl_paragraph.ALL_CANNOT_START)
    # The multi-fragment path (inline markup) only knows "hang one character": extend its list.
    _rl_paragraph.ALL_CANNOT_START = _rl_paragraph.ALL_CANNOT_START + missing
    _rl_textsplit.dumbSplit = split_cjk
    _rl_textsplit.getCharWidths = char_widths


@functools.cache
def register_font(path: Path) -> str:
    """Register the CJK face at ``path`` once per process; returns the font name to use."""
    _install_line_breaking()
    if not path.is_file():
        raise FileNotFoundError(
            f"CJK font {path} is missing (Debian: apt-get install fonts-wqy-microhei)"
        )
    subfont = {"subfontIndex": 0} if path.suffix.lower() == ".ttc" else {}
    pdfmetrics.registerFont(TTFont(FONT_NAME, str(path), **subfont))
    _CHAR_WIDTHS.clear()  # measured in the face registered before under the same name
    return FONT_NAME


@dataclass(frozen=True)
class Styles:
    """Paragraph styles of our documents; every one wraps Chinese text (``wordWrap='CJK'``)."""

    title: ParagraphStyle
    heading: ParagraphStyle
    body: ParagraphStyle
    small: ParagraphStyle
    centred: ParagraphStyle


@functools.cache
def styles(font_path: Path) -> Styles:
    font = register_font(font_path)

    def style(name: str, size: float, leading: float, **kw: Any) -> ParagraphStyle:
        return ParagraphStyle(
            name,
            fontName=font,
            bulletFontName=font,
            fontSize=size,
            leading=leading,
            wordWrap="CJK",
            **kw,
        )

    return Styles(
        title=style("title", 18, 26, alignment=TA_CENTER, spaceAfter=4 * mm),
        heading=style("heading", 12.5, 19, spaceBefore=3 * mm, spaceAfter=1.5 * mm),
        body=style("body", 11, 18, firstLineIndent=22, spaceAfter=1.5 * mm),
        small=style("small", 8.5, 12, textColor=colors.HexColor("#444444")),
        centred=style("centred", 11, 18, alignment=TA_CENTER),
    )


@dataclass(frozen=True)
class Box:
    """Where a ``Slot`` landed: 1-based page number and a rectangle in PDF points (x1, y1, x2, y2)."""

    page: int
    rect: tuple[float, float, float, float]


class Slot(Flowable):
    """An empty, optionally outlined rectangle whose final position is reported by ``render``:
    where a signature stamp, a seal or a fingerprint will go later."""

    def __init__(
        self, name: str, width: float, height: float, label: str = "", outline: bool = True
    ) -> None:
        super().__init__()
        self.name = name
        self.width = width
        self.height = height
        self.label = label
        self.outline = outline

    def wrap(self, availWidth: float, availHeight: float) -> tuple[float, float]:  # noqa: N803
        return self.width, self.height

    def draw(self) -> None:
        canvas = self.canv
        if self.outline:
            canvas.saveState()
            canvas.setStrokeColor(colors.HexColor("#999999"))
            canvas.setDash(2, 2)
            canvas.rect(0, 0, self.width, self.height)
            canvas.restoreState()
        if self.label:
            canvas.saveState()
            canvas.setFont(FONT_NAME, 8)
            canvas.setFillColor(colors.HexColor("#666666"))
            canvas.drawString(3, self.height - 10, self.label)
            canvas.restoreState()
        found = getattr(canvas, "slot_boxes", None)
        if found is not None:
            x, y = canvas.absolutePosition(0, 0)
            found[self.name] = Box(canvas.getPageNumber(), (x, y, x + self.width, y + self.height))


@dataclass(frozen=True)
class PageMarks:
    """What frames every page: footer "x / y", the document ID, the header line (a case number)
    and, when ``qr_url`` is given, a QR code leading there (the verification page)."""

    document_id: str
    header: str = ""
    qr_url: str = ""
    title: str = ""
    author: str = ""


@dataclass(frozen=True)
class Rendered:
    data: bytes
    pages: int
    boxes: dict[str, Box] = field(default_factory=dict)


QR_FORM = "VerificationQR"


def _qr_modules(url: str) -> list[tuple[float, float, float, float]]:
    """The dark modules of the QR code for ``url`` as rectangles in a ``QR_SIZE`` square,
    drawn straight onto the canvas (reportlab's drawing renderer would name an unembedded
    Helvetica in the page). One fixed mask pattern instead of trying all eight for the "best"
    one: equally valid, and it cuts the encoding from ~6 ms to under 1 ms per document."""
    code = qrencoder.QRCode(None, qrencoder.QRErrorCorrectLevel.M)
    code.addData(url)
    code.version = code.calculate_version()
    code.makeImpl(False, 0)
    n = code.getModuleCount()
    unit = QR_SIZE / n
    rects = []
    for row in range(n):
        col = 0
        while col < n:  # one rectangle per horizontal run of dark modules
            if code.isDark(row, col):
                start = col
                while col < n and code.isDark(row, col):
                    col += 1
                rects.append((start * unit, (n - 1 - row) * unit, (col - start) * unit, unit))
            else:
                col += 1
    return rects


def _framed_canvas(marks: PageMarks, boxes: dict[str, Box]) -> type[Canvas]:
    """A canvas that holds each page back until the total is known, then draws the frame."""
    qr = _qr_modules(marks.qr_url) if marks.qr_url else []

    class FramedCanvas(Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            # Otherwise reportlab names Helvetica in every page (unembedded, and never used).
            kwargs["initialFontName"] = FONT_NAME
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []
            self.slot_boxes = boxes

        def showPage(self) -> None:  # noqa: N802 (reportlab's name)
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            if qr:
                # Drawn once as a form and placed on every page: a few hundred rectangles
                # written (and formatted) once per document instead of once per page.
                self.beginForm(QR_FORM)
                self.setFillColor(colors.black)
                for x, y, w, h in qr:
                    self.rect(x, y, w, h, stroke=0, fill=1)
                self.endForm()
            for state in self._pages:
                self.__dict__.update(state)
                self._frame(total)
                super().showPage()
            super().save()

        def _frame(self, total: int) -> None:
            width, _height = self._pagesize
            page = self.getPageNumber()
            self.saveState()
            self.setFont(FONT_NAME, 8.5)
            self.setFillColor(colors.HexColor("#444444"))
            base = MARGIN - 9 * mm
            self.drawCentredString(width / 2, base, f"{page} / {total}")
            self.drawString(MARGIN, base, marks.document_id)
            if marks.header:
                self.drawString(MARGIN, self._pagesize[1] - MARGIN + 6 * mm, marks.header)
            if qr:
                self.translate(width - MARGIN - QR_SIZE, base - 2 * mm)
                self.doForm(QR_FORM)
            self.restoreState()

    return FramedCanvas


def grid(rows: Sequence[Sequence[Any]], **kw: Any) -> Table:
    """A ``Table`` whose plain-string cells use our font (reportlab's default is Helvetica,
    which would be named, unembedded, in the PDF)."""
    table = Table([list(r) for r in rows], **kw)
    table.setStyle(TableStyle([("FONTNAME", (0, 0), (-1, -1), FONT_NAME)]))
    return table


def render(
    flowables: Sequence[Flowable], marks: PageMarks, font_path: Path, pagesize: Any = A4
) -> Rendered:
    """Lay out ``flowables`` on framed pages; the PDF bytes, page count and slot positions."""
    register_font(font_path)
    boxes: dict[str, Box] = {}
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=pagesize,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN + FOOTER_HEIGHT,
        title=marks.title,
        author=marks.author,
        subject=marks.document_id,
        creator="Yuntiao",
    )
    doc.build(list(flowables), canvasmaker=_framed_canvas(marks, boxes))
    data = out.getvalue()
    return Rendered(data, doc.page, boxes)


def build_pdf(
    flowables: Sequence[Flowable], marks: PageMarks, font_path: Path, pagesize: Any = A4
) -> bytes:
    """``render`` when only the bytes matter."""
    return render(flowables, marks, font_path, pagesize).data
