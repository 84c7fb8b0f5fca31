"""Every write of the handoff: settings, teams, routing rules, and the handoff's life
(created from an MQL, accepted, rejected, qualified, reassigned, reminded, escalated).

Rules enforced here:
* one handoff per lead is open or accepted at a time, so the MQL events (delivered at
  least once, and twice for a scored MQL: lead.lifecycle_changed and lead.mql_reached)
  create it once;
* routing takes the first matching rule; round robin reads and advances a team's
  cursor under a row lock, so concurrent MQLs never skip or double a member;
* the SLA deadline counts business hours of the tenant's calendar; answering (accept
  or reject) records met/breached once;
* the lead's stage follows through leads.services.lead_change_stage (recorded, with
  the answer as the transition's reason, which the lead timeline shows).
"""

import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from accounts import events
from accounts.models import ADMIN_ROLES, Membership, Role, Tenant, User
from accounts.selectors import tenant_staff
from accounts.services import Origin, audit_record
from accounts.tenancy import tenant_scope
from leads.models import Channel, Lead, LeadScore, LifecycleStage
from leads.services import lead_change_stage
from pipeline.business_hours import Calendar, add_business_minutes
from pipeline.models import (
    Handoff,
    HandoffSettings,
    Qualification,
    RejectReason,
    RoutingRule,
    Task,
    Team,
    TeamMember,
)

#: Roles that work the queue (answer handoffs); admins also manage settings.
HANDOFF_ROLES = frozenset({Role.OWNER, Role.ADMIN, Role.INSIDE_SALES})
#: "Not now" goes back to nurturing; every other reason disqualifies.
RECYCLE_REASONS = frozenset({RejectReason.NOT_NOW})
REASON_MAX = 500  # LifecycleTransition.reason


# --- Settings and calendar --------------------------------------------------------------------


def handoff_settings_get(tenant_id: int) -> HandoffSettings:
    """The tenant's settings, or the defaults (unsaved) until an admin saves them."""
    with tenant_scope(tenant_id, savepoint=False):
        found = HandoffSettings.objects.select_related("default_team").first()
    return found or HandoffSettings(tenant_id=tenant_id)


def calendar_for(tenant: Tenant, settings: HandoffSettings) -> Calendar:
    return Calendar(
        time_zone=tenant.time_zone,
        start=settings.workday_start,
        end=settings.workday_end,
        working_days=frozenset(settings.working_days),
        country=tenant.country or "JP",
        observe_holidays=settings.observe_holidays,
        closed_dates=frozenset(datetime.date.fromisoformat(d) for d in settings.closed_dates),
    )


def require_admin(origin: Origin) -> None:
    if origin.role is not None and origin.role not in ADMIN_ROLES:
        raise PermissionDenied(_("Only owners and admins can change this."))


def _clean_settings(settings: HandoffSettings) -> None:
    errors: dict[str, list[str]] = {}
    if settings.sla_hours is None or Decimal(settings.sla_hours) <= 0:
        errors["sla_hours"] = [_("Give a positive number of hours.")]
    if settings.workday_start >= settings.workday_end:
        errors["workday_end"] = [_("The working day must end after it starts.")]
    days = settings.working_days
    if (
        not isinstance(days, list)
        or not days
        or any(not isinstance(d, int) or isinstance(d, bool) or not 0 <= d <= 6 for d in days)
    ):
        errors["working_days"] = [_("Give at least one weekday, 0 (Monday) to 6 (Sunday).")]
    else:
        settings.working_days = sorted(set(days))
    dates = settings.closed_dates
    try:
        if not isinstance(dates, list):
            raise ValueError
        settings.closed_dates = sorted({datetime.date.fromisoformat(d).isoformat() for d in dates})
    except (TypeError, ValueError):
        errors["closed_dates"] = [_("Give dates as YYYY-MM-DD.")]
    checklist = settings.checklist
    if not isinstance(checklist, list) or any(
        not isinstance(item, dict)
        or not str(item.get("key", "")).strip()
        or not str(item.get("label", "")).strip()
        for item in checklist
    ):
        errors["checklist"] = [_("Each checklist item needs a key and a label.")]
    elif len({item["key"] for item in checklist}) != len(checklist):
        errors["checklist"] = [_("Checklist keys must be unique.")]
    if (
        settings.default_team_id is not None
        and not Team.objects.filter(pk=settings.default_team_id).exists()
    ):
        errors["default_team"] = [_("No such team.")]
    if errors:
        raise ValidationError(errors)


SETTINGS_FIELDS = (
    "sla_hours",
    "reminder_minutes",
    "workday_start",
    "workday_end",
    "working_days",
    "observe_holidays",
    "closed_dates",
    "checklist",
    "default_team_id",
)


def handoff_settings_update(*, tenant_id: int, origin: Origin, **changes: Any) -> HandoffSettings:
    """Save the tenant's SLA, working hours and checklist (owners and admins). Open
    handoffs keep the deadline they were given."""
    require_admin(origin)
    unknown = set(changes) - set(SETTINGS_FIELDS)
    if unknown:
        raise ValidationError({name: [_("This field cannot be changed.")] for name in unknown})
    with tenant_scope(tenant_id):
        settings = HandoffSettings.objects.select_for_update().first() or HandoffSettings(
            tenant_id=tenant_id
        )
        for name, value in changes.items():
            setattr(settings, name, value)
        _clean_settings(settings)
        settings.updated_at = timezone.now()
        settings.save()
        audit_record(
            tenant_id=tenant_id,
            origin=origin,
            action="handoff.settings_changed",
            target=settings,
            metadata={"fields": sorted(changes)},
        )
    return settings


