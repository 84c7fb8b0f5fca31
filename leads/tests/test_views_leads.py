"""The leads list, lead page and company page of the staff UI: rendering, filters,
keyset pages, bulk actions, CSV export, and who may do what."""

import csv
import io

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import Role
from accounts.tenancy import tenant_scope
from campaigns.tests.factories import CampaignFactory, CampaignMembershipFactory
from leads.models import Activity, ActivityType, ConsentEvent, Lead, LifecycleTransition
from leads.tests.factories import (
    ActivityFactory,
    CompanyFactory,
    LeadFactory,
    LeadTagFactory,
    LifecycleTransitionFactory,
    TagFactory,
)

pytestmark = pytest.mark.django_db


def url(world, name: str, **kwargs) -> str:
    return reverse(f"leads:{name}", kwargs={"tenant": world.tenant.slug, **kwargs})


def client_for(world, role=Role.MARKETING) -> Client:
    return login(world.member(role))


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make_lead(world, **kwargs) -> Lead:
    return LeadFactory(tenant=world.tenant, **kwargs)


# --- List ----------------------------------------------------------------------------------------


def test_list_renders_for_marketing_with_names_in_japanese_order(world_a):
    company = CompanyFactory(tenant=world_a.tenant, name="株式会社両輪商事")
    make_lead(
        world_a, family_name="山田", given_name="太郎", family_name_kana="ヤマダ", company=company
    )
    response = client_for(world_a).get(url(world_a, "index"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "山田 太郎" in body
    assert "ヤマダ" in body
    assert "株式会社両輪商事" in body
    assert 'data-testid="bulk-tag"' in body  # marketing may act on rows


def test_read_only_sees_the_list_without_bulk_actions(world_a):
    make_lead(world_a)
    response = client_for(world_a, Role.READ_ONLY).get(url(world_a, "index"))
    assert response.status_code == 200
    assert 'data-testid="bulk-tag"' not in response.content.decode()


def test_another_tenants_user_gets_404(world_a, world_b):
    lead = make_lead(world_a)
    company = CompanyFactory(tenant=world_a.tenant)
    other = login(world_b.owner)
    assert other.get(url(world_a, "index")).status_code == 404
    assert other.get(url(world_a, "detail", pk=lead.pk)).status_code == 404
    assert other.get(url(world_a, "company", pk=company.pk)).status_code == 404
    assert other.get(url(world_a, "export")).status_code == 404
    # Its own tenant in the URL, A's ids: 404 as well.
    assert other.get(url(world_b, "detail", pk=lead.pk)).status_code == 404
    assert other.get(url(world_b, "company", pk=company.pk)).status_code == 404


def test_filters_and_search(world_a):
    tagged = make_lead(world_a, family_name="佐藤", given_name="花子", family_name_kana="サトウ")
    LeadTagFactory(
        tenant=world_a.tenant, lead=tagged, tag=TagFactory(tenant=world_a.tenant, name="展示会")
    )
    mql = make_lead(world_a, family_name="鈴木", given_name="一郎", lifecycle_stage="mql")
    make_lead(world_a, family_name="高橋", given_name="二郎")
    client = client_for(world_a)

    def names(params) -> set[str]:
        body = client.get(url(world_a, "index"), params).content.decode()
        return {name for name in ("佐藤 花子", "鈴木 一郎", "高橋 二郎") if name in body}

    assert names({}) == {"佐藤 花子", "鈴木 一郎", "高橋 二郎"}
    assert names({"stage": "mql"}) == {"鈴木 一郎"}
    assert names({"tag": "展示会"}) == {"佐藤 花子"}
    assert names({"q": "さとう"}) == {"佐藤 花子"}  # hiragana finds the katakana reading
    assert names({"q": mql.email}) == {"鈴木 一郎"}
    assert names({"owner": "none", "stage": "lead"}) == {"佐藤 花子", "高橋 二郎"}


def test_campaign_filter_covers_source_and_members(world_a):
    campaign = CampaignFactory(tenant=world_a.tenant)
    make_lead(world_a, family_name="源", given_name="一", source_campaign=campaign)
    member = make_lead(world_a, family_name="会員", given_name="二")
    CampaignMembershipFactory(tenant=world_a.tenant, campaign=campaign, lead=member)
    make_lead(world_a, family_name="無関係", given_name="三")
    body = (
        client_for(world_a).get(url(world_a, "index"), {"campaign": campaign.pk}).content.decode()
    )
    assert "源 一" in body
    assert "会員 二" in body
    assert "無関係" not in body


def test_htmx_request_gets_only_the_results(world_a):
    make_lead(world_a, family_name="山田")
    response = client_for(world_a).get(url(world_a, "index"), HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="lead-results"' in body
    assert "<html" not in body
    assert "HX-Request" in response["Vary"]


def test_keyset_pages_forward_and_back_by_name(world_a):
    for index in range(60):
        make_lead(world_a, family_name=f"姓{index:02d}", given_name="名")
    client = client_for(world_a)
    first = client.get(url(world_a, "index"), {"sort": "name"})
    page = first.context["page"]
    assert [lead.family_name for lead in page.rows][:2] == ["姓00", "姓01"]
    assert len(page.rows) == 50
    assert page.previous_cursor is None
    second = client.get(url(world_a, "index"), {"sort": "name", "cursor": page.next_cursor})
    rows = second.context["page"].rows
    assert [lead.family_name for lead in rows] == [f"姓{i}" for i in range(50, 60)]
    assert second.context["page"].next_cursor is None
    back = client.get(
        url(world_a, "index"), {"sort": "name", "cursor": second.context["page"].previous_cursor}
    )
    assert back.context["page"].rows[0].family_name == "姓00"
    # An edited cursor falls back to the first page instead of failing.
    broken = client.get(url(world_a, "index"), {"sort": "name", "cursor": "garbage"})
    assert broken.status_code == 200
    assert broken.context["page"].rows[0].family_name == "姓00"


# --- Bulk actions ------------------------------------------------------------------------------


def test_bulk_tag_selected_rows(world_a):
    chosen, other = make_lead(world_a), make_lead(world_a)
    response = client_for(world_a).post(
        url(world_a, "bulk_tag"), {"ids": [chosen.pk], "scope": "selected", "tags": "展示会, VIP"}
    )
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        assert sorted(chosen.tags.values_list("name", flat=True)) == ["VIP", "展示会"]
        assert other.tags.count() == 0


def test_bulk_owner_on_everything_matching_the_filter(world_a):
    mqls = [make_lead(world_a, lifecycle_stage="mql") for _ in range(3)]
    untouched = make_lead(world_a, lifecycle_stage="lead")
    seller = world_a.member(Role.INSIDE_SALES)
    response = client_for(world_a).post(
        url(world_a, "bulk_owner"),
        {
            "scope": "all",
            "filter": "stage=mql",
            "owner": str(seller.pk),
            "return_query": "stage=mql",
        },
    )
    assert response.status_code == 302
    assert response["Location"].endswith("?stage=mql")
    with tenant_scope(world_a.tenant.id):
        assert {lead.owner_id for lead in Lead.objects.filter(pk__in=[m.pk for m in mqls])} == {
            seller.pk
        }
        assert Lead.objects.get(pk=untouched.pk).owner_id is None


def test_bulk_actions_ignore_another_tenants_ids(world_a, world_b):
    theirs = make_lead(world_b)
    client_for(world_a).post(url(world_a, "bulk_tag"), {"ids": [theirs.pk], "tags": "x"})
    with tenant_scope(world_b.tenant.id):
        assert theirs.tags.count() == 0


def test_bulk_owner_refuses_someone_outside_the_tenant(world_a, world_b):
    lead = make_lead(world_a)
    client = client_for(world_a)
    response = client.post(
        url(world_a, "bulk_owner"), {"ids": [lead.pk], "owner": str(world_b.owner.pk)}, follow=True
    )
    assert response.status_code == 200
    with tenant_scope(world_a.tenant.id):
        assert Lead.objects.get(pk=lead.pk).owner_id is None


@pytest.mark.parametrize("role", [Role.READ_ONLY])
def test_read_only_may_not_run_bulk_actions(world_a, role):
    lead = make_lead(world_a)
    client = client_for(world_a, role)
    assert client.post(url(world_a, "bulk_tag"), {"ids": [lead.pk], "tags": "x"}).status_code == 403
    assert (
        client.post(url(world_a, "bulk_owner"), {"ids": [lead.pk], "owner": "none"}).status_code
        == 403
    )


# --- Export ---------------------------------------------------------------------------------------


def test_csv_export_has_a_bom_japanese_and_only_the_filtered_leads(world_a):
    make_lead(world_a, family_name="山田", given_name="太郎", lifecycle_stage="mql")
    make_lead(world_a, family_name="=cmd", given_name="x", lifecycle_stage="mql")
    make_lead(world_a, family_name="除外", given_name="", lifecycle_stage="lead")
    response = client_for(world_a).get(url(world_a, "export"), {"stage": "mql"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    raw = b"".join(response.streaming_content)
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:3] == ["ID", "姓", "名"]  # Japanese headers by default
    families = [row[1] for row in rows[1:]]
    assert sorted(families) == ["'=cmd", "山田"]  # formula defused, other stage left out
    assert rows[1][10] == "MQL"


# --- Lead page ------------------------------------------------------------------------------------


def test_lead_page_shows_one_timeline_newest_first(world_a):
    lead = make_lead(world_a)
    campaign = CampaignFactory(tenant=world_a.tenant, name="資料請求キャンペーン")
    CampaignMembershipFactory(tenant=world_a.tenant, campaign=campaign, lead=lead)
    ActivityFactory(
        tenant=world_a.tenant, lead=lead, type=ActivityType.FORM_SUBMISSION,
        properties={"form_name": "資料請求フォーム", "url": "https://example.co.jp/dl"},
    )  # fmt: skip
    LifecycleTransitionFactory(tenant=world_a.tenant, lead=lead, from_stage="lead", to_stage="mql")
    response = client_for(world_a).get(url(world_a, "detail", pk=lead.pk))
    assert response.status_code == 200
    body = response.content.decode()
    assert "資料請求フォーム" in body
    assert "資料請求キャンペーン" in body
    kinds = [item["kind"] for item in response.context["timeline"]["items"]]
    assert kinds[0] == "transition"
    assert "activity" in kinds


def test_timeline_load_more(world_a):
    lead = make_lead(world_a)
    for index in range(35):
        ActivityFactory(
            tenant=world_a.tenant, lead=lead, properties={"url": f"https://x.jp/{index}"}
        )
    client = client_for(world_a)
    first = client.get(url(world_a, "detail", pk=lead.pk)).context["timeline"]
    assert len(first["items"]) == 30
    assert first["next_cursor"]
    more = client.get(url(world_a, "timeline", pk=lead.pk), {"cursor": first["next_cursor"]})
    assert len(more.context["timeline"]["items"]) == 5
    assert more.context["timeline"]["next_cursor"] is None


def test_edit_lead(world_a):
    lead = make_lead(world_a, family_name="山田", given_name="太郎")
    client = client_for(world_a)
    assert client.get(url(world_a, "edit", pk=lead.pk)).status_code == 200
    response = client.post(
        url(world_a, "edit", pk=lead.pk),
        {"family_name": "山田", "given_name": "次郎", "family_name_kana": "やまだ",
         "email": lead.email, "company_name": "株式会社新会社", "tags": "重要", "owner": ""},
    )  # fmt: skip
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        lead.refresh_from_db()
        assert lead.given_name == "次郎"
        assert lead.family_name_kana == "ヤマダ"
        assert lead.company.name == "株式会社新会社"
        assert list(lead.tags.values_list("name", flat=True)) == ["重要"]


def test_edit_shows_service_errors_on_the_field(world_a):
    lead = make_lead(world_a)
    other = make_lead(world_a)
    client = client_for(world_a)
    response = client.post(url(world_a, "edit", pk=lead.pk), {"email": other.email})
    assert response.status_code == 400
    assert "email" in response.context["form"].errors
    response = client.post(
        url(world_a, "edit", pk=lead.pk), {"email": lead.email, "family_name_kana": "山田"}
    )
    assert response.status_code == 400
    assert "family_name_kana" in response.context["form"].errors


def test_change_stage_records_the_reason(world_a):
    lead = make_lead(world_a)
    user = world_a.member(Role.INSIDE_SALES)
    response = login(user).post(
        url(world_a, "stage", pk=lead.pk), {"to_stage": "sal", "reason": "電話で確認"}
    )
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        transition = LifecycleTransition.objects.filter(lead=lead).latest("occurred_at")
        assert (transition.to_stage, transition.reason, transition.actor_id) == (
            "sal",
            "電話で確認",
            user.pk,
        )


def test_record_and_withdraw_consent(world_a):
    lead = make_lead(world_a)
    client = client_for(world_a)
    client.post(
        url(world_a, "consent", pk=lead.pk),
        {"purpose": "sales_contact", "status": "granted", "basis": "名刺交換時に口頭で確認"},
    )
    client.post(
        url(world_a, "consent", pk=lead.pk), {"purpose": "email_marketing", "status": "withdrawn"}
    )
    with tenant_scope(world_a.tenant.id):
        lead.refresh_from_db()
        assert (lead.sales_contact_consent, lead.email_consent) == ("granted", "withdrawn")
        assert ConsentEvent.objects.filter(lead=lead).count() == 2


def test_add_note_activity(world_a):
    lead = make_lead(world_a)
    response = client_for(world_a).post(
        url(world_a, "activity_add", pk=lead.pk), {"type": "note", "body": "来週デモ希望"}
    )
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        activity = Activity.objects.get(lead=lead)
        assert (activity.type, activity.properties["body"], activity.channel) == (
            "note",
            "来週デモ希望",
            "ui",
        )


def test_read_only_may_not_change_a_lead(world_a):
    lead = make_lead(world_a)
    client = client_for(world_a, Role.READ_ONLY)
    assert client.get(url(world_a, "detail", pk=lead.pk)).status_code == 200
    for name, data in (
        ("edit", {}),
        ("stage", {"to_stage": "mql"}),
        ("consent", {"purpose": "sales_contact", "status": "granted"}),
        ("activity_add", {"type": "note", "body": "x"}),
        ("merge", {"merge_id": lead.pk}),
    ):
        assert client.post(url(world_a, name, pk=lead.pk), data).status_code == 403, name


def test_merge_pick_confirm_merge(world_a):
    keep = make_lead(world_a, family_name="山田", given_name="太郎", phone="")
    duplicate = make_lead(
        world_a,
        family_name="山田",
        given_name="太郎",
        phone="+81312345678",
        email="yamada.t@example.jp",
    )
    ActivityFactory(tenant=world_a.tenant, lead=duplicate)
    client = client_for(world_a)
    found = client.get(url(world_a, "merge", pk=keep.pk), {"q": "yamada.t@example.jp"})
    assert [lead.pk for lead in found.context["candidates"]] == [duplicate.pk]
    confirm = client.get(url(world_a, "merge", pk=keep.pk), {"merge_id": duplicate.pk})
    assert confirm.context["duplicate"].pk == duplicate.pk
    response = client.post(url(world_a, "merge", pk=keep.pk), {"merge_id": duplicate.pk})
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        keep.refresh_from_db()
        assert keep.phone == "+81312345678"
        assert Activity.objects.filter(lead=keep).count() == 1
        assert Lead.objects.get(pk=duplicate.pk).merged_into_id == keep.pk
    # The duplicate's old link leads to the kept lead.
    old = client.get(url(world_a, "detail", pk=duplicate.pk))
    assert old.status_code == 302
    assert old["Location"].endswith(f"/leads/{keep.pk}/")


def test_merge_refuses_another_tenants_lead(world_a, world_b):
    keep = make_lead(world_a)
    theirs = make_lead(world_b)
    client_for(world_a).post(url(world_a, "merge", pk=keep.pk), {"merge_id": theirs.pk})
    with tenant_scope(world_b.tenant.id):
        assert Lead.objects.get(pk=theirs.pk).merged_into_id is None


# --- Company page --------------------------------------------------------------------------------


def test_company_page_lists_its_leads_and_sums_their_activity(world_a):
    company = CompanyFactory(tenant=world_a.tenant, name="株式会社両輪商事")
    lead = make_lead(world_a, company=company, family_name="山田", given_name="太郎")
    make_lead(world_a, family_name="他社", given_name="員")
    ActivityFactory(tenant=world_a.tenant, lead=lead)
    ActivityFactory(tenant=world_a.tenant, lead=lead)
    response = client_for(world_a, Role.READ_ONLY).get(url(world_a, "company", pk=company.pk))
    assert response.status_code == 200
    body = response.content.decode()
    assert "山田 太郎" in body
    assert "他社" not in body
    assert response.context["activity_total"] == 2
    assert response.context["lead_count"] == 1
