"""Lead owners are the people who work in the tenant (accounts.selectors.tenant_staff):
its members and the agency staff who serve it. The same set in every picker (list
filter, bulk "assign owner", lead edit) and every check (UI, API, batch, bulk)."""

from dataclasses import dataclass

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from accounts.models import Membership, Role, Tenant, User
from accounts.services import Origin
from accounts.tenancy import tenant_scope
from accounts.tests.factories import AgencyAssignmentFactory, AgencyFactory, MembershipFactory
from leads import services
from leads.models import Lead
from leads.services.bulk import leads_owner_assign
from leads.tests.factories import LeadFactory
from tests.api_base import assert_error
from tests.fixtures import api_client_for

pytestmark = pytest.mark.django_db

#: The refusal, in the UI's default language.
REFUSAL = "この人はこのテナントで業務を行っていません"


@dataclass
class Agency:
    agency: Tenant
    manager: User  # agency staff with a grant to this client
    admin: User  # agency admin: reaches every client
    planner: User  # agency staff without a grant


@pytest.fixture
def served(world_a) -> Agency:
    """world_a's tenant, managed by an agency whose account manager serves it."""
    agency = AgencyFactory(name="ひかり広告")
    world_a.tenant.managed_by = agency
    world_a.tenant.save(update_fields=["managed_by"])
    manager = MembershipFactory(
        tenant=agency, role=Role.MARKETING, user__full_name="山田 太郎"
    ).user
    admin = MembershipFactory(tenant=agency, role=Role.ADMIN, user__full_name="鈴木 一郎").user
    planner = MembershipFactory(
        tenant=agency, role=Role.MARKETING, user__full_name="佐藤 花子"
    ).user
    AgencyAssignmentFactory(tenant=world_a.tenant, user=manager, role=Role.MARKETING)
    return Agency(agency=agency, manager=manager, admin=admin, planner=planner)


def url(world, name: str, **kwargs) -> str:
    return reverse(f"leads:{name}", kwargs={"tenant": world.tenant.slug, **kwargs})


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def owner_of(world, lead: Lead) -> int | None:
    with tenant_scope(world.tenant.id):
        return Lead.objects.get(pk=lead.pk).owner_id


# --- Pickers ---------------------------------------------------------------------------------


def test_pickers_list_members_then_agency_staff_labelled_with_their_agency(world_a, served):
    LeadFactory(tenant=world_a.tenant)
    seller = world_a.member(Role.INSIDE_SALES)
    response = login(world_a.owner).get(url(world_a, "index"))
    assert response.status_code == 200
    expected = [
        *sorted(
            [(str(world_a.owner.pk), world_a.owner.get_full_name()),
             (str(seller.pk), seller.get_full_name())],
            key=lambda choice: User.objects.get(pk=choice[0]).email,
        ),
        *sorted(
            [(str(served.manager.pk), "山田 太郎 (ひかり広告)"),
             (str(served.admin.pk), "鈴木 一郎 (ひかり広告)")],
            key=lambda choice: User.objects.get(pk=choice[0]).email,
        ),
    ]  # fmt: skip
    bulk_choices = response.context["owner_form"].fields["owner"].choices
    assert bulk_choices[1:] == expected  # after "No owner"
    filter_choices = list(response.context["filter"].form.fields["owner"].choices)
    assert [value for value, _label in filter_choices][2:] == [value for value, _ in expected]
    body = response.content.decode()
    assert "山田 太郎 (ひかり広告)" in body
    assert "佐藤 花子" not in body  # agency staff without a grant to this client

    lead = LeadFactory(tenant=world_a.tenant)
    edit = login(world_a.owner).get(url(world_a, "edit", pk=lead.pk))
    assert (str(served.manager.pk), "山田 太郎 (ひかり広告)") in edit.context["form"].fields[
        "owner"
    ].choices


def test_a_tenant_no_agency_manages_offers_only_its_members(world_a):
    agency = AgencyFactory()
    MembershipFactory(tenant=agency, role=Role.OWNER)
    response = login(world_a.owner).get(url(world_a, "index"))
    choices = response.context["owner_form"].fields["owner"].choices
    assert [value for value, _label in choices] == ["none", str(world_a.owner.pk)]


# --- Web UI: bulk assign and edit ------------------------------------------------------------


def test_the_account_manager_assigns_leads_to_themselves(world_a, served):
    leads = [LeadFactory(tenant=world_a.tenant) for _ in range(2)]
    response = login(served.manager).post(
        url(world_a, "bulk_owner"),
        {"ids": [lead.pk for lead in leads], "owner": str(served.manager.pk)},
        follow=True,
    )
    assert response.status_code == 200
    assert [owner_of(world_a, lead) for lead in leads] == [served.manager.pk] * 2