# --- Teams ---------------------------------------------------------------------------------


def _check_staff(tenant_id: int, user_ids: set[int], field: str) -> None:
    if not user_ids:
        return
    found = {member.user.id for member in tenant_staff(tenant_id, user_ids=user_ids)}
    if user_ids - found:
        raise ValidationError({field: [_("Not a member of this tenant.")]})


def team_save(
    *,
    tenant_id: int,
    origin: Origin,
    team: Team | None = None,
    name: str | None = None,
    manager_id: int | Any | None = ...,
    member_ids: list[int] | None = None,
) -> Team:
    """Create or change a team (owners and admins). `member_ids` replaces the members,
    keeping the ones that stay (and their availability) in place."""
    require_admin(origin)
    with tenant_scope(tenant_id):
        team = team or Team(tenant_id=tenant_id)
        if name is not None:
            team.name = name.strip()
        if not team.name:
            raise ValidationError({"name": [_("This field is required.")]})
        if Team.objects.filter(name=team.name).exclude(pk=team.pk).exists():
            raise ValidationError({"name": [_("A team with this name exists.")]})
        if manager_id is not ...:
            if manager_id is not None:
                _check_staff(tenant_id, {manager_id}, "manager")
            team.manager_id = manager_id
        team.save()
        if member_ids is not None:
            wanted = set(member_ids)
            _check_staff(tenant_id, wanted, "members")
            TeamMember.objects.filter(team=team).exclude(user_id__in=wanted).delete()
            have = set(TeamMember.objects.filter(team=team).values_list("user_id", flat=True))
            TeamMember.objects.bulk_create(
                [
                    TeamMember(tenant_id=tenant_id, team=team, user_id=user_id)
                    for user_id in member_ids
                    if user_id not in have
                ]
            )
            have |= wanted
        audit_record(tenant_id=tenant_id, origin=origin, action="team.saved", target=team)
    return team


def team_member_set_available(*, member: TeamMember, origin: Origin, available: bool) -> TeamMember:
    """Members switch themselves off (leave) and on; admins switch anyone."""
    is_self = origin.actor is not None and origin.actor.id == member.user_id
    if origin.role is not None and origin.role not in ADMIN_ROLES and not is_self:
        raise PermissionDenied(_("You are not allowed to do this."))
    with tenant_scope(member.tenant_id):
        member.is_available = available
        member.save(update_fields=["is_available"])
    return member


def team_delete(*, team: Team, origin: Origin) -> None:
    require_admin(origin)
    with tenant_scope(team.tenant_id):
        audit_record(tenant_id=team.tenant_id, origin=origin, action="team.deleted", target=team)
        team.delete()


# --- Routing rules ----------------------------------------------------------------------------

RULE_FIELDS = (
    "name",
    "position",
    "is_active",
    "prefectures",
    "industries",
    "size_bands",
    "target",
    "user_id",
    "team_id",
)


def _clean_rule(rule: RoutingRule) -> None:
    from leads.models import Prefecture, SizeBand

    errors: dict[str, list[str]] = {}
    if not (rule.name or "").strip():
        errors["name"] = [_("This field is required.")]
    for field, allowed in (
        ("prefectures", set(Prefecture.values)),
        ("size_bands", set(SizeBand.values)),
        ("industries", None),
    ):
        values = getattr(rule, field)
        if not isinstance(values, list) or any(
            not isinstance(v, str) or not v.strip() for v in values
        ):
            errors[field] = [_("Give a list of values.")]
        elif allowed is not None and set(values) - allowed:
            errors[field] = [
                _("Unknown value: %(values)s")
                % {"values": ", ".join(sorted(set(values) - allowed))}
            ]
    if rule.target not in RoutingRule.Target.values:
        errors["target"] = [_("Not a routing target.")]
    elif rule.target == RoutingRule.Target.USER:
        if rule.user_id is None:
            errors["user"] = [_("Choose the person.")]
        rule.team_id = None
    elif rule.target == RoutingRule.Target.TEAM:
        if rule.team_id is None or not Team.objects.filter(pk=rule.team_id).exists():
            errors["team"] = [_("Choose the team.")]
        rule.user_id = None
    else:
        rule.user_id = rule.team_id = None
    if errors:
        raise ValidationError(errors)
    if rule.user_id is not None:
        _check_staff(rule.tenant_id, {rule.user_id}, "user")


def routing_rule_save(
    *, tenant_id: int, origin: Origin, rule: RoutingRule | None = None, **fields: Any
) -> RoutingRule:
    """Create or change a routing rule (owners and admins)."""
    require_admin(origin)
    unknown = set(fields) - set(RULE_FIELDS)
    if unknown:
        raise ValidationError({name: [_("This field cannot be changed.")] for name in unknown})
    with tenant_scope(tenant_id):
        rule = rule or RoutingRule(tenant_id=tenant_id)
        for name, value in fields.items():
            setattr(rule, name, value)
        _clean_rule(rule)
        rule.save()
        audit_record(tenant_id=tenant_id, origin=origin, action="routing_rule.saved", target=rule)
    return rule


