"""Stamps: the typed-name signature and the signing date under a signature (PIL), and the
organisation's seal as a small vector drawing (reportlab): a red ring, a five-pointed
star, the organisation's name along the upper arc and "人民调解专用章" underneath — the layout
of a Chinese official seal. It is the visible stamp of the seal signature."""

from __future__ import annotations

import datetime as dt
import io
import math
from pathlib import Path
from zoneinfo import ZoneInfo

from PIL import Image, ImageDraw, ImageFont
from reportlab.lib import colors
from reportlab.pdfgen.canvas import Canvas

from documents.pdf import register_font

SEAL_SIZE = 120.0  # points
RED = colors.HexColor("#d0021b")
# Dates on the stamps are the dates people in the mediation read: Beijing time.
BEIJING = ZoneInfo("Asia/Shanghai")


def _star(canvas: Canvas, cx: float, cy: float, r: float) -> None:
    path = canvas.beginPath()
    for i in range(10):
        radius = r if i % 2 == 0 else r * 0.382
        angle = math.pi / 2 + i * math.pi / 5
        x, y = cx + radius * math.cos(angle), cy + radius * math.sin(angle)
        if i == 0:
            path.moveTo(x, y)
        else:
            path.lineTo(x, y)
    path.close()
    canvas.drawPath(path, stroke=0, fill=1)


def typed_signature(name: str, font_path: Path) -> Image.Image:
    """A typed name as the signature image (when the agreement allows it), in the CJK font."""
    font = ImageFont.truetype(str(font_path), 64, index=0)
    left, top, right, bottom = font.getbbox(name)
    image = Image.new("RGB", (int(right - left) + 40, int(bottom - top) + 40), "white")
    ImageDraw.Draw(image).text((20 - left, 20 - top), name, font=font, fill=(20, 20, 120))
    return image


def with_date(signature: Image.Image, when: dt.datetime, font_path: Path) -> Image.Image:
    """The signature with the signing date (Beijing) written under it, as on paper."""
    text = when.astimezone(BEIJING).strftime("%Y年%m月%d日")
    size = max(18, signature.height // 5)
    font = ImageFont.truetype(str(font_path), size, index=0)
    left, top, right, bottom = font.getbbox(text)
    width = max(signature.width, int(right - left) + 10)
    out = Image.new("RGB", (width, signature.height + int(bottom - top) + 12), "white")
    out.paste(signature, ((width - signature.width) // 2, 0))
    draw = ImageDraw.Draw(out)
    draw.text(
        ((width - (right - left)) // 2 - left, signature.height + 4 - top),
        text,
        font=font,
        fill=(60, 60, 60),
    )
    return out


def seal_pdf(organisation: str, font_path: Path, caption: str = "人民调解专用章") -> bytes:
    """A one-page PDF, ``SEAL_SIZE`` square, of the seal of ``organisation``."""
    font = register_font(font_path)
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=(SEAL_SIZE, SEAL_SIZE), initialFontName=font)
    c = SEAL_SIZE / 2
    canvas.setStrokeColor(RED)
    canvas.setFillColor(RED)
    canvas.setLineWidth(3.2)
    canvas.circle(c, c, c - 3, stroke=1, fill=0)
    _star(canvas, c, c, SEAL_SIZE * 0.14)
    name = organisation.strip()[:20] or "?"
    size = 12.5 if len(name) <= 12 else 10.5
    canvas.setFont(font, size)
    # Characters spread over an arc of up to 240°, centred on the top, upright to the centre.
    span = min(240.0, 19.0 * len(name)) if len(name) > 1 else 0.0
    radius = c - 3 - size - 2
    for i, ch in enumerate(name):
        angle = 90 + span / 2 - (span * i / (len(name) - 1) if len(name) > 1 else 0)
        rad = math.radians(angle)
        canvas.saveState()
        canvas.translate(c + radius * math.cos(rad), c + radius * math.sin(rad))
        canvas.rotate(angle - 90)
        canvas.drawCentredString(0, 0, ch)
        canvas.restoreState()
    canvas.setFont(font, 9)
    canvas.drawCentredString(c, c - SEAL_SIZE * 0.30, caption)
    canvas.showPage()
    canvas.save()
    return out.getvalue()
