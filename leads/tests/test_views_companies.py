"""The company list: search, filters, the three sorts, keyset pages both ways (also
through the cached "most leads" ranking), lead counts of the page's rows only, who may
read it, and tenant isolation."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import Role
from leads.models import Company
from leads.tests.factories import CompanyFactory, LeadFactory
from leads.views import companies

pytestmark = pytest.mark.django_db


def url(world) -> str:
    return reverse("leads:companies", kwargs={"tenant": world.tenant.slug})


def reader(world) -> Client:
    client = Client()
    client.force_login(world.member(Role.READ_ONLY))
    return client


def names(response) -> list[str]:
    assert response.status_code == 200, response.content[:500]
    return [company.name for company, _count in response.context["rows"]]


def counts(response) -> dict[str, int]:
    return {company.name: count for company, count in response.context["rows"]}


NOW = timezone.now()


def company(world, name: str, minutes_ago: int = 0, **fields) -> Company:
    # One fixed "now": companies made the same minutes ago tie on created_at.
    created = NOW - timedelta(minutes=minutes_ago)
    return CompanyFactory(tenant=world.tenant, name=name, created_at=created, **fields)


def leads(world, of: Company, n: int) -> None:
    for _ in range(n):
        LeadFactory(tenant=world.tenant, company=of)


@pytest.fixture
def small_pages(monkeypatch):
    monkeypatch.setattr(companies, "PAGE_SIZE", 2)
    monkeypatch.setattr(companies._CompanyPager, "page_size", 2)


def every_page(client, path: str, params: dict) -> tuple[list[str], list[str]]:
    """All names following `next` to the end, then following `previous` back."""
    forward, response = [], client.get(path, params)
    pages = [names(response)]
    while response.context["page"].next_cursor:
        response = client.get(path, {**params, "cursor": response.context["page"].next_cursor})
        pages.append(names(response))
    forward = [name for page in pages for name in page]
    backward = list(reversed(pages[-1]))
    while response.context["page"].previous_cursor:
        cursor = response.context["page"].previous_cursor
        response = client.get(path, {**params, "cursor": cursor})
        backward += list(reversed(names(response)))
    return forward, list(reversed(backward))


# --- The page -------------------------------------------------------------------------------------


def test_everyone_reads_the_list_with_links_and_the_rows_lead_counts(world_a):
    ryorin = company(world_a, "株式会社両輪商事", domain="ryorin-shoji.co.jp", industry="製造業",
                     prefecture="13", size_band="50-99")  # fmt: skip
    leads(world_a, ryorin, 2)
    LeadFactory(
        tenant=world_a.tenant, company=ryorin, merged_into=LeadFactory(tenant=world_a.tenant)
    )
    company(world_a, "合同会社ひかり")
    response = reader(world_a).get(url(world_a))
    assert counts(response) == {"株式会社両輪商事": 2, "合同会社ひかり": 0}  # not the tombstone
    body = response.content.decode()
    page_url = reverse("leads:company", kwargs={"tenant": "acme", "pk": ryorin.pk})
    assert f'href="{page_url}"' in body
    assert "ryorin-shoji.co.jp" in body
    assert "東京都" in body
    assert "50〜99名" in body


def test_navigation_lists_companies_right_after_leads(world_a):
    response = reader(world_a).get(url(world_a))
    marketing = dict(response.context["nav_sections"])["マーケティング"]
    assert [item.label for item in marketing][:3] == ["リード", "会社", "キャンペーン"]
    assert [item.active for item in marketing][:3] == [False, True, False]


def test_another_tenant_gets_404_and_its_list_shows_only_its_own(world_a, world_b):
    company(world_a, "株式会社エー")
    company(world_b, "株式会社ビー")
    client = Client()
    client.force_login(world_b.owner)
    assert client.get(url(world_a)).status_code == 404
    for sort in ("name", "-created", "leads"):
        assert names(client.get(url(world_b), {"sort": sort})) == ["株式会社ビー"]


def test_htmx_gets_the_results_only(world_a):
    company(world_a, "株式会社両輪商事")
    response = reader(world_a).get(url(world_a), {"q": "両輪"}, HTTP_HX_REQUEST="true")
    assert response.templates[0].name == "leads/_company_results.html"
    assert response["Vary"].count("HX-Request") == 1


# --- Search and filters ---------------------------------------------------------------------------


def test_search_by_name_domain_or_corporate_number(world_a):
    company(world_a, "株式会社両輪商事", domain="ryorin.co.jp")
    company(
        world_a, "両輪テック合同会社", domain="ryorin-tech.jp", corporate_number="1234567890123"
    )
    company(world_a, "東京物流株式会社", domain="tokyo-butsuryu.co.jp")
    client = reader(world_a)

    def found(q: str) -> set[str]:
        return set(names(client.get(url(world_a), {"q": q})))

    # The legal form is no part of the name for search; full-width letters fold.
    assert found("両輪") == {"株式会社両輪商事", "両輪テック合同会社"}
    assert found("株式会社 両輪") == {"株式会社両輪商事", "両輪テック合同会社"}
    assert found("ＲＹＯＲＩＮ") == {"株式会社両輪商事", "両輪テック合同会社"}  # the domains
    assert found("https://www.tokyo-butsuryu.co.jp/") == {"東京物流株式会社"}
    assert found("1234567890123") == {"両輪テック合同会社"}
    assert found("123456789") == set()  # the corporate number is matched whole
    assert found("物流") == set()  # a prefix, not anywhere in the name


def test_filters_by_industry_prefecture_and_size(world_a):
    company(world_a, "A 製造 東京 大", industry="製造業", prefecture="13", size_band="5000+")
    company(world_a, "B 製造 大阪 小", industry="製造業", prefecture="27", size_band="1-9")
    company(world_a, "C 情報 東京 小", industry="情報通信業", prefecture="13", size_band="1-9")
    client = reader(world_a)

    def found(**params) -> set[str]:
        return {name[0] for name in names(client.get(url(world_a), params))}

    assert found(industry="製造業") == {"A", "B"}
    assert found(prefecture="13") == {"A", "C"}
    assert found(size="1-9") == {"B", "C"}
    assert found(industry="製造業", prefecture="13", size="5000+") == {"A"}
    assert found(industry="農業") == set()  # any value filters, even one not offered
    assert found(prefecture="99") == {"A", "B", "C"}  # not a prefecture: ignored
    response = client.get(url(world_a), {"industry": "製造業"})
    assert response.context["is_filtered"]
    choices = list(response.context["filter"].form.fields["industry"].widget.choices)
    assert choices == [("", "すべての業種"), ("情報通信業", "情報通信業"), ("製造業", "製造業")]


# --- Sorts and pages ------------------------------------------------------------------------------


def test_the_three_sorts(world_a):
    old = company(world_a, "株式会社ウメ", minutes_ago=30)
    mid = company(world_a, "アオイ合同会社", minutes_ago=20)
    new = company(world_a, "株式会社イチゴ", minutes_ago=10)
    company(world_a, "エノキ株式会社", minutes_ago=5)
    leads(world_a, old, 1)
    leads(world_a, mid, 3)
    leads(world_a, new, 1)
    client = reader(world_a)
    # By name without the legal form: アオイ, イチゴ, ウメ, エノキ.
    assert names(client.get(url(world_a))) == [
        "アオイ合同会社", "株式会社イチゴ", "株式会社ウメ", "エノキ株式会社",
    ]  # fmt: skip
    assert names(client.get(url(world_a), {"sort": "-created"})) == [
        "エノキ株式会社", "株式会社イチゴ", "アオイ合同会社", "株式会社ウメ",
    ]  # fmt: skip
    # Most leads; a tie by the newer company (higher id); no leads last, newest first.
    response = client.get(url(world_a), {"sort": "leads"})
    assert names(response) == ["アオイ合同会社", "株式会社イチゴ", "株式会社ウメ", "エノキ株式会社"]
    assert counts(response)["アオイ合同会社"] == 3
    assert response.context["ranked_as_of"] is None  # computed for this page: nothing to say


@pytest.mark.parametrize(
    ("params", "expected", "probe"),
    [
        ({}, "name", None),
        ({"sort": "-created"}, "created", None),
        ({"sort": "leads"}, "leads", None),
        # A filter along the ranking: chunk by chunk in SQL, and from its ids.
        ({"sort": "leads", "industry": "製造業"}, "leads", None),
        ({"sort": "leads", "industry": "製造業"}, "leads", 0),
        ({"sort": "name", "prefecture": "13"}, "name", None),
    ],
)
def test_keyset_pages_walk_every_row_once_both_ways(
    world_a, small_pages, monkeypatch, params, expected, probe
):
    if probe is not None:
        monkeypatch.setattr(companies, "PROBE", probe)
    rows = []
    for index in range(9):
        c = company(
            world_a, f"会社{index}", minutes_ago=index % 4,  # ties on created_at
            industry="製造業" if index % 3 else "建設業", prefecture="13" if index % 2 else "27",
        )  # fmt: skip
        leads(world_a, c, [2, 0, 1, 2, 0, 3, 1, 0, 2][index])  # ties on the count
        rows.append(c)
    matching = [
        c for c in rows
        if params.get("industry", c.industry) == c.industry
        and params.get("prefecture", c.prefecture) == c.prefecture
    ]  # fmt: skip
    lead_count = {c.pk: [2, 0, 1, 2, 0, 3, 1, 0, 2][i] for i, c in enumerate(rows)}
    order = {
        "name": lambda c: (c.name_key, c.pk),
        "created": lambda c: (-c.created_at.timestamp(), -c.pk),
        "leads": lambda c: (lead_count[c.pk] == 0, -lead_count[c.pk],
                            -c.created_at.timestamp() if not lead_count[c.pk] else -c.pk, -c.pk),
    }[expected]  # fmt: skip
    want = [c.name for c in sorted(matching, key=order)]
    forward, backward = every_page(reader(world_a), url(world_a), params)
    assert forward == want
    assert backward == want


def test_a_broad_filter_is_matched_chunk_by_chunk_along_the_ranking(world_a, small_pages,
                                                                     monkeypatch):  # fmt: skip
    # The filter's ids are asked for at once, and are too many: chunks all the way.
    monkeypatch.setattr(companies, "PROBE", 0)
    monkeypatch.setattr(companies, "FILTERED_IDS", 1)
    for index in range(7):
        c = company(world_a, f"会社{index}", industry="製造業" if index % 2 else "建設業")
        leads(world_a, c, index % 3)
    forward, backward = every_page(
        reader(world_a), url(world_a), {"sort": "leads", "industry": "製造業"}
    )
    assert sorted(forward) == ["会社1", "会社3", "会社5"]
    assert forward == backward == ["会社5", "会社1", "会社3"]  # 2, 1 (id), 0 leads


def test_a_cached_ranking_orders_pages_for_a_while_and_says_so(world_a, monkeypatch):
    monkeypatch.setattr(companies, "RANKING_CACHE_MIN", 1)
    cache.delete(companies._cache_key("company-ranking", world_a.tenant.id))
    first, second = company(world_a, "株式会社イチ"), company(world_a, "株式会社ニ")
    leads(world_a, first, 2)
    leads(world_a, second, 1)
    client = reader(world_a)
    response = client.get(url(world_a), {"sort": "leads"})
    assert names(response) == ["株式会社イチ", "株式会社ニ"]
    assert response.context["ranked_as_of"] is not None
    assert "時点" in response.content.decode()
    # Until the ranking is computed again, its order and counts stay; a company new
    # since then comes after the ranked ones, with its live count.
    leads(world_a, second, 3)
    third = company(world_a, "株式会社サン")
    leads(world_a, third, 5)
    response = client.get(url(world_a), {"sort": "leads"})
    assert names(response) == ["株式会社イチ", "株式会社ニ", "株式会社サン"]
    assert counts(response) == {"株式会社イチ": 2, "株式会社ニ": 1, "株式会社サン": 5}
    cache.delete(companies._cache_key("company-ranking", world_a.tenant.id))
    response = client.get(url(world_a), {"sort": "leads"})
    assert names(response) == ["株式会社サン", "株式会社ニ", "株式会社イチ"]
    # Other sorts always show live counts.
    assert counts(client.get(url(world_a)))["株式会社ニ"] == 4


def test_a_cursor_we_did_not_make_shows_the_first_page(world_a):
    company(world_a, "株式会社両輪商事")
    client = reader(world_a)
    for sort in ("name", "leads", "nonsense"):
        response = client.get(url(world_a), {"sort": sort, "cursor": "not-a-cursor"})
        assert names(response) == ["株式会社両輪商事"]


def test_queries_do_not_grow_with_the_rows(world_a):
    client = reader(world_a)
    cases = ({}, {"sort": "-created"}, {"sort": "leads"}, {"sort": "leads", "q": "会社"})

    def queries() -> list[int]:
        client.get(url(world_a))  # the session and the industry choices, as on any visit
        counted = []
        for params in cases:
            with CaptureQueriesContext(connection) as context:
                assert names(client.get(url(world_a), params))
            counted.append(len(context))
        return counted

    for index in range(5):
        leads(world_a, company(world_a, f"会社{index}", minutes_ago=index), index % 3)
    few = queries()
    for index in range(5, 45):
        leads(world_a, company(world_a, f"会社{index}", minutes_ago=index), index % 3)
    many = queries()
    # A query per row would show as +40; the ranking walk may take a chunk more.
    assert [b - a for a, b in zip(few, many, strict=True)] in ([0, 0, 0, 0], [0, 0, 1, 1])
    assert max(many) <= 19  # 9 of them are the tenant scope's and the layout's
