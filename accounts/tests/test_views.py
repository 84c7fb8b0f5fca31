"""The staff web UI of accounts, through Django's test client: sign-in, the tenant
boundary of every page (404 for other tenants, 403 for roles), invitations, API keys,
language and time zone."""

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts import selectors
from accounts.models import (
    AgencyAssignment,
    APIKey,
    AuditLog,
    Invitation,
    Membership,
    Role,
    Tenant,
    User,
)
from accounts.services import SYSTEM, api_key_authenticate, api_key_create, invitation_create
from accounts.tenancy import tenant_scope
from accounts.tests.factories import (
    AgencyAssignmentFactory,
    AgencyFactory,
    MembershipFactory,
    TenantFactory,
    UserFactory,
)
from accounts.web import LAST_TENANT_SESSION_KEY, tenant_view

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def url(name: str, tenant: Tenant, **kwargs) -> str:
    return reverse(f"accounts:{name}", kwargs={"tenant": tenant.slug, **kwargs})


TENANT_PAGES = ["dashboard", "members", "api_keys", "audit_log", "tenant_settings"]
ADMIN_PAGES = ["api_keys", "audit_log", "tenant_settings"]


# --- Sign-in ------------------------------------------------------------------------------------


def test_login_page_is_japanese_by_default_even_for_an_english_browser(client):
    response = client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<html lang="ja">' in html
    assert "ログイン" in html
    assert "Log in to Ryorin" not in html


