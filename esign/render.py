"""The agreement as a PDF: jinja2 templates per dispute category produce the People's Mediation
Law Art. 29 content as simple line markup, ``documents`` typesets it, and a signature page
with one slot per signer (``FieldPlace`` for pyHanko) closes it.

Template lines: ``# `` title, ``## `` heading, ``- `` numbered clause, ``= `` centred line,
anything else a paragraph. Templates autoescape, so user text cannot inject reportlab markup.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, KeepTogether, PageBreak, Paragraph, Spacer

from cases.catalogue import PARTY_ROLES
from cases.models import Case, Party
from documents.pdf import PageMarks, Slot, Styles, grid, render, styles
from esign.catalogue import PARTY, POSTAL, SEAL
from esign.signing import FieldPlace

TEMPLATES = Path(__file__).parent / "templates"
ROLE_ZH = {
    "applicant": "申请人",
    "respondent": "被申请人",
    "third_party": "第三人",
    "agent": "委托代理人",
}
CN_DIGITS = "零一二三四五六七八九十"
SIGN_W, SIGN_H = 200.0, 62.0
BLANK_TERMS: dict[str, Any] = {
    "facts": "",
    "dispute": "",
    "responsibilities": "",
    "items": [],
    "performance_manner": "",
    "performance_place": "",
    "performance_deadline": "",
    "copies": 0,
    "extra": "",
}
SEAL_BOX = 130.0


@dataclass(frozen=True)
class SignerSlot:
    """One signature place on the signature page."""

    field_name: str
    kind: str  # PARTY | MEDIATOR | SEAL
    label: str  # printed above the slot: "申请人：张三"


@dataclass(frozen=True)
class RenderedAgreement:
    pdf: bytes
    pages: int
    places: list[FieldPlace]


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def template_for(category: str) -> str:
    name = f"{category}.j2"
    return name if (TEMPLATES / name).is_file() else "default.j2"


def _copies_text(n: int) -> str:
    return CN_DIGITS[n] if 0 < n <= 10 else str(n)


def party_context(parties: list[Party]) -> list[dict[str, Any]]:
    """Parties with their agents, ID numbers masked (never the full number in a document)."""
    principals = [p for p in parties if p.role != "agent"]
    out = []
    for p in principals:
        agents = [a for a in parties if a.role == "agent" and a.represents_id == p.id]
        out.append(
            {
                "name": p.name,
                "kind": p.kind,
                "role_label": ROLE_ZH.get(p.role, PARTY_ROLES.get(p.role, p.role)),
                "id_number_masked": p.id_number_masked,
                "address": p.address,
                "agents": [{"name": a.name, "address": a.address} for a in agents],
            }
        )
    return out


def agreement_text(case: Case, terms: dict[str, Any], mediator: str, organisation: str) -> str:
    """The template's output: the Art. 29 content as line markup (also the live preview)."""
    principals = [p for p in case.parties if p.role != "agent"]
    terms = {**BLANK_TERMS, **terms}
    copies = int(terms.get("copies") or len(principals) + 1)
    return (
        _environment()
        .get_template(template_for(case.category))
        .render(
            case_number=case.number,
            parties=party_context(list(case.parties)),
            terms=terms,
            copies_text=_copies_text(copies),
            mediator=mediator,
            organisation=organisation,
        )
    )


def _flowables(text: str, st: Styles) -> list[Flowable]:
    out: list[Flowable] = []
    clause = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("## "):
            out.append(Paragraph(line[3:], st.heading))
        elif line.startswith("# "):
            out.append(Paragraph(line[2:], st.title))
        elif line.startswith("= "):
            out.append(Paragraph(line[2:], st.centred))
        elif line.startswith("- "):
            clause += 1
            out.append(Paragraph(f"{clause}. {line[2:]}", st.body))
        else:
            out.append(Paragraph(line, st.body))
    return out


def _signature_page(slots: list[SignerSlot], st: Styles, postal: bool) -> list[Flowable]:
    out: list[Flowable] = [PageBreak(), Paragraph("签署页", st.title)]
    out.append(
        Paragraph(
            "（此页无正文。各方当事人签名（盖章或按指印）、人民调解员签名并加盖人民调解委员会印章。）",
            st.small,
        )
    )
    out.append(Spacer(1, 6 * mm))
    for slot in slots:
        label = Paragraph(slot.label, st.body)
        if slot.kind == SEAL:
            box: Flowable = Slot(slot.field_name, SEAL_BOX, SEAL_BOX, outline=not postal)
            out.append(KeepTogether([label, grid([[box]], hAlign="LEFT")]))
        elif postal and slot.kind == PARTY:
            row = [
                Slot(slot.field_name, SIGN_W, SIGN_H, "签名"),
                Slot(slot.field_name + "-fingerprint", 70, SIGN_H, "指印"),
                Paragraph("日期：　　年　　月　　日", st.small),
            ]
            out.append(KeepTogether([label, grid([row], hAlign="LEFT")]))
        else:
            out.append(
                KeepTogether(
                    [label, grid([[Slot(slot.field_name, SIGN_W, SIGN_H)]], hAlign="LEFT")]
                )
            )
        out.append(Spacer(1, 3 * mm))
    return out


def render_agreement(
    case: Case,
    terms: dict[str, Any],
    slots: list[SignerSlot],
    *,
    document_id: str,
    verify_url: str,
    mediator: str,
    organisation: str,
    font_path: Path,
    route: str,
) -> RenderedAgreement:
    """The PDF of one version, and where each signer's field goes."""
    st = styles(font_path)
    text = agreement_text(case, terms, mediator, organisation)
    flowables = _flowables(text, st) + _signature_page(slots, st, route == POSTAL)
    marks = PageMarks(
        document_id=document_id,
        header=case.number,
        qr_url=verify_url,
        title="人民调解协议书 " + case.number,
        author=organisation,
    )
    result = render(flowables, marks, font_path)
    names = {s.field_name: s for s in slots}
    places = [
        FieldPlace(name, box.page, box.rect, locks_document=names[name].kind == SEAL)
        for name, box in result.boxes.items()
        if name in names
    ]
    return RenderedAgreement(result.data, result.pages, places)
