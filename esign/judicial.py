"""Judicial confirmation (司法确认, People's Mediation Law Art. 33): the parties apply jointly to
a court within 30 days of the agreement taking effect. We generate the joint application form,
export the package a court asks for, and remind the parties (text message) before the deadline:
the server does it by itself (``send_due_reminders`` every YUNTIAO_JUDICIAL_REMINDER_INTERVAL_S,
``server.reminders``), and ``yuntiao esign remind`` does it once.

The package (zip): the application, the signed agreement, the certificate of completion, the
list of identity documents to attach (ID numbers masked), the evidence list with SHA-256 hashes,
the case's audit trail as a certificate, and — when a hearing-record module provides one —
the hearing record (``HearingRecordSource``; by default the latest frozen record from ``notes``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, Spacer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cases.actor import Actor
from cases.audit import AuditAction, record, verify_chain
from cases.catalogue import N_
from cases.errors import Conflict
from cases.models import AuditEntry, Case, Organisation, utcnow
from cases.notifications import SMS, Notification, OutboxSender, Sender, do_notify
from cases.uow import transaction
from documents.pdf import PageMarks, render, styles
from esign import signing
from esign.agreements import current_version, signers_of
from esign.catalogue import (
    EFFECTIVE,
    JUDICIAL_DEADLINE_DAYS,
    PARTY,
    SMS_JUDICIAL,
    Texts,
    untranslated,
)
from esign.models import Agreement
from esign.pki import Authority
from esign.render import ROLE_ZH
from evidence.models import EvidenceItem

BEIJING = ZoneInfo("Asia/Shanghai")
# (session, case) → (file name, bytes) of the hearing record, or None when there is none.
HearingRecordSource = Callable[[AsyncSession, Case], Awaitable[tuple[str, bytes] | None]]


def deadline(agreement: Agreement) -> dt.datetime | None:
    if agreement.effective_at is None:
        return None
    return agreement.effective_at + dt.timedelta(days=JUDICIAL_DEADLINE_DAYS)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def application_pdf(
    case: Case, agreement: Agreement, organisation: Organisation, font: Path
) -> bytes:
    """司法确认申请书: both parties apply jointly (to be signed by each when filed)."""
    st = styles(font)
    due = deadline(agreement)
    flow: list[Flowable] = [Paragraph("司法确认申请书", st.title)]
    for p in case.parties:
        if p.role == "agent":
            continue
        line = f"申请人（{ROLE_ZH.get(p.role, p.role)}）：{p.name}"
        if p.id_number_masked:
            line += f"，身份证号码：{p.id_number_masked}"
        if p.address:
            line += f"，送达地址：{p.address}"
        if p.phone:
            line += f"，联系电话：{p.phone}"
        flow.append(Paragraph(_esc(line), st.body))
    flow += [
        Paragraph("请求事项", st.heading),
        Paragraph(
            _esc(
                f"请求确认申请人于{_date(agreement.effective_at)}经{organisation.name}主持调解达成的"
                f"调解协议（案号{case.number}）有效。"
            ),
            st.body,
        ),
        Paragraph("事实和理由", st.heading),
        Paragraph(
            _esc(
                f"申请人之间的{case.title}纠纷，经{organisation.name}调解，于{_date(agreement.effective_at)}"
                "达成调解协议。该协议系各方真实意思表示，内容不违反法律、行政法规的强制性规定，"
                "不损害国家利益、社会公共利益和他人合法权益。申请人依照《中华人民共和国人民调解法》"
                "第三十三条、《中华人民共和国民事诉讼法》的规定，在调解协议生效之日起三十日内共同申请司法确认。"
            ),
            st.body,
        ),
        Paragraph(f"申请期限届满日：{_date(due)}", st.body),
        Paragraph("申请人承诺：提交的材料真实、合法；如有虚假，愿承担相应法律责任。", st.body),
        Paragraph(
            "附：调解协议书、各方身份证明、与调解协议相关的财产权利证明、送达地址确认、授权委托书（如有代理人）。",
            st.small,
        ),
        Spacer(1, 10 * mm),
    ]
    for p in case.parties:
        if p.role != "agent":
            flow.append(
                Paragraph(_esc(f"申请人：{p.name}（签名或盖章）　　　　年　　月　　日"), st.body)
            )
            flow.append(Spacer(1, 6 * mm))
    return render(
        flow,
        PageMarks(document_id=f"YT-JC-{agreement.id}", header=case.number, title="司法确认申请书"),
        font,
    ).data


def _date(value: dt.datetime | None) -> str:
    return value.astimezone(BEIJING).strftime("%Y年%m月%d日") if value else "　　年　　月　　日"


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return ("\ufeff" + out.getvalue()).encode()  # BOM: spreadsheet programs read it as UTF-8


async def audit_certificate_pdf(
    case: Case,
    entries: list[AuditEntry],
    chain_ok: bool,
    chain_text: str,
    authority: Authority,
    font: Path,
) -> bytes:
    """The case's audit trail as a PDF certified by the platform: each row with its hash, and
    the result of re-checking the whole chain at export time."""
    st = styles(font)
    flow: list[Flowable] = [
        Paragraph("审计记录证明", st.title),
        Paragraph(_esc(f"案号：{case.number}"), st.body),
        Paragraph(
            _esc(
                f"导出时对全平台审计哈希链重新校验：{'通过' if chain_ok else '未通过'}（{chain_text}）。"
                "每行的哈希为该行内容与前一行哈希的 SHA-256，任何事后修改、删除或插入都会使校验失败。"
            ),
            st.body,
        ),
        Spacer(1, 3 * mm),
    ]
    for e in entries:
        line = (
            f"#{e.seq}　{e.at.astimezone(BEIJING).strftime('%Y-%m-%d %H:%M:%S')}　"
            f"{e.actor_label or e.actor_type}　{e.action}　IP {e.ip or '—'}　SHA-256 {e.hash}"
        )
        flow.append(Paragraph(_esc(line), st.small))
    rendered = render(
        flow,
        PageMarks(document_id=f"YT-AUDIT-{case.id}", header=case.number, title="审计记录证明"),
        font,
    )
    return await signing.issue(
        rendered.data,
        [],
        authority.issue_signer("云调平台", case.number, "", "审计记录证明"),
        authority.timestamper,
        name="云调平台",
        reason="审计记录证明",
    )


async def frozen_hearing_record(session: AsyncSession, case: Case) -> tuple[str, bytes] | None:
    """The case's latest frozen hearing record (``notes``), the PDF every party confirmed."""
    from notes.record import frozen_records

    records = [r for r in await frozen_records(session, case.id) if r.frozen_pdf]
    if not records:
        return None
    latest = records[-1]
    assert latest.frozen_pdf is not None
    return f"调解笔录-{latest.frozen_sha256[:12]}.pdf", latest.frozen_pdf