def routing_rule_delete(*, rule: RoutingRule, origin: Origin) -> None:
    require_admin(origin)
    with tenant_scope(rule.tenant_id):
        audit_record(
            tenant_id=rule.tenant_id, origin=origin, action="routing_rule.deleted", target=rule
        )
        rule.delete()


# --- Routing ------------------------------------------------------------------------------


def team_next_member(team_id: int) -> int | None:
    """The team member who gets the next MQL, round robin over available members that
    still work in the tenant; advances the team's cursor. The team row is locked
    (SELECT … FOR UPDATE) until the caller's transaction ends, so two MQLs routed at
    once take turns instead of both reading the same cursor."""
    team = Team.objects.select_for_update().filter(pk=team_id).first()
    if team is None:
        return None
    candidates = list(
        TeamMember.objects.filter(team=team, is_available=True, user__is_active=True)
        .order_by("created_at", "id")
        .values_list("user_id", flat=True)
    )
    staff = {m.user.id for m in tenant_staff(team.tenant_id, user_ids=candidates)}
    candidates = [user_id for user_id in candidates if user_id in staff]
    if not candidates:
        return None
    if team.last_assigned_id in candidates:
        chosen = candidates[(candidates.index(team.last_assigned_id) + 1) % len(candidates)]
    else:
        # The last one left or went off: continue after their old place in the team.
        everyone = list(
            TeamMember.objects.filter(team=team)
            .order_by("created_at", "id")
            .values_list("user_id", flat=True)
        )
        chosen = candidates[0]
        if team.last_assigned_id in everyone:
            after = everyone[everyone.index(team.last_assigned_id) + 1 :]
            chosen = next((u for u in after if u in candidates), candidates[0])
    Team.objects.filter(pk=team.pk).update(last_assigned_id=chosen)
    return chosen


def _rule_matches(rule: RoutingRule, lead: Lead) -> bool:
    company = lead.company
    if rule.prefectures and (company is None or company.prefecture not in rule.prefectures):
        return False
    if rule.size_bands and (company is None or company.size_band not in rule.size_bands):
        return False
    if rule.industries:
        industry = (company.industry if company else "").strip().casefold()
        if industry not in {value.strip().casefold() for value in rule.industries}:
            return False
    return True


def _existing_owner(lead: Lead) -> int | None:
    """Who already works this lead's company: the lead's own owner, else the owner of
    the company's latest handoff, else the owner of its latest-changed owned lead."""
    candidates: list[int] = []
    if lead.owner_id:
        candidates.append(lead.owner_id)
    if lead.company_id:
        candidates += list(
            Handoff.objects.filter(lead__company_id=lead.company_id, owner__isnull=False)
            .exclude(lead_id=lead.id)
            .order_by("-created_at")
            .values_list("owner_id", flat=True)[:3]
        )
        candidates += list(
            Lead.objects.filter(company_id=lead.company_id, owner__isnull=False)
            .exclude(pk=lead.pk)
            .order_by("-updated_at")
            .values_list("owner_id", flat=True)[:3]
        )
    if not candidates:
        return None
    staff = {m.user.id for m in tenant_staff(lead.tenant_id, user_ids=candidates)}
    return next((user_id for user_id in candidates if user_id in staff), None)


def route(lead: Lead, settings: HandoffSettings) -> dict:
    """Where an MQL goes: {"owner_id", "team_id", "routed_by", "routing_rule_id"}.

    The first active rule that matches and can name a person wins; a rule whose
    person left or whose team has nobody available is passed over. Then the default
    team; else the handoff waits unassigned for a manager."""
    for rule in RoutingRule.objects.filter(is_active=True).order_by("position", "id"):
        if not _rule_matches(rule, lead):
            continue
        owner_id, team_id, routed_by = None, None, None
        if rule.target == RoutingRule.Target.USER and rule.user_id:
            if tenant_staff(lead.tenant_id, user_ids=[rule.user_id]):
                owner_id, routed_by = rule.user_id, Handoff.Routing.RULE_USER
        elif rule.target == RoutingRule.Target.TEAM and rule.team_id:
            team_id = rule.team_id
            owner_id, routed_by = team_next_member(rule.team_id), Handoff.Routing.ROUND_ROBIN
        else:
            owner_id, routed_by = _existing_owner(lead), Handoff.Routing.EXISTING_OWNER
        if owner_id is not None:
            return {
                "owner_id": owner_id,
                "team_id": team_id,
                "routed_by": routed_by,
                "routing_rule_id": rule.id,
            }
    if settings.default_team_id:
        owner_id = team_next_member(settings.default_team_id)
        if owner_id is not None:
            return {
                "owner_id": owner_id,
                "team_id": settings.default_team_id,
                "routed_by": Handoff.Routing.ROUND_ROBIN,
                "routing_rule_id": None,
            }
    return {
        "owner_id": None,
        "team_id": settings.default_team_id,
        "routed_by": Handoff.Routing.UNROUTED,
        "routing_rule_id": None,
    }


