"""The certificate of completion (签署完成证明): a separate PDF, certified by the platform, that
lists each signer, how their identity was confirmed, from which IP address and browser, when
they viewed and signed, and the SHA-256 of the document before and after signing.

It is separate rather than appended because the agreement is locked (DocMDP) from its issue on;
appending a page would break every signature on it."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

from reportlab.lib import colors
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, Spacer, Table, TableStyle

from cases.models import Case
from documents.pdf import FONT_NAME, PageMarks, render, styles
from esign import signing
from esign.catalogue import EVENTS, MEDIATOR, PARTY, POSTAL, SEAL
from esign.models import Agreement, AgreementSigner, AgreementVersion, SignatureEvent
from esign.pki import Authority

BEIJING = ZoneInfo("Asia/Shanghai")
EVENT_ZH = {
    "issued": "签发",
    "viewed": "查看文书",
    "code_sent": "发送验证码",
    "code_failed": "验证码错误",
    "code_verified": "验证码核验通过",
    "signed": "签署",
    "voided": "作废",
}


def _t(value: object) -> str:
    import datetime as dt

    if isinstance(value, dt.datetime):
        return value.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S（北京时间）")
    return "—"


def _identity(signer: AgreementSigner) -> str:
    if signer.kind == PARTY and signer.route == POSTAL:
        return "纸质文书邮寄签署（签名、指印），回寄扫描件存证"
    if signer.kind == PARTY:
        return f"一次性短信验证码，发送至 {signer.verified_recipient or '—'}"
    if signer.kind == MEDIATOR:
        return "调解员账户登录（会话）"
    if signer.kind == SEAL:
        return "机构管理员账户登录（会话）"
    return "—"


async def certificate_pdf(
    case: Case,
    agreement: Agreement,
    version: AgreementVersion,
    signers: list[AgreementSigner],
    events: list[SignatureEvent],
    authority: Authority,
    font_path: Path,
    verify_url: str,
) -> bytes:
    st = styles(font_path)
    flow: list[Flowable] = [
        Paragraph("电子签署完成证明", st.title),
        Paragraph(f"案号：{case.number}", st.body),
        Paragraph(f"文书编号：{version.document_id}（第{version.number}版）", st.body),
        Paragraph(f"签发时文书 SHA-256：{version.issued_sha256}", st.small),
        Paragraph(f"签署完成后文书 SHA-256：{version.pdf_sha256}", st.small),
        Paragraph(f"生效时间：{_t(agreement.effective_at)}", st.body),
        Spacer(1, 4 * mm),
    ]
    header = ["签署人", "身份核验方式", "IP 地址", "浏览器", "查看时间", "签署时间"]
    rows: list[list[Flowable]] = [[Paragraph(h, st.small) for h in header]]
    for s in signers:
        cells = [
            s.role_label,
            _identity(s),
            s.signed_ip or "—",
            (s.signed_user_agent or "—")[:120],
            _t(s.viewed_at),
            _t(s.signed_at),
        ]
        rows.append([Paragraph(_escape(c), st.small) for c in cells])
    table = Table(
        rows, colWidths=[30 * mm, 36 * mm, 22 * mm, 38 * mm, 22 * mm, 22 * mm], repeatRows=1
    )
    table.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), FONT_NAME),
                ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#888888")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
            ]
        )
    )
    flow.append(table)
    flow.append(Spacer(1, 5 * mm))
    flow.append(Paragraph("签署过程记录", st.heading))
    names = {s.id: s.name for s in signers}
    for e in events:
        who = names.get(e.signer_id or 0, e.actor_label)
        what = EVENT_ZH.get(e.event, EVENTS.get(e.event, e.event))
        flow.append(Paragraph(_escape(f"{_t(e.at)}　{who}　{what}　IP {e.ip or '—'}"), st.small))
    flow.append(Spacer(1, 5 * mm))
    flow.append(
        Paragraph(
            "每位当事人的签名均使用为其单独生成、经平台 CA 认证且签署后即销毁的密钥，并附 RFC 3161 "
            "可信时间戳；文书签发后即以 DocMDP 锁定，任何改动均可被检测（《电子签名法》第十三条）。",
            st.small,
        )
    )
    rendered = render(
        flow,
        PageMarks(
            document_id=version.document_id + "-C",
            header=case.number,
            qr_url=verify_url,
            title="电子签署完成证明 " + case.number,
        ),
        font_path,
    )
    return await signing.issue(
        rendered.data,
        [],
        authority.issue_signer("云调平台", case.number, "", "签署完成证明"),
        authority.timestamper,
        name="云调平台",
        reason="电子签署完成证明",
    )


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
