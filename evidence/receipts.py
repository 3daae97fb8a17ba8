"""The evidence receipt as a PDF, typeset by ``documents`` (embedded CJK font, page frame with the
document ID). The caller hands in the texts already in the reader's language; this module only
lays them out, escaping every value (a title typed by a party cannot inject reportlab markup).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, Spacer, TableStyle

from documents.pdf import MARGIN, PageMarks, build_pdf, grid, styles

LABEL_WIDTH = 42 * mm

Rows = Sequence[tuple[str, str]]


def render_receipt(
    *,
    title: str,
    header: str,
    document_id: str,
    sections: Sequence[tuple[str, Rows]],
    howto_heading: str,
    howto: Sequence[str],
    font_path: Path,
) -> bytes:
    """``sections``: (heading, [(label, value)]) tables; ``howto``: the numbered verification steps."""
    st = styles(font_path)
    value_width = A4[0] - 2 * MARGIN - LABEL_WIDTH
    flowables: list[Flowable] = [Paragraph(escape(title), st.title)]
    for heading, rows in sections:
        flowables.append(Paragraph(escape(heading), st.heading))
        table = grid(
            [
                [Paragraph(escape(label), st.small), Paragraph(escape(value), st.small)]
                for label, value in rows
            ],
            colWidths=[LABEL_WIDTH, value_width],
        )
        table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
        flowables.append(table)
    flowables.append(Spacer(1, 3 * mm))
    flowables.append(Paragraph(escape(howto_heading), st.heading))
    for number, step in enumerate(howto, start=1):
        flowables.append(Paragraph(f"{number}. {escape(step)}", st.small))
        flowables.append(Spacer(1, 1.5 * mm))
    return build_pdf(
        flowables, PageMarks(document_id=document_id, header=header, title=title), font_path
    )