# --- The handoff ---------------------------------------------------------------------------


def _payload(handoff: Handoff, **extra: Any) -> dict:
    return {
        "v": 1,
        "handoff_id": handoff.id,
        "lead_id": handoff.lead_id,
        "owner_id": handoff.owner_id,
        "team_id": handoff.team_id,
        "status": handoff.status,
        "sla": handoff.sla,
        "deadline": handoff.deadline.isoformat(),
        "source_campaign_id": handoff.source_campaign_id,
        **extra,
    }


def sla_times(
    tenant: Tenant, settings: HandoffSettings, start: datetime.datetime
) -> tuple[datetime.datetime, datetime.datetime]:
    """(deadline, remind_at) of a handoff created at `start`: the SLA's business hours
    after it, and the reminder that many business minutes before the deadline."""
    calendar = calendar_for(tenant, settings)
    sla_minutes = float(settings.sla_hours) * 60
    deadline = add_business_minutes(calendar, start, sla_minutes)
    remind_at = add_business_minutes(
        calendar, start, max(sla_minutes - settings.reminder_minutes, 0)
    )
    return deadline, remind_at


def handoff_create_for_lead(
    *, tenant_id: int, lead_id: int, now: datetime.datetime | None = None
) -> Handoff | None:
    """Put an MQL in the queue: routed, with its SLA deadline. Idempotent: None when
    the lead is gone, merged, no longer MQL, or already has an open/accepted handoff."""
    now = now or timezone.now()
    with tenant_scope(tenant_id):
        # The lead's row lock serialises two deliveries of the lead's MQL events.
        lead = (
            Lead.objects.select_for_update(of=("self",))
            .select_related("company")
            .filter(pk=lead_id, merged_into__isnull=True)
            .first()
        )
        if lead is None or lead.lifecycle_stage != LifecycleStage.MQL:
            return None
        if Handoff.objects.filter(lead=lead, status__in=Handoff.ACTIVE).exists():
            return None
        tenant = Tenant.objects.get(pk=tenant_id)
        settings = handoff_settings_get(tenant_id)
        routing = route(lead, settings)
        deadline, remind_at = sla_times(tenant, settings, now)
        score = (
            LeadScore.objects.filter(lead=lead, model__is_primary=True)
            .values_list("total", flat=True)
            .first()
        )
        try:
            with transaction.atomic():
                handoff = Handoff.objects.create(
                    tenant_id=tenant_id,
                    lead=lead,
                    source_campaign_id=lead.source_campaign_id,
                    score=score,
                    created_at=now,
                    deadline=deadline,
                    remind_at=remind_at,
                    **routing,
                )
        except IntegrityError:  # handoff_one_active_per_lead: another delivery won
            return None
        events.emit("handoff.created", tenant_id=tenant_id, payload=_payload(handoff))
    return handoff


#: The lead's stage while a handoff of each active status is current.
STAGE_OF_STATUS = {
    Handoff.Status.OPEN: LifecycleStage.MQL,
    Handoff.Status.ACCEPTED: LifecycleStage.SAL,
}


def handoffs_withdraw_stale(*, tenant_id: int, lead_id: int) -> int:
    """Withdraw the lead's active handoff when the lead has left the stage it implies
    (open: MQL, accepted: SAL) by another path than the queue: moved by hand, merged
    into another lead. The queue's own answers change the handoff before the
    lead, so they never withdraw themselves. Idempotent."""
    with tenant_scope(tenant_id):
        handoff = (
            Handoff.objects.select_for_update(of=("self",))
            .filter(lead_id=lead_id, status__in=Handoff.ACTIVE)
            .first()
        )
        if handoff is None:
            return 0
        lead = Lead.objects.filter(pk=lead_id).values("lifecycle_stage", "merged_into_id").first()
        if (
            lead is not None
            and lead["merged_into_id"] is None
            and lead["lifecycle_stage"] == STAGE_OF_STATUS[handoff.status]
        ):
            return 0
        handoff.status = Handoff.Status.WITHDRAWN
        handoff.withdrawn_at = timezone.now()
        handoff.save(update_fields=["status", "withdrawn_at"])
        events.emit(
            "handoff.withdrawn",
            tenant_id=tenant_id,
            payload=_payload(handoff, lead_stage=lead["lifecycle_stage"] if lead else None),
        )
    return 1


def on_mql_event(event) -> None:
    """Handler of lead.mql_reached, lead.lifecycle_changed and lead.merged: an MQL gets
    a handoff; a lead that moved on (or was merged away) loses its stale one."""
    payload = event.payload
    if event.name == "lead.merged":
        merged_id = payload.get("merged_id")
        if isinstance(merged_id, int):
            handoffs_withdraw_stale(tenant_id=event.tenant_id, lead_id=merged_id)
        return
    lead_id = payload.get("lead_id")
    if not isinstance(lead_id, int):
        return
    if event.name == "lead.lifecycle_changed" and payload.get("to") != LifecycleStage.MQL:
        handoffs_withdraw_stale(tenant_id=event.tenant_id, lead_id=lead_id)
        return
    handoff_create_for_lead(tenant_id=event.tenant_id, lead_id=lead_id)


