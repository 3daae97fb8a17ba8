"""Typesetting of the platform's PDF documents (agreements, hearing records) over reportlab.

``documents.pdf`` embeds a CJK TrueType font (subset), breaks Chinese lines correctly and frames
every page with "x / y", the document ID, a header line and an optional verification QR code.
This package imports only ``config``, the standard library and reportlab. In short::

    from documents.pdf import PageMarks, Slot, build_pdf, grid, render, styles
    from reportlab.platypus import Paragraph

    st = styles(settings.document_font_path)        # title, heading, body, small, centred
    flow = [Paragraph("调解笔录", st.title), Paragraph(escaped_text, st.body),
            grid([["记录人", Slot("clerk", 160, 50)]])]  # tables: use grid (our font)
    pdf = build_pdf(flow, PageMarks("YT-R1-…", header=case.number, qr_url=url), font_path)
    result = render(...)   # the same, plus .pages and .boxes[slot name] → page and rectangle

Paragraph text is reportlab markup: escape user text (``&``, ``<``, ``>``) before use.
"""