async def do_export_package(
    session: AsyncSession,
    actor: Actor,
    case: Case,
    agreement: Agreement,
    font: Path,
    authority: Authority,
    *,
    hearing_record: HearingRecordSource | None = None,
) -> bytes:
    """The zip a court receives with the joint application. Audited."""
    if agreement.status != EFFECTIVE:
        raise Conflict(
            N_("Judicial confirmation needs an agreement in force."), code="agreement_not_effective"
        )
    version = await current_version(session, agreement)
    organisation = await session.get(Organisation, case.organisation_id)
    assert organisation is not None and version.pdf is not None
    signers = await signers_of(session, version)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("01-司法确认申请书.pdf", application_pdf(case, agreement, organisation, font))
        z.writestr(f"02-调解协议书-{version.document_id}.pdf", version.pdf)
        if version.completion_pdf:
            z.writestr("03-电子签署完成证明.pdf", version.completion_pdf)
        identity = [["当事人", "身份", "证件号码（脱敏）", "应附身份证明", "签署方式", "签署时间"]]
        by_party = {s.party_id: s for s in signers if s.kind == PARTY}
        for p in case.parties:
            s = by_party.get(p.id)
            identity.append(
                [
                    p.name,
                    ROLE_ZH.get(p.role, p.role),
                    p.id_number_masked,
                    "营业执照副本及法定代表人身份证明"
                    if p.kind == "organisation"
                    else "居民身份证复印件",
                    (s.route if s else "授权委托书"),
                    s.signed_at.isoformat() if s and s.signed_at else "",
                ]
            )
        z.writestr("04-身份证明清单.csv", _csv(identity))
        items = await session.scalars(
            select(EvidenceItem)
            .where(EvidenceItem.case_id == case.id)
            .order_by(EvidenceItem.number)
        )
        evidence = [
            ["编号", "名称", "类别", "证明目的", "提交人", "提交时间", "SHA-256", "字节", "状态"]
        ]
        for item in items:
            evidence.append(
                [
                    str(item.number),
                    item.title,
                    item.category,
                    item.purpose,
                    item.submitter_label,
                    item.submitted_at.isoformat(),
                    item.sha256,
                    str(item.size),
                    item.status,
                ]
            )
        z.writestr("05-证据清单.csv", _csv(evidence))
        chain = await verify_chain(session)
        entries = list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.case_id == case.id).order_by(AuditEntry.seq)
            )
        )
        chain_text = f"共 {chain.rows} 行" if chain.ok else chain.problem
        z.writestr(
            "06-审计记录证明.pdf",
            await audit_certificate_pdf(case, entries, chain.ok, chain_text, authority, font),
        )
        audit = [["序号", "时间（UTC）", "操作人", "操作", "IP", "本行哈希", "前一行哈希"]]
        for e in entries:
            audit.append(
                [str(e.seq), e.at.isoformat(), e.actor_label, e.action, e.ip, e.hash, e.prev_hash]
            )
        audit.append([])
        audit.append(
            [
                "审计链校验",
                "通过" if chain.ok else f"未通过：{chain.problem}",
                f"共 {chain.rows} 行",
            ]
        )
        z.writestr("06-审计记录证明.csv", _csv(audit))
        record_file = await (hearing_record or frozen_hearing_record)(session, case)
        if record_file is not None:
            z.writestr(f"07-{record_file[0]}", record_file[1])
        else:
            z.writestr(
                "07-调解笔录-说明.txt",
                "本案尚无定稿的调解笔录（调解员在调解会议结束时定稿），请另行附上调解笔录。\n".encode(),
            )
    await record(
        session,
        actor,
        AuditAction.JUDICIAL_PACKAGE_EXPORTED,
        object_type="agreement",
        object_id=agreement.id,
        case_id=case.id,
        organisation_id=case.organisation_id,
        details={"document_id": version.document_id},
    )
    return buffer.getvalue()


