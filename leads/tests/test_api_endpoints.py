"""Generic API tests (tests/api_base.py) for every leads endpoint: CRUD, validation
errors, tenant isolation, roles and key scopes, bounded list queries."""

from accounts.models import Role
from accounts.tenancy import tenant_scope
from leads.models import Lead
from leads.tests.factories import (
    ActivityFactory,
    CompanyFactory,
    CustomFieldDefinitionFactory,
    LeadFactory,
    LeadTagFactory,
    SuppressionFactory,
    TagFactory,
)
from tests.api_base import APIEndpointTests


class TestLeadsAPI(APIEndpointTests):
    route = "lead"
    create_payload = {
        "email": "New.Lead@Example.co.jp",
        "family_name": "山田",
        "given_name": "花子",
        "family_name_kana": "やまだ",
        "company_name": "両輪商事株式会社",
        "tags": ["展示会"],
    }
    update_payload = {"job_title": "マーケティング部長"}
    invalid_payload = {"email": "not-an-email"}
    invalid_field = "email"

    def make_object(self, world):
        lead = LeadFactory(tenant=world.tenant, company=CompanyFactory(tenant=world.tenant))
        LeadTagFactory(tenant=world.tenant, lead=lead)
        return lead

    def check_created(self, world, response):
        super().check_created(world, response)
        body = response.json()
        assert body["email"] == "new.lead@example.co.jp"
        assert body["family_name_kana"] == "ヤマダ"
        assert body["company"]["name"] == "両輪商事株式会社"
        assert body["tags"] == ["展示会"]

    def assert_deleted(self, world, obj):
        with tenant_scope(world.tenant.id):
            assert not Lead.objects.filter(pk=obj.pk).exists()


class TestCompaniesAPI(APIEndpointTests):
    route = "company"
    create_payload = {"name": "株式会社テスト", "corporate_number": "5835678256246"}
    update_payload = {"industry": "製造業"}
    invalid_payload = {"name": "X", "corporate_number": "1234567890123"}
    invalid_field = "corporate_number"

    def make_object(self, world):
        return CompanyFactory(tenant=world.tenant)


class TestActivitiesAPI(APIEndpointTests):
    route = "activity"
    actions = {"list", "retrieve", "create"}
    invalid_payload = {"lead_id": 1, "type": "teleport"}
    invalid_field = "type"

    def make_object(self, world):
        return ActivityFactory(tenant=world.tenant)

    def get_create_payload(self, world):
        lead = LeadFactory(tenant=world.tenant)
        return {"lead_id": lead.id, "type": "call", "properties": {"outcome": "折り返し"}}


class TestTagsAPI(APIEndpointTests):
    route = "tag"
    create_payload = {"name": "ウェビナー参加"}
    update_payload = {"name": "renamed"}
    invalid_payload = {"name": ""}
    invalid_field = "name"

    def make_object(self, world):
        return TagFactory(tenant=world.tenant)


class TestCustomFieldsAPI(APIEndpointTests):
    route = "custom-field"
    create_payload = {"key": "budget", "label": "予算", "type": "number"}
    update_payload = {"label": "年間予算"}
    invalid_payload = {"choices": "not a list"}
    invalid_field = "choices"
    read_only_role = Role.FIELD_SALES  # sales read the definitions but do not change them

    def make_object(self, world):
        return CustomFieldDefinitionFactory(tenant=world.tenant)


class TestSuppressionsAPI(APIEndpointTests):
    route = "suppression"
    actions = {"list", "retrieve", "create", "delete"}
    create_payload = {"email": "Stop@Example.com", "reason": "manual"}
    invalid_payload = {"email": "nope"}
    invalid_field = "email"
    read_only_role = Role.INSIDE_SALES

    def make_object(self, world):
        return SuppressionFactory(tenant=world.tenant)