def _locked(handoff: Handoff) -> Handoff:
    fresh = (
        Handoff.objects.select_for_update(of=("self",)).select_related("team").get(pk=handoff.pk)
    )
    handoff.__dict__.update(fresh.__dict__)
    return handoff


def is_manager(user: User | None, handoff: Handoff | None = None) -> bool:
    """Team managers manage the queue; the handoff's own team's manager, or any team's
    when no handoff is named."""
    if user is None:
        return False
    teams = Team.objects.filter(manager=user)
    if handoff is not None and handoff.team_id is not None:
        teams = teams.filter(pk=handoff.team_id)
    return teams.exists()


def can_answer(origin: Origin, handoff: Handoff) -> bool:
    """The owner answers; an unassigned handoff is anyone's in inside sales; the team's
    manager and admins answer for anyone; the platform (role None) always can."""
    if origin.role is None or origin.role in ADMIN_ROLES:
        return True
    if origin.role not in HANDOFF_ROLES or origin.actor is None:
        return False
    if handoff.owner_id is None or handoff.owner_id == origin.actor.id:
        return True
    return is_manager(origin.actor, handoff)


def _require_answer(origin: Origin, handoff: Handoff) -> None:
    if not can_answer(origin, handoff):
        raise PermissionDenied(_("This handoff is someone else's."))


def _record_response(handoff: Handoff, origin: Origin, now: datetime.datetime) -> None:
    """The first answer (accept or reject) ends the SLA clock: met when on time."""
    if handoff.responded_at is not None:
        return
    handoff.responded_at = now
    handoff.responded_by = origin.actor
    if handoff.sla == Handoff.SLA.PENDING:
        handoff.sla = Handoff.SLA.MET if now <= handoff.deadline else Handoff.SLA.BREACHED
    if handoff.owner_id is None and origin.actor is not None:
        handoff.owner = origin.actor  # claimed from the unassigned queue


def _who(origin: Origin) -> str:
    return origin.actor.get_full_name() if origin.actor else _("the system")


def handoff_accept(*, handoff: Handoff, origin: Origin, channel: str = Channel.UI) -> Handoff:
    """Accept an open handoff: the lead becomes SAL (sales accepted lead)."""
    with tenant_scope(handoff.tenant_id):
        _locked(handoff)
        _require_answer(origin, handoff)
        if handoff.status != Handoff.Status.OPEN:
            raise ValidationError({"status": [_("Only an open handoff can be accepted.")]})
        now = timezone.now()
        _record_response(handoff, origin, now)
        handoff.status = Handoff.Status.ACCEPTED
        handoff.accepted_at = now
        handoff.save()
        lead = Lead.objects.get(pk=handoff.lead_id)
        lead_change_stage(
            lead=lead,
            to_stage=LifecycleStage.SAL,
            origin=origin,
            channel=channel,
            reason=_("Accepted by inside sales (%(who)s).") % {"who": _who(origin)},
        )
        events.emit("handoff.accepted", tenant_id=handoff.tenant_id, payload=_payload(handoff))
    return handoff


def handoff_reject(
    *,
    handoff: Handoff,
    origin: Origin,
    reason: str,
    comment: str = "",
    channel: str = Channel.UI,
) -> Handoff:
    """Reject an open or accepted handoff with a reason ("other" needs a comment):
    "not now" recycles the lead to nurturing, any other reason disqualifies it. The
    reason stays on the handoff with its source campaign for marketing's feedback."""
    comment = (comment or "").strip()
    if reason not in RejectReason.values:
        raise ValidationError({"reason": [_("Choose a reason.")]})
    if reason == RejectReason.OTHER and not comment:
        raise ValidationError({"comment": [_("Say why when the reason is “other”.")]})
    if len(comment) > Handoff._meta.get_field("reject_comment").max_length:
        raise ValidationError({"comment": [_("The comment is too long.")]})
    with tenant_scope(handoff.tenant_id):
        _locked(handoff)
        _require_answer(origin, handoff)
        if handoff.status not in Handoff.ACTIVE:
            raise ValidationError({"status": [_("This handoff is closed already.")]})
        now = timezone.now()
        _record_response(handoff, origin, now)
        handoff.status = Handoff.Status.REJECTED
        handoff.rejected_at = now
        handoff.reject_reason = reason
        handoff.reject_comment = comment
        handoff.save()
        label = str(RejectReason(reason).label)
        text = _("Rejected by inside sales (%(who)s): %(reason)s") % {
            "who": _who(origin),
            "reason": label,
        }
        if comment:
            text += f" — {comment}"
        to_stage = (
            LifecycleStage.RECYCLED if reason in RECYCLE_REASONS else LifecycleStage.DISQUALIFIED
        )
        lead = Lead.objects.get(pk=handoff.lead_id)
        lead_change_stage(
            lead=lead, to_stage=to_stage, origin=origin, channel=channel, reason=text[:REASON_MAX]
        )
        events.emit(
            "handoff.rejected",
            tenant_id=handoff.tenant_id,
            payload=_payload(handoff, reason=reason, comment=comment, lead_stage=to_stage),
        )
    return handoff


