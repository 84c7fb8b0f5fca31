"""Demo leads, companies, campaigns, activities and a capture form for the demo
company (accounts' `demo_data` command runs this loader). Idempotent: a tenant that
already has leads is left alone. Campaigns hosts it because it may use both apps."""

import random
from datetime import date, timedelta
from decimal import Decimal

from django.utils import timezone

from accounts.models import Membership, Role, Tenant
from accounts.services import SYSTEM
from accounts.tenancy import tenant_scope
from campaigns.models import CampaignChannel
from campaigns.services import campaign_create, memberships_add_bulk
from leads.capture.services import capture_form_create
from leads.models import ActivityType, Channel, Lead, LifecycleStage
from leads.services import activity_record, lead_change_stage, lead_upsert

DEMO_TENANT = "ryorin-shoji"

COMPANIES = [
    ("株式会社さくらシステム", "sakura-sys.co.jp", "情報通信業", "13"),
    ("みなと物流株式会社", "minato-logi.co.jp", "運輸業", "14"),
    ("(株)ひかりメディカル", "hikari-med.jp", "医療", "27"),
    ("North Star Trading Co., Ltd.", "northstar-trading.com", "卸売業", "13"),
    ("大和精機株式会社", "yamato-seiki.co.jp", "製造業", "23"),
    ("合同会社あおば企画", "aoba-kikaku.jp", "サービス業", "04"),
]
FAMILY = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤"]
GIVEN = ["翔太", "陽菜", "大輝", "美咲", "健一", "由美", "拓也", "彩", "直樹", "真由"]
FAMILY_KANA = [
    "サトウ",
    "スズキ",
    "タカハシ",
    "タナカ",
    "イトウ",
    "ワタナベ",
    "ヤマモト",
    "ナカムラ",
    "コバヤシ",
    "カトウ",
]
GIVEN_KANA = [
    "ショウタ",
    "ヒナ",
    "ダイキ",
    "ミサキ",
    "ケンイチ",
    "ユミ",
    "タクヤ",
    "アヤ",
    "ナオキ",
    "マユ",
]
TITLES = ["部長", "課長", "マネージャー", "エンジニア", "担当", "取締役"]
DEPARTMENTS = ["営業部", "マーケティング部", "情報システム部", "経営企画室", "購買部"]


def load(stdout) -> None:
    tenant = Tenant.objects.filter(slug=DEMO_TENANT).first()
    if tenant is None:
        return
    with tenant_scope(tenant.id):
        if Lead.objects.exists():
            return
        owners = list(
            Membership.objects.filter(role__in=[Role.INSIDE_SALES, Role.FIELD_SALES]).values_list(
                "user_id", flat=True
            )
        )
    rng = random.Random(2026)  # noqa: S311  (demo data, not security)
    today = date.today()
    campaigns = [
        campaign_create(
            tenant_id=tenant.id,
            origin=SYSTEM,
            name=name,
            channel=channel,
            status="active",
            starts_on=today - timedelta(days=days),
            budget=Decimal(budget),
            actual_cost=Decimal(cost),
            target_leads=target,
            utm_campaign=utm,
        )
        for name, channel, days, budget, cost, target, utm in [
            (
                "DX推進ウェビナー 2026秋",
                CampaignChannel.WEBINAR,
                40,
                "300000",
                "240000",
                80,
                "dx-webinar-2026",
            ),
            (
                "Japan IT Week 秋 出展",
                CampaignChannel.TRADE_SHOW,
                60,
                "2500000",
                "2380000",
                200,
                "itweek-2026",
            ),
            (
                "導入事例ホワイトペーパー",
                CampaignChannel.CONTENT,
                90,
                "150000",
                "90000",
                120,
                "case-study-wp",
            ),
            (
                "リスティング広告 Q4",
                CampaignChannel.PAID_ADS,
                30,
                "800000",
                "410000",
                150,
                "listing-q4",
            ),
        ]
    ]
    capture_form_create(
        tenant_id=tenant.id,
        origin=SYSTEM,
        name="資料請求フォーム",
        campaign_id=campaigns[2].id,
        fields=[
            {
                "name": "email",
                "label": "メールアドレス",
                "maps_to": "lead.email",
                "type": "email",
                "required": True,
            },
            {
                "name": "family_name",
                "label": "姓",
                "maps_to": "lead.family_name",
                "type": "text",
                "required": True,
            },
            {
                "name": "given_name",
                "label": "名",
                "maps_to": "lead.given_name",
                "type": "text",
                "required": False,
            },
            {
                "name": "company",
                "label": "会社名",
                "maps_to": "lead.company_name",
                "type": "text",
                "required": True,
            },
        ],
        consent_text="両輪商事からのお知らせメールを受け取る",
        thank_you_message="資料請求ありがとうございました。担当者よりご連絡いたします。",
    )
    stages = [LifecycleStage.LEAD] * 6 + [LifecycleStage.MQL] * 2 + [LifecycleStage.SQL]
    leads_by_campaign: dict[int, list[int]] = {c.id: [] for c in campaigns}
    activities = []
    for n in range(60):
        company_name, domain, industry, prefecture = COMPANIES[n % len(COMPANIES)]
        f, g = rng.randrange(len(FAMILY)), rng.randrange(len(GIVEN))
        campaign = campaigns[n % len(campaigns)]
        lead = lead_upsert(
            tenant_id=tenant.id,
            email=f"demo{n:02d}@{domain}",
            channel=Channel.IMPORT,
            origin=SYSTEM,
            source_campaign_id=campaign.id,
            fields={
                "family_name": FAMILY[f],
                "given_name": GIVEN[g],
                "family_name_kana": FAMILY_KANA[f],
                "given_name_kana": GIVEN_KANA[g],
                "job_title": rng.choice(TITLES),
                "department": rng.choice(DEPARTMENTS),
                "company_name": company_name,
                "company_domain": domain,
                "industry": industry,
                "prefecture": prefecture,
                "owner_id": rng.choice(owners) if owners else None,
            },
        ).lead
        leads_by_campaign[campaign.id].append(lead.id)
        stage = rng.choice(stages)
        if stage != LifecycleStage.LEAD:
            lead_change_stage(
                lead=lead,
                to_stage=stage,
                origin=SYSTEM,
                channel=Channel.SYSTEM,
                reason="デモデータ",
            )
        for _ in range(rng.randint(1, 8)):
            activities.append(
                {
                    "lead": lead,
                    "type": rng.choice(
                        [ActivityType.PAGE_VIEW] * 4
                        + [ActivityType.EMAIL_OPENED, ActivityType.CONTENT_DOWNLOAD]
                    ),
                    "occurred_at": timezone.now() - timedelta(hours=rng.randint(1, 24 * 60)),
                    "campaign_id": campaign.id,
                    "properties": {
                        "url": rng.choice(
                            [
                                "https://ryorin.example/pricing",
                                "https://ryorin.example/case-studies",
                                "https://ryorin.example/",
                            ]
                        )
                    },
                }
            )
    for campaign_id, lead_ids in leads_by_campaign.items():
        memberships_add_bulk(tenant_id=tenant.id, campaign_id=campaign_id, lead_ids=lead_ids)
    # One by one: a few hundred rows, and this path works on SQLite too.
    for activity in activities:
        activity_record(tenant_id=tenant.id, channel=Channel.SYSTEM, **activity)
    stdout.write(
        f"  Demo leads: 60 leads, {len(campaigns)} campaigns, {len(activities)} activities"
    )