def test_login_with_email_in_any_case_lands_on_the_tenant_dashboard(client, world_a):
    response = client.post(
        reverse("login"),
        {"username": world_a.owner.email.upper(), "password": PASSWORD},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == url("dashboard", world_a.tenant)
    assert world_a.tenant.name in response.content.decode()


def test_login_with_a_wrong_password_fails(client, world_a):
    response = client.post(reverse("login"), {"username": world_a.owner.email, "password": "x"})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_logout_is_a_post_and_ends_the_session(world_a):
    client = client_for(world_a.owner)
    assert client.get(reverse("logout")).status_code == 405
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert client.get(url("dashboard", world_a.tenant)).status_code == 302


def test_password_reset_sends_a_link_that_sets_a_new_password(client, world_a):
    response = client.post(reverse("password_reset"), {"email": world_a.owner.email})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    body = mail.outbox[0].body
    link = re.search(r"https?://[^/\s]+(/accounts/reset/\S+/)", body)
    assert link, body
    response = client.get(link.group(1), follow=True)
    assert response.status_code == 200
    new_password = "a much better passphrase 42"
    form_url = response.redirect_chain[-1][0]
    response = client.post(form_url, {"new_password1": new_password, "new_password2": new_password})
    assert response.status_code == 302
    assert response["Location"] == reverse("password_reset_complete")
    assert Client().login(username=world_a.owner.email, password=new_password)


def test_anonymous_users_are_sent_to_login(client, world_a):
    response = client.get(url("members", world_a.tenant))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


# --- Home and tenant creation ----------------------------------------------------------------


def test_home_redirects_to_the_last_used_tenant(world_a):
    second = TenantFactory(name="Zeta")
    MembershipFactory(tenant=second, user=world_a.owner, role=Role.ADMIN)
    client = client_for(world_a.owner)
    # First visit: the first tenant by name.
    assert client.get("/")["Location"] == url("dashboard", world_a.tenant)
    client.get(url("dashboard", second))
    assert client.session[LAST_TENANT_SESSION_KEY] == second.id
    assert client.get("/")["Location"] == url("dashboard", second)


def test_user_without_tenant_can_create_one(db):
    user = UserFactory()
    client = client_for(user)
    response = client.get("/")
    assert response.status_code == 200
    assert "テナントがまだありません" in response.content.decode()
    response = client.post(
        reverse("tenant_create"),
        {"name": "Gamma Inc", "time_zone": "Asia/Tokyo", "language": "ja"},
    )
    tenant = Tenant.objects.get(name="Gamma Inc")
    assert response["Location"] == url("dashboard", tenant)
    with tenant_scope(tenant.id):
        assert Membership.objects.get(user=user).role == Role.OWNER


# --- The tenant boundary ---------------------------------------------------------------------


@pytest.mark.parametrize("page", TENANT_PAGES)
def test_every_page_renders_for_an_owner(world_a, page):
    response = client_for(world_a.owner).get(url(page, world_a.tenant))
    assert response.status_code == 200
    assert world_a.tenant.name in response.content.decode()


@pytest.mark.parametrize("page", ["dashboard", "members"])
def test_member_pages_render_for_a_marketing_member(world_a, page):
    member = world_a.member(Role.MARKETING)
    response = client_for(member).get(url(page, world_a.tenant))
    assert response.status_code == 200
    assert response.context["current_access"].role == Role.MARKETING


@pytest.mark.parametrize("page", TENANT_PAGES)
def test_another_tenants_user_gets_404(world_a, world_b, page):
    response = client_for(world_b.owner).get(url(page, world_a.tenant))
    assert response.status_code == 404
    assert world_a.tenant.name not in response.content.decode()


def test_unknown_tenant_is_404(world_a):
    client = client_for(world_a.owner)
    assert client.get("/t/no-such-tenant/").status_code == 404


@pytest.mark.parametrize("page", ADMIN_PAGES)
def test_admin_pages_are_403_for_a_marketing_member(world_a, page):
    member = world_a.member(Role.MARKETING)
    assert client_for(member).get(url(page, world_a.tenant)).status_code == 403


def test_members_can_not_invite_change_roles_or_remove(world_a):
    member = world_a.member(Role.MARKETING)
    other = world_a.member(Role.READ_ONLY)
    client = client_for(member)
    with tenant_scope(world_a.tenant.id):
        other_membership = Membership.objects.get(user=other)
    response = client.post(
        url("invitation_create", world_a.tenant), {"email": "x@example.com", "role": "marketing"}
    )
    assert response.status_code == 403
    response = client.post(
        url("member_role_change", world_a.tenant, pk=other_membership.pk), {"role": "admin"}
    )
    assert response.status_code == 403
    response = client.post(url("member_remove", world_a.tenant, pk=other_membership.pk))
    assert response.status_code == 403
    with tenant_scope(world_a.tenant.id):
        assert Membership.objects.get(user=other).role == Role.READ_ONLY
        assert not Invitation.objects.exists()


def test_agency_staff_reach_clients_and_see_them_grouped_in_the_switcher(db):
    agency = AgencyFactory(name="Hikari Agency")
    client_tenant = TenantFactory(name="Client KK", managed_by=agency)
    staff = MembershipFactory(tenant=agency, role=Role.MARKETING).user
    AgencyAssignmentFactory(tenant=client_tenant, agency=agency, user=staff, role=Role.MARKETING)
    response = client_for(staff).get(url("dashboard", client_tenant))
    assert response.status_code == 200
    groups = list(response.context["tenant_groups"])
    assert [[e.tenant.name for e in entries] for _label, entries in groups] == [
        ["Hikari Agency"],
        ["Client KK"],
    ]
    assert groups[1][0] == "Hikari Agency 経由"
    assert "Hikari Agency 経由" in response.content.decode()


def test_every_tenant_view_is_marked_for_the_isolation_walk():
    def view(request):
        raise AssertionError("not called")

    assert tenant_view(view).tenant_isolation == "tenant"
    assert tenant_view(isolation_model=APIKey)(view).isolation_model is APIKey


def test_navigation_links_built_apps_and_marks_the_rest_coming_soon(world_a):
    response = client_for(world_a.owner).get(url("dashboard", world_a.tenant))
    html = response.content.decode()
    for name in ("leads:index", "campaigns:index"):
        assert f'href="{reverse(name, kwargs={"tenant": world_a.tenant.slug})}"' in html, name
    for label in ("商談", "レポート"):
        assert re.search(
            rf'<span class="nav-item is-soon"[^>]*>{label}<span class="soon">近日公開', html
        ), label
    assert f'href="{url("members", world_a.tenant)}"' in html


# --- Members and invitations -----------------------------------------------------------------


def test_invite_sends_email_and_the_link_signs_up_and_joins(
    world_a, django_capture_on_commit_callbacks
):
    owner_client = client_for(world_a.owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(
            url("invitation_create", world_a.tenant),
            {"email": "New.Person@Example.com", "role": Role.INSIDE_SALES},
        )
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["new.person@example.com"]
    link = re.search(r"https?://[^/\s]+(/invitations/\S+/)", mail.outbox[0].body).group(1)
    # The pending invitation shows on the members page.
    assert (
        "new.person@example.com"
        in owner_client.get(url("members", world_a.tenant)).content.decode()
    )

    visitor = Client()
    page = visitor.get(link)
    assert page.status_code == 200
    assert page.context["state"] == "signup"
    response = visitor.post(
        link,
        {"full_name": "新井 花子", "password1": "blue whale 8261", "password2": "blue whale 8261"},
    )
    assert response["Location"] == url("dashboard", world_a.tenant)
    dashboard = visitor.get(response["Location"])
    assert dashboard.status_code == 200
    assert dashboard.context["current_access"].role == Role.INSIDE_SALES
    # The link is used up.
    assert Client().get(link).status_code == 404


def test_invitation_for_a_logged_in_user_with_the_invited_email(world_a, world_b):
    issued = invitation_create(
        tenant_id=world_a.tenant.id, email=world_b.owner.email, role=Role.MARKETING, origin=SYSTEM
    )
    link = reverse("invitation_accept", args=[issued.token])
    client = client_for(world_b.owner)
    assert client.get(link).context["state"] == "confirm"
    response = client.post(link)
    assert response["Location"] == url("dashboard", world_a.tenant)
    assert client.get(url("dashboard", world_a.tenant)).status_code == 200


def test_invitation_for_another_email_says_so_clearly(world_a, world_b):
    issued = invitation_create(
        tenant_id=world_a.tenant.id, email="someone@example.com", role=Role.MARKETING, origin=SYSTEM
    )
    link = reverse("invitation_accept", args=[issued.token])
    client = client_for(world_b.owner)
    response = client.get(link)
    assert response.status_code == 403
    html = response.content.decode()
    assert "someone@example.com" in html
    assert world_b.owner.email in html
    assert client.post(link).status_code == 403
    with tenant_scope(world_a.tenant.id):
        assert not Membership.objects.filter(user=world_b.owner).exists()


def test_invitation_for_an_existing_account_asks_to_log_in(world_a, world_b):
    issued = invitation_create(
        tenant_id=world_a.tenant.id, email=world_b.owner.email, role=Role.MARKETING, origin=SYSTEM
    )
    link = reverse("invitation_accept", args=[issued.token])
    response = Client().get(link)
    assert response.context["state"] == "login"
    assert f"{reverse('login')}?next={link}" in response.content.decode()


def test_revoke_invitation_with_htmx_removes_the_row(world_a):
    issued = invitation_create(
        tenant_id=world_a.tenant.id, email="gone@example.com", role=Role.MARKETING, origin=SYSTEM
    )
    response = client_for(world_a.owner).post(
        url("invitation_revoke", world_a.tenant, pk=issued.invitation.pk), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert response.content == b""
    with tenant_scope(world_a.tenant.id):
        assert Invitation.objects.get(pk=issued.invitation.pk).revoked_at is not None


def test_change_role_inline_with_htmx_and_as_a_plain_form(world_a):
    member = world_a.member(Role.MARKETING)
    with tenant_scope(world_a.tenant.id):
        membership = Membership.objects.get(user=member)
    client = client_for(world_a.owner)
    path = url("member_role_change", world_a.tenant, pk=membership.pk)
    response = client.post(path, {"role": Role.FIELD_SALES}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.strip().startswith(f'<tr id="member-{membership.pk}">')
    assert "保存しました" in html
    response = client.post(path, {"role": Role.ADMIN})
    assert response["Location"] == url("members", world_a.tenant)
    with tenant_scope(world_a.tenant.id):
        assert Membership.objects.get(pk=membership.pk).role == Role.ADMIN


def test_an_admin_can_not_make_owners_or_touch_an_owner(world_a):
    admin = world_a.member(Role.ADMIN)
    member = world_a.member(Role.MARKETING)
    with tenant_scope(world_a.tenant.id):
        member_ms = Membership.objects.get(user=member)
        owner_ms = Membership.objects.get(user=world_a.owner)
    client = client_for(admin)
    response = client.post(
        url("member_role_change", world_a.tenant, pk=member_ms.pk),
        {"role": Role.OWNER},
        HTTP_HX_REQUEST="true",
    )
    assert "有効なロールを選んでください" in response.content.decode()
    assert client.post(url("member_remove", world_a.tenant, pk=owner_ms.pk)).status_code == 403
    with tenant_scope(world_a.tenant.id):
        assert Membership.objects.get(pk=member_ms.pk).role == Role.MARKETING


def test_the_last_owner_can_not_be_demoted_and_the_error_is_translated(world_a):
    with tenant_scope(world_a.tenant.id):
        own = Membership.objects.get(user=world_a.owner)
    response = client_for(world_a.owner).post(
        url("member_role_change", world_a.tenant, pk=own.pk), {"role": Role.ADMIN}, follow=True
    )
    assert "テナントにはオーナーが最低 1 人必要です。" in response.content.decode()
    with tenant_scope(world_a.tenant.id):
        assert Membership.objects.get(pk=own.pk).role == Role.OWNER


# --- API keys --------------------------------------------------------------------------------


def test_create_api_key_shows_the_raw_key_once(world_a):
    client = client_for(world_a.owner)
    response = client.post(
        url("api_keys", world_a.tenant), {"name": "Zapier", "scope": "write", "role": "marketing"}
    )
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    raw_key = response.context["raw_key"]
    assert raw_key in response.content.decode()
    assert api_key_authenticate(raw_key).name == "Zapier"
    listing = client.get(url("api_keys", world_a.tenant)).content.decode()
    assert "Zapier" in listing
    assert raw_key not in listing


def test_revoke_api_key_plain_and_with_htmx(world_a):
    raw_1 = world_a.api_key()
    raw_2 = world_a.api_key()
    key_1, key_2 = api_key_authenticate(raw_1), api_key_authenticate(raw_2)
    client = client_for(world_a.owner)
    response = client.post(url("api_key_revoke", world_a.tenant, pk=key_1.pk))
    assert response["Location"] == url("api_keys", world_a.tenant)
    response = client.post(
        url("api_key_revoke", world_a.tenant, pk=key_2.pk), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert "失効済み" in response.content.decode()
    assert api_key_authenticate(raw_1) is None
    assert api_key_authenticate(raw_2) is None


# --- Audit log and settings ------------------------------------------------------------------


def test_audit_log_is_newest_first_filtered_and_paginated(world_a, monkeypatch):
    monkeypatch.setattr("accounts.views.AUDIT_LOG_PAGE_SIZE", 3)
    with tenant_scope(world_a.tenant.id):
        for i in range(5):
            AuditLog.objects.create(
                tenant=world_a.tenant,
                action="test.step",
                target_repr=f"step {i}",
                created_at=datetime(2026, 1, 1, 0, i, tzinfo=UTC),
            )
        AuditLog.objects.create(tenant=world_a.tenant, action="other.thing")
    client = client_for(world_a.owner)
    page_1 = client.get(url("audit_log", world_a.tenant), {"action": "test."})
    steps = [entry.target_repr for entry in page_1.context["page"].items]
    assert steps == ["step 4", "step 3", "step 2"]
    page_2 = client.get(
        url("audit_log", world_a.tenant),
        {"action": "test.", "cursor": page_1.context["page"].next_cursor},
    )
    assert [entry.target_repr for entry in page_2.context["page"].items] == ["step 1", "step 0"]
    assert page_2.context["page"].next_cursor is None


def test_tenant_settings_update(world_a):
    client = client_for(world_a.owner)
    response = client.post(
        url("tenant_settings", world_a.tenant),
        {"name": "Acme Holdings", "time_zone": "Europe/London", "language": "en"},
    )
    assert response["Location"] == url("tenant_settings", world_a.tenant)
    world_a.tenant.refresh_from_db()
    assert (world_a.tenant.name, world_a.tenant.time_zone, world_a.tenant.language) == (
        "Acme Holdings",
        "Europe/London",
        "en",
    )
    with tenant_scope(world_a.tenant.id):
        assert AuditLog.objects.filter(action="tenant.updated").exists()


# --- Language and time zone ------------------------------------------------------------------


def test_language_switch_changes_the_page_language(world_a):
    client = client_for(world_a.owner)
    dashboard = url("dashboard", world_a.tenant)
    html = client.get(dashboard).content.decode()
    assert "メンバー" in html
    assert '<html lang="ja">' in html
    response = client.post("/i18n/setlang/", {"language": "en", "next": dashboard}, follow=True)
    html = response.content.decode()
    assert response.redirect_chain[-1][0] == dashboard
    assert '<html lang="en">' in html
    assert "Members" in html
    assert "メンバー" not in html


def test_a_users_saved_language_is_the_default(world_a):
    world_a.owner.language = "en"
    world_a.owner.save(update_fields=["language"])
    html = client_for(world_a.owner).get(url("dashboard", world_a.tenant)).content.decode()
    assert '<html lang="en">' in html


def _key_created_at_midnight_utc(tenant: Tenant) -> None:
    issued = api_key_create(
        tenant_id=tenant.id, name="clock", scope="read", role=Role.READ_ONLY, origin=SYSTEM
    )
    with tenant_scope(tenant.id):
        APIKey.objects.filter(pk=issued.api_key.pk).update(
            created_at=datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
        )


def test_times_render_in_the_tenants_time_zone(world_a):
    other = TenantFactory(name="NY Inc", time_zone="America/New_York")
    MembershipFactory(tenant=other, user=world_a.owner, role=Role.OWNER)
    _key_created_at_midnight_utc(world_a.tenant)
    _key_created_at_midnight_utc(other)
    client = client_for(world_a.owner)
    tokyo = client.get(url("api_keys", world_a.tenant)).content.decode()
    new_york = client.get(url("api_keys", other)).content.decode()
    assert "2026-01-01 09:00" in tokyo
    assert "Asia/Tokyo" in tokyo
    assert "2025-12-31 19:00" in new_york
    assert "America/New_York" in new_york


# --- Sign-in events in the audit log ---------------------------------------------------------


def platform_audit(action: str) -> list[AuditLog]:
    from accounts.tenancy import unscoped

    with unscoped(reason="test: read platform audit entries"):
        return list(
            AuditLog.objects.filter(tenant__isnull=True, action=action).select_related("actor")
        )


def test_login_logout_and_failed_login_are_audited_with_address(client, world_a):
    client.post(
        reverse("login"),
        {"username": world_a.owner.email, "password": "wrong"},
        REMOTE_ADDR="203.0.113.7",
    )
    failed = platform_audit("auth.login_failed")
    assert [(e.metadata["email"], e.ip_address, e.actor) for e in failed] == [
        (world_a.owner.email, "203.0.113.7", None)
    ]
    assert "wrong" not in str(failed[0].metadata)

    client.post(
        reverse("login"),
        {"username": world_a.owner.email, "password": PASSWORD},
        REMOTE_ADDR="203.0.113.8",
        HTTP_USER_AGENT="Firefox/140",
    )
    [login] = platform_audit("auth.login")
    assert (login.actor, login.ip_address, login.user_agent) == (
        world_a.owner,
        "203.0.113.8",
        "Firefox/140",
    )
    client.post(reverse("logout"))
    assert [e.actor for e in platform_audit("auth.logout")] == [world_a.owner]


def test_password_reset_is_audited(client, world_a):
    client.post(reverse("password_reset"), {"email": world_a.owner.email})
    link = re.search(r"https?://[^/\s]+(/accounts/reset/\S+/)", mail.outbox[0].body).group(1)
    form_url = client.get(link, follow=True).redirect_chain[-1][0]
    new_password = "another long passphrase 7"
    client.post(form_url, {"new_password1": new_password, "new_password2": new_password})
    assert [e.actor for e in platform_audit("auth.password_reset")] == [world_a.owner]


# --- Agency access on a managed client -------------------------------------------------------


@dataclass
class ManagedClient:
    agency: Tenant
    client: Tenant
    agency_admin: User
    staff: User  # a marketing member of the agency: reaches the client only by a grant
    client_admin: User
    client_marketer: User

    def grant_url(self) -> str:
        return url("agency_access_grant", self.client)

    def revoke_url(self, assignment: AgencyAssignment) -> str:
        return url("agency_access_revoke", self.client, pk=assignment.pk)


@pytest.fixture
def managed(db) -> ManagedClient:
    agency = AgencyFactory(name="Hikari Agency")
    client = TenantFactory(name="Client KK", managed_by=agency)
    MembershipFactory(tenant=agency, role=Role.OWNER)
    return ManagedClient(
        agency=agency,
        client=client,
        agency_admin=MembershipFactory(tenant=agency, role=Role.ADMIN).user,
        staff=MembershipFactory(tenant=agency, role=Role.MARKETING, user__full_name="佐藤 健").user,
        client_admin=MembershipFactory(tenant=client, role=Role.ADMIN).user,
        client_marketer=MembershipFactory(tenant=client, role=Role.MARKETING).user,
    )


def reach(user: User, tenant: Tenant) -> str | None:
    """The role `user` has in `tenant` by selectors.tenant_accesses, or None."""
    return next((a.role for a in selectors.tenant_accesses(user) if a.tenant.id == tenant.id), None)


def audit_actions(tenant: Tenant) -> list[tuple[str, User | None]]:
    with tenant_scope(tenant.id):
        return [
            (entry.action, entry.actor)
            for entry in AuditLog.objects.filter(action__startswith="agency.").order_by("id")
        ]


def test_agency_access_section_shows_on_a_managed_client_and_not_elsewhere(managed, world_a):
    response = client_for(managed.client_admin).get(url("members", managed.client))
    html = response.content.decode()
    assert "代理店からのアクセス" in html
    assert "Hikari Agency" in html
    assert 'data-testid="agency-access-form"' in html
    # Only the agency's staff below owner/admin can be chosen: those above reach it already.
    form = response.context["agency_access"]["form"]
    assert list(form.fields["user"].queryset) == [managed.staff]

    response = client_for(world_a.owner).get(url("members", world_a.tenant))
    assert response.context["agency_access"] is None
    assert "代理店からのアクセス" not in response.content.decode()


def test_the_grantable_staff_are_read_across_tenants_from_inside_the_clients_scope(managed):
    # The members page runs in the client's scope, where row-level security hides the
    # agency's memberships; the selector reads them through the named escape.
    with tenant_scope(managed.client.id):
        assert not Membership.objects.filter(tenant=managed.agency).exists()
        assert list(selectors.agency_staff_grantable(managed.client)) == [managed.staff]


def test_a_client_admin_grants_an_agency_staffer_who_then_reaches_the_client(managed):
    assert reach(managed.staff, managed.client) is None
    response = client_for(managed.client_admin).post(
        managed.grant_url(), {"agency-user": managed.staff.pk, "agency-role": Role.INSIDE_SALES}
    )
    assert response.status_code == 302
    assert response["Location"] == url("members", managed.client) + "#agency-access"
    assert reach(managed.staff, managed.client) == Role.INSIDE_SALES
    assert ("agency.access_granted", managed.client_admin) in audit_actions(managed.client)
    assert ("agency.access_granted", managed.client_admin) in audit_actions(managed.agency)
    dashboard = client_for(managed.staff).get(url("dashboard", managed.client))
    assert dashboard.status_code == 200
    assert dashboard.context["current_access"].role == Role.INSIDE_SALES
    # The grant is listed with who granted it.
    page = client_for(managed.client_admin).get(url("members", managed.client), follow=True)
    [assignment] = page.context["agency_access"]["assignments"]
    assert (assignment.user, assignment.role, assignment.granted_by) == (
        managed.staff,
        Role.INSIDE_SALES,
        managed.client_admin,
    )
    html = page.content.decode()
    assert "佐藤 健" in html
    assert managed.client_admin.get_full_name() in html


def test_an_agency_admin_grants_and_revokes_with_htmx(managed):
    client = client_for(managed.agency_admin)
    response = client.post(
        managed.grant_url(),
        {"agency-user": managed.staff.pk, "agency-role": Role.MARKETING},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.strip().startswith('<div id="agency-access"')
    assert managed.staff.email in html
    assert "佐藤 健 はこのテナントに" in html
    assert reach(managed.staff, managed.client) == Role.MARKETING

    with tenant_scope(managed.client.id):
        assignment = AgencyAssignment.objects.get(user=managed.staff)
    response = client.post(managed.revoke_url(assignment), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.strip().startswith('<div id="agency-access"')
    assert f'id="agency-assignment-{assignment.pk}"' not in html
    assert "アクセスを付与された代理店スタッフはいません。" in html
    assert reach(managed.staff, managed.client) is None
    assert ("agency.access_revoked", managed.agency_admin) in audit_actions(managed.client)


def test_revoke_as_a_plain_form_removes_the_reach(managed):
    assignment = AgencyAssignmentFactory(
        tenant=managed.client, user=managed.staff, role=Role.FIELD_SALES
    )
    assert client_for(managed.staff).get(url("dashboard", managed.client)).status_code == 200
    response = client_for(managed.client_admin).post(managed.revoke_url(assignment))
    assert response["Location"] == url("members", managed.client) + "#agency-access"
    assert reach(managed.staff, managed.client) is None
    assert client_for(managed.staff).get(url("dashboard", managed.client)).status_code == 404
    assert ("agency.access_revoked", managed.client_admin) in audit_actions(managed.client)


def test_a_staffer_revoking_their_own_grant_goes_home(managed):
    assignment = AgencyAssignmentFactory(tenant=managed.client, user=managed.staff, role=Role.ADMIN)
    response = client_for(managed.staff).post(managed.revoke_url(assignment))
    assert response["Location"] == reverse("home")
    assert reach(managed.staff, managed.client) is None


def test_a_marketing_member_sees_the_grants_without_controls_and_may_not_post(managed):
    assignment = AgencyAssignmentFactory(tenant=managed.client, user=managed.staff)
    client = client_for(managed.client_marketer)
    response = client.get(url("members", managed.client))
    html = response.content.decode()
    assert "代理店からのアクセス" in html
    assert managed.staff.email in html
    assert 'data-testid="agency-access-form"' not in html
    assert managed.revoke_url(assignment) not in html
    response = client.post(
        managed.grant_url(), {"agency-user": managed.staff.pk, "agency-role": Role.ADMIN}
    )
    assert response.status_code == 403
    assert client.post(managed.revoke_url(assignment)).status_code == 403
    assert reach(managed.staff, managed.client) == Role.MARKETING


def test_a_user_of_another_tenant_gets_404_on_agency_access(managed, world_b):
    assignment = AgencyAssignmentFactory(tenant=managed.client, user=managed.staff)
    client = client_for(world_b.owner)
    assert client.get(url("members", managed.client)).status_code == 404
    response = client.post(
        managed.grant_url(), {"agency-user": world_b.owner.pk, "agency-role": Role.ADMIN}
    )
    assert response.status_code == 404
    assert client.post(managed.revoke_url(assignment)).status_code == 404
    # Nor through their own tenant's URL, with the client's grant id.
    response = client.post(url("agency_access_revoke", world_b.tenant, pk=assignment.pk))
    assert response.status_code == 404
    assert reach(managed.staff, managed.client) == Role.MARKETING


def test_the_grant_form_is_404_on_a_tenant_no_agency_manages(world_a):
    member = world_a.member(Role.MARKETING)
    response = client_for(world_a.owner).post(
        url("agency_access_grant", world_a.tenant),
        {"agency-user": member.pk, "agency-role": Role.MARKETING},
    )
    assert response.status_code == 404


@pytest.mark.parametrize("who", ["outsider", "agency_admin"])
def test_only_the_agencys_staff_can_be_granted_and_others_get_a_clear_error(managed, who):
    person = UserFactory() if who == "outsider" else managed.agency_admin
    client = client_for(managed.client_admin)
    response = client.post(
        managed.grant_url(), {"agency-user": person.pk, "agency-role": Role.MARKETING}
    )
    assert response.status_code == 400
    message = "管理代理店のメンバーのうち、オーナーと管理者以外の人を選んでください。"
    assert message in response.content.decode()
    response = client.post(
        managed.grant_url(),
        {"agency-user": person.pk, "agency-role": Role.MARKETING},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    with tenant_scope(managed.client.id):
        assert not AgencyAssignment.objects.exists()


def test_agency_staff_can_not_be_granted_owner(managed):
    response = client_for(managed.client_admin).post(
        managed.grant_url(), {"agency-user": managed.staff.pk, "agency-role": Role.OWNER}
    )
    assert response.status_code == 400
    assert reach(managed.staff, managed.client) is None


def test_remove_member_with_htmx_answers_with_the_row_not_the_page(world_a):
    member = world_a.member(Role.MARKETING)
    with tenant_scope(world_a.tenant.id):
        membership = Membership.objects.get(user=member)
        own = Membership.objects.get(user=world_a.owner)
    client = client_for(world_a.owner)
    response = client.post(
        url("member_remove", world_a.tenant, pk=membership.pk), HTTP_HX_REQUEST="true"
    )
    # Not a redirect: htmx would follow it and swap the whole members page into the row.
    assert response.status_code == 200
    assert response.content == b""
    with tenant_scope(world_a.tenant.id):
        assert not Membership.objects.filter(pk=membership.pk).exists()
    # A refusal comes back as the row, with the reason.
    response = client.post(url("member_remove", world_a.tenant, pk=own.pk), HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.strip().startswith(f'<tr id="member-{own.pk}">')
    assert "テナントにはオーナーが最低 1 人必要です。" in html