def handoff_qualify(
    *,
    handoff: Handoff,
    origin: Origin,
    handover_note: str,
    budget: str = "",
    authority: str = "",
    need: str = "",
    timeline: str = "",
    answers: dict | None = None,
    channel: str = Channel.UI,
) -> Qualification:
    """Qualify an accepted handoff: the qualification record (BANT, or answers to the
    tenant's own checklist, every item answered) and a hand-over note for field sales;
    the lead becomes SQL."""
    settings = handoff_settings_get(handoff.tenant_id)
    errors: dict[str, list[str]] = {}
    if not (handover_note or "").strip():
        errors["handover_note"] = [_("Write a note for field sales.")]
    answers = answers or {}
    if settings.checklist:
        if not isinstance(answers, dict):
            errors["answers"] = [_("Answer each checklist item.")]
        else:
            keys = [item["key"] for item in settings.checklist]
            unknown = set(answers) - set(keys)
            missing = [key for key in keys if not str(answers.get(key, "")).strip()]
            if unknown or missing:
                errors["answers"] = [
                    _("Answer each checklist item: %(keys)s") % {"keys": ", ".join(keys)}
                ]
            else:
                answers = {key: str(answers[key]).strip()[:1000] for key in keys}
    else:
        answers = {}
        bant = {"budget": budget, "authority": authority, "need": need, "timeline": timeline}
        for name, value in bant.items():
            if not (value or "").strip():
                errors[name] = [_("This field is required.")]
            elif len(value) > 500:
                errors[name] = [_("Keep it under 500 characters.")]
    if errors:
        raise ValidationError(errors)
    with tenant_scope(handoff.tenant_id):
        _locked(handoff)
        _require_answer(origin, handoff)
        if handoff.status != Handoff.Status.ACCEPTED:
            raise ValidationError({"status": [_("Accept the handoff before qualifying it.")]})
        now = timezone.now()
        qualification = Qualification.objects.create(
            tenant_id=handoff.tenant_id,
            handoff=handoff,
            budget=budget.strip(),
            authority=authority.strip(),
            need=need.strip(),
            timeline=timeline.strip(),
            answers=answers,
            handover_note=handover_note.strip(),
            qualified_by=origin.actor,
            created_at=now,
        )
        handoff.status = Handoff.Status.QUALIFIED
        handoff.qualified_at = now
        handoff.save(update_fields=["status", "qualified_at"])
        lead = Lead.objects.get(pk=handoff.lead_id)
        lead_change_stage(
            lead=lead,
            to_stage=LifecycleStage.SQL,
            origin=origin,
            channel=channel,
            reason=(
                _("Qualified by inside sales (%(who)s): %(note)s")
                % {"who": _who(origin), "note": qualification.handover_note}
            )[:REASON_MAX],
        )
        events.emit(
            "handoff.qualified",
            tenant_id=handoff.tenant_id,
            payload=_payload(handoff, qualification_id=qualification.id),
        )
    return qualification


def can_reassign(origin: Origin, handoff: Handoff) -> bool:
    if origin.role is None or origin.role in ADMIN_ROLES:
        return True
    if origin.role not in HANDOFF_ROLES or origin.actor is None:
        return False
    return handoff.owner_id == origin.actor.id or is_manager(origin.actor)


def handoff_reassign(*, handoff: Handoff, origin: Origin, owner_id: int) -> Handoff:
    """Hand an open or accepted handoff to someone else (its owner, a team manager or an
    admin). The SLA deadline stays: reassigning does not buy time."""
    with tenant_scope(handoff.tenant_id):
        _locked(handoff)
        if not can_reassign(origin, handoff):
            raise PermissionDenied(_("Only the owner, a manager or an admin can reassign this."))
        _check_staff(handoff.tenant_id, {owner_id}, "owner")
        if handoff.status not in Handoff.ACTIVE:
            raise ValidationError({"status": [_("This handoff is closed already.")]})
        previous = handoff.owner_id
        if previous == owner_id:
            return handoff
        handoff.owner_id = owner_id
        handoff.routed_by = Handoff.Routing.MANUAL
        handoff.reassigned_at = timezone.now()
        handoff.reminder_sent_at = (
            None if handoff.sla == Handoff.SLA.PENDING else handoff.reminder_sent_at
        )
        handoff.save()
        audit_record(
            tenant_id=handoff.tenant_id,
            origin=origin,
            action="handoff.reassigned",
            target=handoff,
            metadata={"from": previous, "to": owner_id},
        )
        events.emit(
            "handoff.reassigned",
            tenant_id=handoff.tenant_id,
            payload=_payload(handoff, previous_owner_id=previous),
        )
    return handoff


# --- SLA: reminders and escalation ----------------------------------------------------------------


def managers_for(handoff: Handoff) -> list[User]:
    """Who hears of a breach: the handoff's team's manager; else the managers of the
    owner's teams; else the tenant's owners and admins."""
    ids: list[int] = []
    if handoff.team_id and handoff.team and handoff.team.manager_id:
        ids = [handoff.team.manager_id]
    elif handoff.owner_id:
        ids = list(
            Team.objects.filter(
                members__user_id=handoff.owner_id, manager__isnull=False
            ).values_list("manager_id", flat=True)
        )
    users = list(User.objects.filter(pk__in=ids, is_active=True).order_by("email"))
    if users:
        return users
    admin_ids = Membership.objects.filter(role__in=ADMIN_ROLES).values_list("user_id", flat=True)
    return list(User.objects.filter(pk__in=admin_ids, is_active=True).order_by("email"))


