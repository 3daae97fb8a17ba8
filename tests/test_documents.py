"""documents: the embedded CJK font, Chinese line breaking and the page frame, checked on the
PDF itself with poppler (``pdffonts``, ``pdftotext``) the way a reader's viewer sees it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from reportlab.platypus import Paragraph, Table

from config import Settings
from documents.pdf import (
    NO_LINE_START,
    PageMarks,
    Slot,
    char_widths,
    grid,
    register_font,
    render,
    split_cjk,
    styles,
)

FONT = Settings().document_font_path
CLOSING = "，；：！？》〉”’。、）"


def poppler(tool: str, pdf: bytes, tmp_path: Path, *args: str) -> str:
    path = tmp_path / "doc.pdf"
    path.write_bytes(pdf)
    done = subprocess.run(
        [tool, *args, str(path), "-"] if tool == "pdftotext" else [tool, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_font_is_embedded_and_subset_and_nothing_else(tmp_path: Path) -> None:
    st = styles(FONT)
    pdf = render(
        [Paragraph("人民调解协议书", st.title), grid([["表格"]])],
        PageMarks("DOC-1", qr_url="http://x.test/v"),
        FONT,
    ).data
    lines = poppler("pdffonts", pdf, tmp_path).splitlines()[2:]
    assert len(lines) == 1, lines  # no unembedded Helvetica or STSong-Light
    name, *_rest = lines[0].split()
    assert name.endswith("WenQuanYiMicroHei-0") and "+" in name
    assert lines[0].split()[-5:-3] == ["yes", "yes"]  # emb, sub


def test_chinese_lines_never_start_with_closing_punctuation(tmp_path: Path) -> None:
    st = styles(FONT)
    # Shift the text one character per paragraph so each mark lands at a line start somewhere.
    text = "解，协议；履行：期限！确认？《协议》〈附件〉“条款”‘约定’。完毕、结束）"
    flowables = [Paragraph("调" * i + text * 3, st.body) for i in range(45)]
    out = poppler("pdftotext", render(flowables, PageMarks("DOC-2"), FONT).data, tmp_path)
    lines = [line for line in out.splitlines() if line.strip()]
    assert sum("履行：期限" in line for line in lines) > 45  # the text is really there
    bad = [line for line in lines if line[0] in CLOSING]
    assert not bad


def test_split_keeps_numbers_and_opening_marks() -> None:
    word = "乙方于2026年12月31日前支付人民币50,000.00元（大写：伍万元整）"
    lines = split_cjk(word, [10.0] * len(word), 95.0)
    texts = [t for _space, t in lines]
    assert "".join(texts) == word
    assert all(t[0] not in NO_LINE_START for t in texts)
    assert all(not t.endswith("（") for t in texts)
    assert any("50,000.00" in t for t in texts)


def test_page_frame_numbers_id_header_and_slots(tmp_path: Path) -> None:
    st = styles(FONT)
    flowables = [Paragraph(f"第{i}条 双方确认本协议内容。", st.body) for i in range(120)]
    flowables.append(Table([[Slot("sign-a", 150, 50, "甲方"), Slot("sign-b", 150, 50, "乙方")]]))
    result = render(
        flowables,
        PageMarks("AGR-TEST-0001", header="（2026）伍联调字第12号", qr_url="http://x.test/v/1"),
        FONT,
    )
    out = poppler("pdftotext", result.data, tmp_path)
    pages = out.split("\f")[: result.pages]
    assert result.pages >= 3
    for number, page in enumerate(pages, start=1):
        # pdftotext drops the spaces of "1 / 5".
        assert re.search(rf"\b{number} ?/ ?{result.pages}\b", page)
        assert "AGR-TEST-0001" in page and "（2026）伍联调字第12号" in page
    assert set(result.boxes) == {"sign-a", "sign-b"}
    box = result.boxes["sign-a"]
    assert box.page == result.pages
    x1, y1, x2, y2 = box.rect
    assert round(x2 - x1) == 150 and round(y2 - y1) == 50 and y1 > 0


def test_qr_modules_match_reportlabs_own_drawing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our fast QR path draws exactly the modules reportlab's widget draws for the same mask."""
    from reportlab.graphics.barcode import qrencoder
    from reportlab.graphics.barcode.qr import QrCodeWidget
    from reportlab.graphics.shapes import Rect

    from documents.pdf import QR_SIZE, _qr_modules

    url = "https://mediation.example.org/agreements/verify?id=YT-A12-V3-0A1B2C3D"
    monkeypatch.setattr(qrencoder.QRCode, "getBestMaskPattern", lambda self: 0)
    widget = QrCodeWidget(url, barLevel="M", barBorder=0, barWidth=QR_SIZE, barHeight=QR_SIZE)
    theirs = {
        (round(r.x, 3), round(r.y, 3), round(r.width, 3), round(r.height, 3))
        for r in widget.draw().contents
        if isinstance(r, Rect) and r.fillColor == widget.barFillColor
    }
    ours = {tuple(round(v, 3) for v in rect) for rect in _qr_modules(url)}

    def cells(rects: set[tuple[float, ...]], unit: float) -> set[tuple[int, int]]:
        out = set()
        for x, y, w, h in rects:
            for i in range(round(w / unit)):
                for j in range(round(h / unit)):
                    out.add((round(x / unit) + i, round(y / unit) + j))
        return out

    n = qrencoder.QRCode(None, qrencoder.QRErrorCorrectLevel.M)
    n.addData(url)
    unit = QR_SIZE / (n.calculate_version() * 4 + 17)
    assert cells(ours, unit) == cells(theirs, unit) and ours


def test_every_page_carries_a_readable_qr_code_of_the_verification_address(tmp_path: Path) -> None:
    """Read back as a phone would: each page rasterised (pdftoppm) and scanned (zbarimg)."""
    st = styles(FONT)
    url = "https://mediation.example.org/agreements/verify?id=YT-A12-V3-0A1B2C3D"
    result = render(
        [Paragraph(f"第{i}条 双方确认本协议内容。", st.body) for i in range(120)],
        PageMarks("AGR-TEST-0002", qr_url=url),
        FONT,
    )
    assert result.pages >= 3
    (tmp_path / "doc.pdf").write_bytes(result.data)
    subprocess.run(
        ["pdftoppm", "-r", "150", "-png", str(tmp_path / "doc.pdf"), str(tmp_path / "page")],
        check=True,
    )
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) == result.pages
    for page in pages:
        done = subprocess.run(
            ["zbarimg", "--quiet", "--raw", str(page)], capture_output=True, text=True
        )
        assert done.stdout.split() == [url], (page.name, done.stdout, done.stderr)


def test_remembered_character_widths_are_reportlabs_own() -> None:
    from reportlab.pdfbase.pdfmetrics import stringWidth

    name = register_font(FONT)
    text = "申请人宜昌某电池材料有限公司，¥120,000.00（壹拾贰万元整）😀 abc"
    for size in (10.5, 12):
        expected = [stringWidth(c, name, size) for c in text]
        assert char_widths(text, name, size) == expected
        assert char_widths(text, name, size) == expected  # from the cache the second time