async def do_send_reminders(
    session: AsyncSession,
    actor: Actor,
    sender: Sender,
    now: dt.datetime,
    days_before: int,
    texts: Texts = untranslated,
) -> list[int]:
    """Remind the parties (text message) and record it, once per agreement, when the 30-day
    deadline is at most ``days_before`` days away and not yet passed. Returns agreement ids."""
    horizon = now - dt.timedelta(days=JUDICIAL_DEADLINE_DAYS - days_before)
    due = await session.scalars(
        select(Agreement).where(
            Agreement.status == EFFECTIVE,
            Agreement.judicial_reminded_at.is_(None),
            Agreement.effective_at <= horizon,
            Agreement.effective_at > now - dt.timedelta(days=JUDICIAL_DEADLINE_DAYS),
        )
    )
    reminded = []
    for agreement in list(due):
        case = await session.get(Case, agreement.case_id)
        if case is None:
            continue
        # Claim it first: two runs at once (several server processes, or cron as well) remind
        # once. Texts only go out in the transaction that made the claim.
        claimed = await session.execute(
            update(Agreement)
            .where(Agreement.id == agreement.id, Agreement.judicial_reminded_at.is_(None))
            .values(judicial_reminded_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            continue
        end = deadline(agreement)
        for party in case.parties:
            if party.role == "agent" or not party.phone:
                continue
            await do_notify(
                session,
                actor,
                sender,
                Notification(
                    channel=SMS,
                    recipient=party.phone,
                    body=texts(
                        SMS_JUDICIAL,
                        {
                            "number": case.number,
                            "deadline": end.astimezone(BEIJING).date().isoformat() if end else "",
                        },
                    ),
                    case_id=case.id,
                ),
                case=case,
            )
        await record(
            session,
            actor,
            AuditAction.JUDICIAL_REMINDER_SENT,
            object_type="agreement",
            object_id=agreement.id,
            case_id=case.id,
            organisation_id=case.organisation_id,
            details={"deadline": end.isoformat() if end else ""},
        )
        reminded.append(agreement.id)
    await session.flush()
    return reminded


async def send_due_reminders(
    maker: async_sessionmaker[AsyncSession],
    days_before: int,
    texts: Texts = untranslated,
    *,
    now: dt.datetime | None = None,
    label: str = "reminders",
) -> list[int]:
    """One round of ``do_send_reminders`` in a transaction of its own, texts to the outbox: what
    each server process runs every YUNTIAO_JUDICIAL_REMINDER_INTERVAL_S seconds and what
    ``yuntiao esign remind`` runs once. Returns the ids of the agreements reminded."""
    async with transaction(maker) as session:
        return await do_send_reminders(
            session,
            Actor.system(label),
            OutboxSender(session),
            now or dt.datetime.now(dt.UTC),
            days_before,
            texts,
        )
