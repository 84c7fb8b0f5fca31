"""The merge-field renderer: defaults for missing values, escaping in HTML, and no
way out to attributes, methods, tags or code."""

import pytest

from campaigns.nurture import render
from campaigns.nurture.render import TemplateSyntaxError, merge_context
from campaigns.tests.factories import SenderIdentityFactory
from leads.tests.factories import CompanyFactory, LeadFactory

pytestmark = pytest.mark.django_db


def test_fields_and_defaults():
    context = {"lead": {"family_name": "山田", "given_name": ""}, "tenant": {"name": "両輪"}}
    source = (
        '{{ lead.family_name|default:"ご担当者" }}様 {{lead.given_name|default:"-"}}'
        " ({{ tenant.name }})"
    )
    assert render.render(source, context) == "山田様 - (両輪)"
    assert render.render('{{ lead.family_name|default:"ご担当者" }}様', {}) == "ご担当者様"
    assert render.render("{{ lead.nothing }}|{{ nothing.at.all }}|", context) == "||"
    assert render.render('{{ lead.x|default:"a|b" }}', {}) == "a|b"
    assert render.render("{{ lead.email|upper }}", {"lead": {"email": "a@b.jp"}}) == "A@B.JP"


def test_html_bodies_escape_values_but_text_does_not():
    context = {"lead": {"family_name": "<script>alert(1)</script>&"}}
    assert (
        render.render("<p>{{ lead.family_name }}</p>", context, html=True)
        == "<p>&lt;script&gt;alert(1)&lt;/script&gt;&amp;</p>"
    )
    assert render.render("{{ lead.family_name }}", context) == "<script>alert(1)</script>&"
    assert render.render('{{ lead.x|default:"<b>" }}', {}, html=True) == "&lt;b&gt;"


@pytest.mark.parametrize(
    "source",
    [
        "{{ lead.__class__ }}",
        "{{ lead._meta }}",
        "{{ lead.__init__.__globals__ }}",
        "{{ lead.family_name.upper() }}",
        "{{ lead['email'] }}",
        "{{ lead.a.b.c.d }}",
        "{{ settings.SECRET_KEY|safe }}",
        "{{ lead.email|default:lead.password }}",
        '{{ lead.email|default:"x" |slice:"1" }}',
        "{% load static %}",
        "{% debug %}",
        "{{ lead.email",
        "lead.email }}",
        "{{ }}",
        "{{ lead.Email }}",
        "{{ 7*7 }}",
        "{{ request.user }}x{{",
    ],
)
def test_escape_attempts_do_not_parse(source):
    with pytest.raises(TemplateSyntaxError):
        render.parse(source)
    with pytest.raises(TemplateSyntaxError):
        render.render(source, {"lead": {"email": "a@b.jp"}})


class Sneaky:
    email = "secret@attribute"

    def __str__(self):
        return "called!"


def test_only_plain_dicts_of_strings_are_walked():
    # Whatever a caller puts in the context, an object is never read or turned to text.
    context = {"lead": Sneaky(), "owner": {"email": Sneaky()}, "tenant": {"name": 42}}
    source = "{{ lead.email }}|{{ owner.email }}|{{ tenant.name }}"
    assert render.render(source, context) == "||"


def test_merge_context_holds_only_strings(world_a):
    company = CompanyFactory(tenant=world_a.tenant, name="株式会社テスト")
    owner = world_a.owner
    lead = LeadFactory(
        tenant=world_a.tenant,
        family_name="佐藤",
        company=company,
        owner=owner,
        custom_fields={"plan": "enterprise", "seats": 30, "nested": {"a": "b"}},
    )
    sender = SenderIdentityFactory(tenant=world_a.tenant)
    context = merge_context(
        lead, tenant=world_a.tenant, sender=sender, links={"unsubscribe": "https://x/u"}
    )

    def leaves(value):
        if isinstance(value, dict):
            for item in value.values():
                yield from leaves(item)
        else:
            yield value

    assert all(type(leaf) is str for leaf in leaves(context))
    source = (
        "{{ lead.family_name }} {{ company.name }} {{ owner.email }} {{ lead.custom.plan }} "
        "{{ lead.custom.seats }} {{ lead.custom.nested }} {{ sender.address }}"
        " {{ links.unsubscribe }}"
    )
    assert render.render(source, context) == (
        f"佐藤 株式会社テスト {owner.email} enterprise 30  {sender.postal_address} https://x/u"
    )
