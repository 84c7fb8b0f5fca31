"""Factories for pipeline. Each requires a tenant (TenantOwnedFactory)."""

import datetime

import factory
from django.utils import timezone

from accounts.tests.factories import TenantOwnedFactory
from leads.models import LifecycleStage
from leads.tests.factories import LeadFactory
from pipeline.models import (
    Handoff,
    HandoffSettings,
    Qualification,
    RoutingRule,
    Task,
    Team,
    TeamMember,
)


class HandoffSettingsFactory(TenantOwnedFactory):
    class Meta:
        model = HandoffSettings


class TeamFactory(TenantOwnedFactory):
    class Meta:
        model = Team

    name = factory.Sequence(lambda n: f"インサイドセールス {n}")


class TeamMemberFactory(TenantOwnedFactory):
    class Meta:
        model = TeamMember

    team = factory.SubFactory(TeamFactory, tenant=factory.SelfAttribute("..tenant"))
    user = factory.SubFactory("accounts.tests.factories.UserFactory")


class RoutingRuleFactory(TenantOwnedFactory):
    class Meta:
        model = RoutingRule

    name = factory.Sequence(lambda n: f"rule {n}")
    target = RoutingRule.Target.TEAM
    team = factory.SubFactory(TeamFactory, tenant=factory.SelfAttribute("..tenant"))


class HandoffFactory(TenantOwnedFactory):
    class Meta:
        model = Handoff

    lead = factory.SubFactory(
        LeadFactory, tenant=factory.SelfAttribute("..tenant"), lifecycle_stage=LifecycleStage.MQL
    )
    routed_by = Handoff.Routing.UNROUTED
    deadline = factory.LazyFunction(lambda: timezone.now() + datetime.timedelta(hours=8))
    remind_at = factory.LazyFunction(lambda: timezone.now() + datetime.timedelta(hours=7))


class QualificationFactory(TenantOwnedFactory):
    class Meta:
        model = Qualification

    handoff = factory.SubFactory(
        HandoffFactory, tenant=factory.SelfAttribute("..tenant"), status=Handoff.Status.QUALIFIED
    )
    handover_note = "予算確保済み。来月の打ち合わせを希望。"


class TaskFactory(TenantOwnedFactory):
    class Meta:
        model = Task

    lead = factory.SubFactory(LeadFactory, tenant=factory.SelfAttribute("..tenant"))
    title = factory.Sequence(lambda n: f"電話フォロー {n}")