def _mail(kind: str, handoff: Handoff, tenant: Tenant, recipients: list[str]) -> None:
    from django.conf import settings as django_settings

    if not recipients:
        return
    link = django_settings.SITE_URL.rstrip("/") + reverse(
        "pipeline:handoff", kwargs={"tenant": tenant.slug, "pk": handoff.pk}
    )
    with translation.override(tenant.language), timezone.override(tenant.time_zone):
        context = {"handoff": handoff, "lead": handoff.lead, "tenant": tenant, "link": link}
        subject = render_to_string(f"pipeline/email/{kind}_subject.txt", context).strip()
        body = render_to_string(f"pipeline/email/{kind}_body.txt", context)
    send_mail(subject, body, None, recipients)


def _due(tenant_id: int, now: datetime.datetime) -> tuple[list[int], list[int]]:
    with tenant_scope(tenant_id):
        open_ = Handoff.objects.filter(status=Handoff.Status.OPEN)
        remind = list(
            open_.filter(reminder_sent_at__isnull=True, remind_at__lte=now, deadline__gt=now)
            .order_by("remind_at")
            .values_list("id", flat=True)[:1000]
        )
        breach = list(
            open_.filter(escalated_at__isnull=True, deadline__lte=now)
            .order_by("deadline")
            .values_list("id", flat=True)[:1000]
        )
    return remind, breach


def sla_check(*, tenant_id: int, now: datetime.datetime | None = None) -> dict:
    """Remind owners before the deadline and escalate breaches to managers, once each.

    Each handoff is claimed in a transaction of its own with FOR UPDATE SKIP LOCKED
    (two workers never take the same one), re-checked, mailed, and marked: a crash
    after the mail and before the commit sends it again (at least once, never lost);
    a second run finds it marked and sends nothing."""
    now = now or timezone.now()
    tenant = Tenant.objects.get(pk=tenant_id)
    remind_ids, breach_ids = _due(tenant_id, now)
    reminded = breached = 0
    for handoff_id in remind_ids:
        with tenant_scope(tenant_id):
            handoff = (
                Handoff.objects.select_for_update(of=("self",), skip_locked=True)
                .select_related("lead", "owner", "team")
                .filter(
                    pk=handoff_id,
                    status=Handoff.Status.OPEN,
                    reminder_sent_at__isnull=True,
                    remind_at__lte=now,
                    deadline__gt=now,
                )
                .first()
            )
            if handoff is None:
                continue
            recipients = (
                [handoff.owner.email]
                if handoff.owner and handoff.owner.is_active
                else [user.email for user in managers_for(handoff)]
            )
            _mail("sla_reminder", handoff, tenant, recipients)
            Handoff.objects.filter(pk=handoff.pk).update(reminder_sent_at=now)
            reminded += 1
    for handoff_id in breach_ids:
        with tenant_scope(tenant_id):
            handoff = (
                Handoff.objects.select_for_update(of=("self",), skip_locked=True)
                .select_related("lead", "owner", "team")
                .filter(
                    pk=handoff_id,
                    status=Handoff.Status.OPEN,
                    escalated_at__isnull=True,
                    deadline__lte=now,
                )
                .first()
            )
            if handoff is None:
                continue
            managers = managers_for(handoff)
            _mail("sla_breached", handoff, tenant, [user.email for user in managers])
            handoff.sla = Handoff.SLA.BREACHED
            handoff.escalated_at = now
            handoff.save(update_fields=["sla", "escalated_at"])
            events.emit(
                "sla.breached",
                tenant_id=tenant_id,
                payload=_payload(handoff, escalated_to=[user.id for user in managers]),
            )
            breached += 1
    return {"reminded": reminded, "breached": breached}


# --- Tasks --------------------------------------------------------------------------------------

#: Roles that take and do sales tasks (read-only members only read).
TASK_ROLES = frozenset(
    {Role.OWNER, Role.ADMIN, Role.MARKETING, Role.INSIDE_SALES, Role.FIELD_SALES}
)
TASK_DUE_MAX_DAYS = 365


def _require_task_role(origin: Origin) -> None:
    if origin.role is not None and origin.role not in TASK_ROLES:
        raise PermissionDenied(_("Your role does not allow working on tasks."))


def _assignable(tenant_id: int, user_id: int | None) -> int | None:
    """The user if they work in the tenant now, else None (a task for someone who left
    would sit where nobody sees it: it stays unassigned instead)."""
    if user_id is None:
        return None
    return user_id if tenant_staff(tenant_id, user_ids=[user_id]) else None


