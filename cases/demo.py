"""Demo data for a first start: two organisations from the seed reports, their staff and a sample
case (the Yichang three-province design-patent dispute). Seeded once; passwords are random and
kept in DATA_DIR/demo-accounts.txt (mode 0600), never in code."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cases.accounts import create_user
from cases.actor import Actor
from cases.audit import AuditAction, record
from cases.dispatch import do_add_rule, do_assign_mediator
from cases.intake import CaseInput, PartyInput, do_create_case
from cases.models import AuditEntry
from cases.organisations import do_create_organisation
from cases.protect import FieldCipher


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    role: str
    display_name: str


async def already_seeded(session: AsyncSession) -> bool:
    return bool(
        await session.scalar(
            select(AuditEntry.seq).where(AuditEntry.action == str(AuditAction.DEMO_SEEDED)).limit(1)
        )
    )


async def seed_demo(session: AsyncSession, cipher: FieldCipher) -> list[DemoLogin]:
    """Create the demo organisation, accounts and sample case; the caller commits."""
    actor = Actor.system("demo-seed")
    yichang = await do_create_organisation(
        session,
        actor,
        name="宜昌市伍家岗区联合人民调解委员会",
        short_name="伍联",
        kind="peoples_committee",
        categories=[
            "intellectual_property",
            "contract",
            "property_management",
            "neighbourhood",
            "family",
            "labour",
            "consumer",
        ],
        address="湖北省宜昌市伍家岗区综治中心三楼",
        phone="0717-6000000",
    )
    yingkou = await do_create_organisation(
        session,
        actor,
        name="营口片区人民调解委员会",
        short_name="营自贸",
        kind="peoples_committee",
        categories=["small_finance", "labour", "commercial"],
        address="辽宁省营口市自贸试验区",
        phone="0417-6000000",
    )
    await do_add_rule(session, actor, "intellectual_property", yichang.id, priority=10)
    await do_add_rule(session, actor, "small_finance", yingkou.id, priority=10)

    specs = [
        ("sysadmin", "system_admin", "平台管理员", None, []),
        ("admin", "org_admin", "王主任", yichang.id, []),
        (
            "mediator",
            "mediator",
            "李静",
            yichang.id,
            ["intellectual_property", "contract", "commercial"],
        ),
        (
            "mediator2",
            "mediator",
            "张建国",
            yichang.id,
            ["property_management", "neighbourhood", "family"],
        ),
        ("clerk", "clerk", "陈书记员", yichang.id, []),
    ]
    logins: list[DemoLogin] = []
    users = {}
    for username, role, name, org_id, categories in specs:
        password = secrets.token_urlsafe(9)
        users[username] = await create_user(
            session,
            actor,
            username=username,
            password=password,
            display_name=name,
            role=role,
            organisation_id=org_id,
            categories=categories,
        )
        logins.append(DemoLogin(username, password, role, name))

    case = await do_create_case(
        session,
        actor,
        cipher,
        yichang.id,
        CaseInput(
            channel="court_referral",
            referred_by="宜昌市中级人民法院",
            referral_reference="（2026）鄂05民初委调12号",
            category="intellectual_property",
            title="外观设计专利侵权纠纷（跨三省）",
            summary=(
                "申请人系宜昌某家居用品企业，其“多功能收纳凳”外观设计专利被浙江、广东两地商家在电商平台"
                "销售的同款产品涉嫌侵权。申请人请求停止销售、下架链接并赔偿经济损失。"
                "当事人分处湖北、浙江、广东三省，同意通过云调解方式进行。"
            ),
            claim_amount=Decimal("300000.00"),
            parties=[
                PartyInput(
                    role="applicant",
                    kind="organisation",
                    name="宜昌某家居用品有限公司",
                    phone="13800000001",
                    address="湖北省宜昌市伍家岗区",
                ),
                PartyInput(
                    role="respondent",
                    kind="organisation",
                    name="义乌某电子商务有限公司",
                    phone="13800000002",
                    address="浙江省义乌市",
                ),
                PartyInput(
                    role="respondent",
                    kind="person",
                    name="刘某",
                    phone="13800000003",
                    id_number="440106199001011235",
                    address="广东省广州市天河区",
                ),
                PartyInput(
                    role="agent",
                    name="赵律师",
                    phone="13800000004",
                    address="湖北某律师事务所",
                    represents_index=0,
                ),
            ],
        ),
    )
    await do_assign_mediator(session, actor, cipher, case, users["mediator"].id, note="demo seed")
    await record(
        session,
        actor,
        AuditAction.DEMO_SEEDED,
        object_type="organisation",
        object_id=yichang.id,
        organisation_id=yichang.id,
    )
    return logins