def test_bulk_assign_refuses_agency_staff_without_a_grant_and_says_why(world_a, served):
    lead = LeadFactory(tenant=world_a.tenant)
    response = login(world_a.owner).post(
        url(world_a, "bulk_owner"), {"ids": [lead.pk], "owner": str(served.planner.pk)}, follow=True
    )
    assert response.status_code == 200
    [message] = [str(m) for m in response.context["messages"]]
    assert message.startswith(REFUSAL)
    assert owner_of(world_a, lead) is None


def test_edit_takes_agency_staff_and_refuses_others_on_the_owner_field(world_a, served):
    lead = LeadFactory(tenant=world_a.tenant)
    client = login(world_a.owner)
    data = {"email": lead.email, "family_name": lead.family_name, "given_name": lead.given_name}
    response = client.post(url(world_a, "edit", pk=lead.pk), {**data, "owner": served.admin.pk})
    assert response.status_code == 302
    assert owner_of(world_a, lead) == served.admin.pk
    response = client.post(url(world_a, "edit", pk=lead.pk), {**data, "owner": served.planner.pk})
    assert response.status_code == 400
    assert list(response.context["form"].errors) == ["owner"]
    assert REFUSAL in response.context["form"].errors["owner"][0]
    assert owner_of(world_a, lead) == served.admin.pk


def test_an_owner_who_left_stays_on_an_edit_until_someone_else_is_chosen(world_a, served):
    lead = LeadFactory(tenant=world_a.tenant, owner=served.manager)
    with tenant_scope(served.agency.id):
        Membership.objects.filter(user=served.manager).delete()  # left the agency
    client = login(world_a.owner)
    page = client.get(url(world_a, "edit", pk=lead.pk))
    choices = page.context["form"].fields["owner"].choices
    assert choices[-1] == (str(served.manager.pk), "山田 太郎 (アクセス権なし)")
    assert page.context["form"].initial["owner"] == str(served.manager.pk)
    data = {"email": lead.email, "family_name": "田中", "owner": served.manager.pk}
    assert client.post(url(world_a, "edit", pk=lead.pk), data).status_code == 302
    assert owner_of(world_a, lead) == served.manager.pk
    # Giving a lead to them again is refused: they no longer work here.
    other = LeadFactory(tenant=world_a.tenant)
    data = {"email": other.email, "owner": served.manager.pk}
    assert client.post(url(world_a, "edit", pk=other.pk), data).status_code == 400


# --- Services, API and batch -------------------------------------------------------------------


def test_services_take_agency_staff_who_serve_the_tenant_only(world_a, world_b, served):
    lead = LeadFactory(tenant=world_a.tenant)
    origin = Origin(actor=world_a.owner)
    assert (
        leads_owner_assign(
            tenant_id=world_a.tenant.id,
            lead_ids=[lead.pk],
            owner_id=served.manager.pk,
            origin=origin,
        )
        == 1
    )
    for outsider in (served.planner, world_b.owner):
        with pytest.raises(ValidationError) as info:
            leads_owner_assign(
                tenant_id=world_a.tenant.id, lead_ids=[lead.pk], owner_id=outsider.pk,
                origin=origin,
            )  # fmt: skip
        assert list(info.value.message_dict) == ["owner_id"]
    # An agency's staff do not reach the clients of another agency.
    assert owner_of(world_a, lead) == served.manager.pk
    with pytest.raises(ValidationError):
        services.lead_create(
            tenant_id=world_b.tenant.id, email="x@example.jp",
            fields={"owner_id": served.admin.pk}, origin=origin,
        )  # fmt: skip


def test_api_create_update_and_batch_check_owners_the_same_way(world_a, served):
    client = api_client_for(api_key=world_a.api_key())
    base = f"/api/v1/t/{world_a.tenant.slug}/leads/"
    created = client.post(
        base, {"email": "taro@example.co.jp", "owner_id": served.manager.pk}, format="json"
    )
    assert created.status_code == 201, created.content
    assert created.json()["owner_id"] == served.manager.pk
    refused = client.post(
        base, {"email": "hanako@example.co.jp", "owner_id": served.planner.pk}, format="json"
    )
    error = assert_error(refused, 400)
    assert list(error["fields"]) == ["owner_id"]
    assert REFUSAL in error["fields"]["owner_id"][0]
    patched = client.patch(
        f"{base}{created.json()['id']}/", {"owner_id": served.admin.pk}, format="json"
    )
    assert patched.status_code == 200, patched.content
    batch = client.post(
        f"{base}batch/",
        {"items": [{"email": "a@example.co.jp", "owner_id": served.admin.pk},
                   {"email": "b@example.co.jp", "owner_id": served.planner.pk}]},
        format="json",
    )  # fmt: skip
    assert batch.status_code == 200, batch.content
    results = batch.json()["results"]
    assert [r["status"] for r in results] == ["created", "error"]
    assert list(results[1]["errors"]) == ["owner_id"]