def task_create(
    *,
    tenant_id: int,
    origin: Origin,
    lead_id: int,
    title: str,
    assignee_id: int | None = None,
    due_date: datetime.date | None = None,
) -> Task:
    """A task made by hand on one of the tenant's leads, for someone who works in the
    tenant (or nobody yet)."""
    _require_task_role(origin)
    title = (title or "").strip()
    errors: dict[str, list[str]] = {}
    if not title:
        errors["title"] = [_("A task needs a title.")]
    with tenant_scope(tenant_id):
        lead = Lead.objects.filter(pk=lead_id, merged_into__isnull=True).first()
        if lead is None:
            errors["lead_id"] = [_("No such lead.")]
        if assignee_id is not None and _assignable(tenant_id, assignee_id) is None:
            errors["assignee_id"] = [_("This person does not work in this tenant.")]
        if errors:
            raise ValidationError(errors)
        task = Task(
            tenant_id=tenant_id,
            lead=lead,
            title=title[:200],
            assignee_id=assignee_id,
            due_date=due_date,
            source=Task.Source.MANUAL,
            created_by=origin.actor,
        )
        task.full_clean()
        task.save()
        audit_record(tenant_id=tenant_id, origin=origin, action="task.created", target=task)
        return task


def _requested_at(event) -> datetime.datetime:
    """When the step ran (the dispatcher's clock), else when the event was written."""
    try:
        when = datetime.datetime.fromisoformat(event.payload.get("requested_at") or "")
    except (TypeError, ValueError):
        return event.occurred_at
    return when if timezone.is_aware(when) else event.occurred_at


def on_task_requested(event) -> None:
    """Handler of `nurture.task_requested` (a sequence's "create a task for the owner"
    step): one task per (enrolment, step), however often the event is delivered (the
    unique index decides, INSERT … ON CONFLICT DO NOTHING). The task goes to the lead's
    owner now if they still work in the tenant, else it is unassigned; it is due
    `due_in_days` after the step ran, in the tenant's calendar."""
    payload = event.payload
    lead_id, enrolment_id, step_id = (
        payload.get("lead_id"),
        payload.get("enrolment_id"),
        payload.get("step_id"),
    )
    if not all(isinstance(value, int) for value in (lead_id, enrolment_id, step_id)):
        return
    tenant_id = event.tenant_id
    with tenant_scope(tenant_id):
        lead = Lead.objects.filter(pk=lead_id).values("id", "owner_id").first()
        if lead is None:
            return  # deleted since: nothing to do
        due = payload.get("due_in_days")
        due_date = None
        if isinstance(due, int) and not isinstance(due, bool) and 0 <= due <= TASK_DUE_MAX_DAYS:
            zone = Tenant.objects.values_list("time_zone", flat=True).get(pk=tenant_id)
            local_day = timezone.localtime(_requested_at(event), ZoneInfo(zone)).date()
            due_date = local_day + datetime.timedelta(days=due)
        sequence_id = payload.get("sequence_id")
        Task.objects.bulk_create(
            [
                Task(
                    tenant_id=tenant_id,
                    lead_id=lead_id,
                    assignee_id=_assignable(tenant_id, lead["owner_id"]),
                    title=str(payload.get("title") or _("Follow up"))[:200],
                    due_date=due_date,
                    source=Task.Source.NURTURE,
                    sequence_id=sequence_id if isinstance(sequence_id, int) else None,
                    enrolment_id=enrolment_id,
                    step_id=step_id,
                    created_at=_requested_at(event),
                )
            ],
            ignore_conflicts=True,
        )


def can_complete(origin: Origin, task: Task) -> bool:
    """The assignee, anyone on an unassigned task, admins and the platform."""
    if origin.role is None or origin.role in ADMIN_ROLES:
        return True
    if origin.role not in TASK_ROLES or origin.actor is None:
        return False
    return task.assignee_id in (None, origin.actor.id)


def task_complete(*, task: Task, origin: Origin) -> Task:
    """Mark a task done (once: done again changes nothing)."""
    _require_task_role(origin)
    if not can_complete(origin, task):
        raise PermissionDenied(_("This task is someone else's."))
    with tenant_scope(task.tenant_id):
        task = Task.objects.select_for_update().get(pk=task.pk)
        if task.done_at is not None:
            return task
        task.done_at = timezone.now()
        task.done_by = origin.actor
        task.save(update_fields=["done_at", "done_by"])
        audit_record(tenant_id=task.tenant_id, origin=origin, action="task.done", target=task)
        return task


def task_reassign(*, task: Task, origin: Origin, assignee_id: int | None) -> Task:
    """Give an open task to someone who works in the tenant, or to nobody (None). Who
    may: the same people as may complete it (its assignee handing it on, anyone
    taking an unassigned one, admins). A done task stays with who had it."""
    _require_task_role(origin)
    with tenant_scope(task.tenant_id):
        task = Task.objects.select_for_update().get(pk=task.pk)
        if not can_complete(origin, task):  # as it is now, not as the caller read it
            raise PermissionDenied(_("This task is someone else's."))
        if task.done_at is not None:
            raise ValidationError({"assignee_id": [_("This task is done already.")]})
        if assignee_id is not None and _assignable(task.tenant_id, assignee_id) is None:
            raise ValidationError({"assignee_id": [_("This person does not work in this tenant.")]})
        previous = task.assignee_id
        if previous == assignee_id:
            return task
        task.assignee_id = assignee_id
        task.save(update_fields=["assignee"])
        audit_record(
            tenant_id=task.tenant_id,
            origin=origin,
            action="task.reassigned",
            target=task,
            metadata={"from": previous, "to": assignee_id},
        )
        return task
