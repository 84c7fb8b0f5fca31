"""Factories for leads. Each requires a tenant (TenantOwnedFactory)."""

import factory

from accounts.tests.factories import TenantOwnedFactory
from leads.models import (
    Activity,
    ActivityType,
    CaptureForm,
    Company,
    CompanyScore,
    ConsentEvent,
    ConsentPurpose,
    ConsentStatus,
    CustomFieldDefinition,
    FormSubmission,
    ImportJob,
    ImportRowError,
    Lead,
    LeadScore,
    LeadTag,
    LifecycleStage,
    LifecycleTransition,
    ScoringModel,
    ScoringRule,
    Suppression,
    Tag,
    Visitor,
)
from leads.normalize import normalize_company_name


class CompanyFactory(TenantOwnedFactory):
    class Meta:
        model = Company

    name = factory.Sequence(lambda n: f"株式会社テスト{n}")
    name_key = factory.LazyAttribute(lambda o: normalize_company_name(o.name))
    domain = factory.Sequence(lambda n: f"company{n}.example.co.jp")


class LeadFactory(TenantOwnedFactory):
    class Meta:
        model = Lead

    email = factory.Sequence(lambda n: f"lead{n}@example.co.jp")
    family_name = "山田"
    given_name = factory.Sequence(lambda n: f"太郎{n}")
    lifecycle_stage = LifecycleStage.LEAD


class TagFactory(TenantOwnedFactory):
    class Meta:
        model = Tag

    name = factory.Sequence(lambda n: f"tag-{n}")


class LeadTagFactory(TenantOwnedFactory):
    class Meta:
        model = LeadTag

    lead = factory.SubFactory(LeadFactory, tenant=factory.SelfAttribute("..tenant"))
    tag = factory.SubFactory(TagFactory, tenant=factory.SelfAttribute("..tenant"))


class CustomFieldDefinitionFactory(TenantOwnedFactory):
    class Meta:
        model = CustomFieldDefinition

    key = factory.Sequence(lambda n: f"field_{n}")
    label = factory.Sequence(lambda n: f"Field {n}")


class LifecycleTransitionFactory(TenantOwnedFactory):
    class Meta:
        model = LifecycleTransition

    lead = factory.SubFactory(LeadFactory, tenant=factory.SelfAttribute("..tenant"))
    from_stage = LifecycleStage.LEAD
    to_stage = LifecycleStage.MQL


class ConsentEventFactory(TenantOwnedFactory):
    class Meta:
        model = ConsentEvent

    lead = factory.SubFactory(LeadFactory, tenant=factory.SelfAttribute("..tenant"))
    purpose = ConsentPurpose.EMAIL_MARKETING
    status = ConsentStatus.GRANTED
    channel = "api"


class SuppressionFactory(TenantOwnedFactory):
    class Meta:
        model = Suppression

    email = factory.Sequence(lambda n: f"suppressed{n}@example.com")
    reason = Suppression.Reason.UNSUBSCRIBED


class VisitorFactory(TenantOwnedFactory):
    class Meta:
        model = Visitor

    key = factory.Sequence(lambda n: f"visitor-{n}")


class ActivityFactory(TenantOwnedFactory):
    class Meta:
        model = Activity

    lead = factory.SubFactory(LeadFactory, tenant=factory.SelfAttribute("..tenant"))
    type = ActivityType.PAGE_VIEW
    properties = factory.LazyFunction(lambda: {"url": "https://example.co.jp/pricing"})


class CaptureFormFactory(TenantOwnedFactory):
    class Meta:
        model = CaptureForm

    name = factory.Sequence(lambda n: f"資料請求フォーム {n}")
    fields = factory.LazyFunction(
        lambda: [
            {
                "name": "email",
                "label": "メールアドレス",
                "maps_to": "lead.email",
                "type": "email",
                "required": True,
            },
            {
                "name": "company",
                "label": "会社名",
                "maps_to": "lead.company_name",
                "type": "text",
                "required": False,
            },
        ]
    )


class FormSubmissionFactory(TenantOwnedFactory):
    class Meta:
        model = FormSubmission

    form = factory.SubFactory(CaptureFormFactory, tenant=factory.SelfAttribute("..tenant"))
    lead = factory.SubFactory(LeadFactory, tenant=factory.SelfAttribute("..tenant"))
    data = factory.LazyFunction(dict)


class ImportJobFactory(TenantOwnedFactory):
    class Meta:
        model = ImportJob

    file = factory.django.FileField(filename="list.csv", data=b"email\nx@example.com\n")
    original_name = "list.csv"
    file_format = "csv"


class ImportRowErrorFactory(TenantOwnedFactory):
    class Meta:
        model = ImportRowError

    job = factory.SubFactory(ImportJobFactory, tenant=factory.SelfAttribute("..tenant"))
    row_number = 2
    column = "email"
    value = "x@"
    reason = "not a valid email address"


class ScoringModelFactory(TenantOwnedFactory):
    class Meta:
        model = ScoringModel

    name = factory.Sequence(lambda n: f"スコアモデル {n}")
    mql_threshold = 50


class ScoringRuleFactory(TenantOwnedFactory):
    class Meta:
        model = ScoringRule

    model = factory.SubFactory(ScoringModelFactory, tenant=factory.SelfAttribute("..tenant"))
    kind = ScoringRule.Kind.FIT
    field = "lead.job_title"
    operator = "contains"
    value = "部長"
    points = 20


class LeadScoreFactory(TenantOwnedFactory):
    class Meta:
        model = LeadScore

    model = factory.SubFactory(ScoringModelFactory, tenant=factory.SelfAttribute("..tenant"))
    lead = factory.SubFactory(LeadFactory, tenant=factory.SelfAttribute("..tenant"))
    fit = 20
    total = 20


class CompanyScoreFactory(TenantOwnedFactory):
    class Meta:
        model = CompanyScore

    model = factory.SubFactory(ScoringModelFactory, tenant=factory.SelfAttribute("..tenant"))
    company = factory.SubFactory(CompanyFactory, tenant=factory.SelfAttribute("..tenant"))
    total = 40
    best = 30
    leads = 2
