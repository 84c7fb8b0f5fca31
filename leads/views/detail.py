"""One lead (header, timeline, edit, stage, consent, activities, merge) and one company."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Max
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts import events
from accounts.models import User
from accounts.services import Origin
from accounts.web import error_messages, tenant_view
from leads import selectors, services
from leads.forms import (
    ActivityForm,
    ConsentForm,
    LeadEditForm,
    MergeConfirmForm,
    MergeSearchForm,
    StageForm,
)
from leads.models import (
    ActivityType,
    Channel,
    Company,
    CompanyScore,
    ConsentPurpose,
    ConsentStatus,
    Lead,
    LifecycleStage,
)
from leads.scoring.services import lead_score_explained
from leads.views.common import (
    LEAD_WRITE_ROLES,
    campaign_model,
    can_write,
    membership_model,
    owner_choices,
    owner_choices_keeping,
)

TIMELINE_PAGE = 30


def _lead_or_404(pk: int) -> Lead:
    lead = selectors.lead_get(pk)
    if lead is None:
        raise Http404
    return lead


# --- Timeline ------------------------------------------------------------------------------------

_LABELS = {
    "stage": dict(LifecycleStage.choices),
    "activity": dict(ActivityType.choices),
    "purpose": dict(ConsentPurpose.choices),
    "consent": dict(ConsentStatus.choices),
    "channel": dict(Channel.choices),
}
#: Activity properties worth a line of their own, in this order.
SHOWN_PROPERTIES = ("url", "referrer", "subject", "utm_source", "utm_medium", "utm_campaign")


def _member_status_labels() -> dict[str, str]:
    return dict(membership_model()._meta.get_field("status").flatchoices)


def _timeline_items(entries: list, tenant_slug: str) -> list[dict]:
    """Timeline entries as the template shows them, with the users and campaigns they
    name loaded in one query each. The kinds higher apps add (tasks, nurture) are
    described by them, through the hook `lead.timeline_items`: {(kind, id): {title,
    change, link, badge, body}}."""
    described: dict = {}
    others = [e for e in entries if e.kind not in selectors.BUILTIN_TIMELINE_KINDS]
    if others:
        for items in events.hook("lead.timeline_items", entries=others, tenant_slug=tenant_slug):
            described.update(items)
    actor_ids = {e.data.get("actor_id") for e in entries} - {None}
    campaign_ids = {e.data.get("campaign_id") for e in entries} - {None}
    actors = {u.pk: u for u in User.objects.filter(pk__in=actor_ids)} if actor_ids else {}
    campaigns = (
        dict(campaign_model().objects.filter(pk__in=campaign_ids).values_list("id", "name"))
        if campaign_ids
        else {}
    )
    items = []
    for entry in entries:
        data = entry.data
        item = {
            "kind": entry.kind,
            "id": entry.id,
            "at": entry.occurred_at,
            "channel": _LABELS["channel"].get(data.get("channel"), ""),
            "actor": actors.get(data.get("actor_id")),
        }
        if entry.kind == "activity":
            props = data.get("properties") or {}
            item.update(
                type=data["type"],
                title=_LABELS["activity"].get(data["type"], data["type"]),
                body=props.get("body", ""),
                form_name=props.get("form_name", ""),
                details=[(key, props[key]) for key in SHOWN_PROPERTIES if props.get(key)],
                campaign=campaigns.get(data.get("campaign_id")),
                campaign_id=data.get("campaign_id"),
                by=props.get("by", ""),
            )
        elif entry.kind in ("campaign", "campaign_status"):
            joined = entry.kind == "campaign"
            # The membership keeps only its current status: the join shows it only when
            # it has not changed since (the later change is its own entry).
            status = "" if joined and data["changed_later"] else data["status"]
            item.update(
                title=_("Joined a campaign") if joined else _("Campaign status changed"),
                campaign=campaigns.get(data["campaign_id"]),
                campaign_id=data["campaign_id"],
                status=status,
                status_label=_member_status_labels().get(status, status),
            )
        elif entry.kind == "transition":
            item.update(
                title=_("Stage changed"),
                from_stage=_LABELS["stage"].get(data["from_stage"], ""),
                to_stage=_LABELS["stage"].get(data["to_stage"], data["to_stage"]),
                reason=data.get("reason", ""),
            )
        elif entry.kind not in selectors.BUILTIN_TIMELINE_KINDS:
            item.update(described.get((entry.kind, entry.id)) or {"title": entry.kind})
            item["other"] = True
        else:
            item.update(
                title=_LABELS["purpose"].get(data["purpose"], data["purpose"]),
                status=data["status"],
                status_label=_LABELS["consent"].get(data["status"], data["status"]),
                basis=data.get("basis", ""),
                proof=data.get("proof") or {},
            )
        items.append(item)
    return items


def _timeline(lead: Lead, raw_cursor: str | None, tenant_slug: str) -> dict:
    cursor = None
    if raw_cursor:
        try:
            cursor = selectors.decode_timeline_cursor(raw_cursor)
        except ValueError:
            cursor = None
    entries, more = selectors.lead_timeline(lead, limit=TIMELINE_PAGE, cursor=cursor)
    return {
        "items": _timeline_items(entries, tenant_slug),
        "next_cursor": selectors.encode_timeline_cursor(entries[-1]) if more and entries else None,
    }


# --- Lead page ---------------------------------------------------------------------------------


def _detail_context(request: HttpRequest, lead: Lead, **forms) -> dict:
    definitions = list(selectors.custom_field_list())
    custom = [
        (definition, (lead.custom_fields or {}).get(definition.key))
        for definition in definitions
        if (lead.custom_fields or {}).get(definition.key) not in (None, "", [])
    ]
    memberships = list(
        lead.campaign_memberships.select_related("campaign").order_by("-created_at")[:20]
    )
    return {
        "lead": lead,
        "custom": custom,
        "memberships": memberships,
        "timeline": _timeline(lead, None, request.tenant.slug),
        "can_write": can_write(request),
        "stage_form": forms.get("stage_form")
        or StageForm(initial={"to_stage": lead.lifecycle_stage}),
        "consent_form": forms.get("consent_form") or ConsentForm(),
        "activity_form": forms.get("activity_form") or ActivityForm(),
        "stages": LifecycleStage,
        "scores": lead_score_explained(lead)["scores"],
    }


@tenant_view(isolation_model=Lead)
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    lead = selectors.lead_get(pk)
    if lead is None:
        # A merged duplicate's old link leads to the lead it became.
        merged = Lead.objects.filter(pk=pk, merged_into__isnull=False).first()
        if merged is None:
            raise Http404
        return redirect("leads:detail", tenant=request.tenant.slug, pk=merged.merged_into_id)
    return TemplateResponse(request, "leads/detail.html", _detail_context(request, lead))


@tenant_view(isolation_model=Lead)
def timeline(request: HttpRequest, pk: int) -> HttpResponse:
    """The next page of the timeline ("load more"), as a partial."""
    lead = _lead_or_404(pk)
    return TemplateResponse(
        request,
        "leads/_timeline_page.html",
        {
            "lead": lead,
            "timeline": _timeline(lead, request.GET.get("cursor"), request.tenant.slug),
        },
    )


@tenant_view(roles=LEAD_WRITE_ROLES, isolation_model=Lead)
def edit(request: HttpRequest, pk: int) -> HttpResponse:
    lead = _lead_or_404(pk)
    definitions = list(selectors.custom_field_list())
    owners = owner_choices_keeping(owner_choices(request.tenant), lead)
    kwargs = {"owner_choices": owners, "definitions": definitions}
    if request.method == "POST":
        form = LeadEditForm(request.POST, **kwargs)
        if form.is_valid():
            try:
                with transaction.atomic():
                    services.lead_update(
                        lead=lead,
                        fields=form.service_fields(lead),
                        email=form.cleaned_data["email"],
                        origin=Origin.from_request(request),
                        channel=Channel.UI,
                    )
            except ValidationError as exc:
                form.add_service_errors(exc.message_dict)
            else:
                messages.success(request, _("The lead was saved."))
                return redirect("leads:detail", tenant=request.tenant.slug, pk=lead.pk)
        status = 400
    else:
        form = LeadEditForm(initial=LeadEditForm.initial_for(lead), **kwargs)
        status = 200
    tags = list(selectors.tag_list().order_by("name").values_list("name", flat=True)[:300])
    return TemplateResponse(
        request, "leads/edit.html", {"lead": lead, "form": form, "tag_names": tags}, status=status
    )


def _invalid(request: HttpRequest, lead: Lead, **forms) -> HttpResponse:
    return TemplateResponse(
        request, "leads/detail.html", _detail_context(request, lead, **forms), status=400
    )


@tenant_view(roles=LEAD_WRITE_ROLES, isolation_model=Lead)
@require_POST
def change_stage(request: HttpRequest, pk: int) -> HttpResponse:
    lead = _lead_or_404(pk)
    form = StageForm(request.POST)
    if form.is_valid():
        try:
            with transaction.atomic():
                transition = services.lead_change_stage(
                    lead=lead,
                    to_stage=form.cleaned_data["to_stage"],
                    reason=form.cleaned_data["reason"],
                    origin=Origin.from_request(request),
                    channel=Channel.UI,
                )
        except ValidationError as exc:
            for message in error_messages(exc):
                form.add_error(None, message)
        else:
            if transition is None:
                messages.info(request, _("The lead is already at this stage."))
            else:
                messages.success(
                    request,
                    _("Moved to %(stage)s.") % {"stage": lead.get_lifecycle_stage_display()},
                )
            return redirect("leads:detail", tenant=request.tenant.slug, pk=lead.pk)
    return _invalid(request, lead, stage_form=form)


@tenant_view(roles=LEAD_WRITE_ROLES, isolation_model=Lead)
@require_POST
def record_consent(request: HttpRequest, pk: int) -> HttpResponse:
    lead = _lead_or_404(pk)
    form = ConsentForm(request.POST)
    if form.is_valid():
        try:
            with transaction.atomic():
                services.consent_record(
                    lead=lead,
                    purpose=form.cleaned_data["purpose"],
                    status=form.cleaned_data["status"],
                    basis=form.cleaned_data["basis"],
                    channel=Channel.UI,
                    origin=Origin.from_request(request),
                    proof={"source": "staff UI", "note": form.cleaned_data["basis"]},
                )
        except ValidationError as exc:
            for message in error_messages(exc):
                form.add_error(None, message)
        else:
            messages.success(request, _("The consent was recorded."))
            return redirect("leads:detail", tenant=request.tenant.slug, pk=lead.pk)
    return _invalid(request, lead, consent_form=form)


@tenant_view(roles=LEAD_WRITE_ROLES, isolation_model=Lead)
@require_POST
def add_activity(request: HttpRequest, pk: int) -> HttpResponse:
    lead = _lead_or_404(pk)
    form = ActivityForm(request.POST)
    if form.is_valid():
        try:
            with transaction.atomic():
                services.activity_record(
                    tenant_id=request.tenant.id,
                    type=form.cleaned_data["type"],
                    lead=lead,
                    occurred_at=form.cleaned_data["occurred_at"],
                    channel=Channel.UI,
                    properties={"body": form.cleaned_data["body"], "by": request.user.email},
                )
        except ValidationError as exc:
            for message in error_messages(exc):
                form.add_error(None, message)
        else:
            messages.success(request, _("Added to the timeline."))
            return redirect("leads:detail", tenant=request.tenant.slug, pk=lead.pk)
    return _invalid(request, lead, activity_form=form)


# --- Merge ----------------------------------------------------------------------------------------

MERGE_CANDIDATES = 20


@tenant_view(roles=LEAD_WRITE_ROLES, isolation_model=Lead)
def merge(request: HttpRequest, pk: int) -> HttpResponse:
    """Pick the duplicate (search by email, name or company), confirm, merge it into
    this lead (leads.services.lead_merge keeps everything of both)."""
    lead = _lead_or_404(pk)
    if request.method == "POST":
        confirm = MergeConfirmForm(request.POST)
        duplicate = None
        if confirm.is_valid():
            duplicate = selectors.lead_list().filter(pk=confirm.cleaned_data["merge_id"]).first()
        if duplicate is None or duplicate.pk == lead.pk:
            messages.error(request, _("Choose another lead to merge."))
            return redirect("leads:merge", tenant=request.tenant.slug, pk=lead.pk)
        try:
            with transaction.atomic():
                services.lead_merge(keep=lead, merge=duplicate, origin=Origin.from_request(request))
        except ValidationError as exc:
            for message in error_messages(exc):
                messages.error(request, message)
            return redirect("leads:merge", tenant=request.tenant.slug, pk=lead.pk)
        messages.success(
            request,
            _("%(merged)s was merged into this lead.") % {"merged": duplicate.display_name},
        )
        return redirect("leads:detail", tenant=request.tenant.slug, pk=lead.pk)

    search = MergeSearchForm(request.GET or None)
    candidates = []
    if search.is_valid():
        candidates = list(
            selectors.lead_search(selectors.lead_list(), search.cleaned_data["q"])
            .exclude(pk=lead.pk)
            .order_by("-created_at", "-id")[:MERGE_CANDIDATES]
        )
    duplicate = None
    raw = request.GET.get("merge_id", "")
    if raw.isdigit():
        duplicate = selectors.lead_list().exclude(pk=lead.pk).filter(pk=int(raw)).first()
    return TemplateResponse(
        request,
        "leads/merge.html",
        {
            "lead": lead,
            "search": search,
            "candidates": candidates,
            "duplicate": duplicate,
            "compare": _compare(lead, duplicate) if duplicate else [],
        },
    )


def _compare(keep: Lead, duplicate: Lead) -> list[tuple[str, str, str, bool]]:
    """(label, kept value, duplicate value, filled from the duplicate) per field."""
    rows = []
    for name in ("email", "family_name", "given_name", "family_name_kana", "given_name_kana",
                 "phone", "job_title", "department"):  # fmt: skip
        label = Lead._meta.get_field(name).verbose_name
        mine, theirs = getattr(keep, name), getattr(duplicate, name)
        rows.append((label, mine, theirs, not mine and bool(theirs)))
    mine = keep.company.name if keep.company else ""
    theirs = duplicate.company.name if duplicate.company else ""
    rows.append(
        (Lead._meta.get_field("company").verbose_name, mine, theirs, not mine and bool(theirs))
    )
    rows.append(
        (
            Lead._meta.get_field("lifecycle_stage").verbose_name,
            keep.get_lifecycle_stage_display(),
            duplicate.get_lifecycle_stage_display(),
            False,
        )
    )
    return rows


# --- Company -------------------------------------------------------------------------------

COMPANY_LEADS = 50


@tenant_view(isolation_model=Company)
def company(request: HttpRequest, pk: int) -> HttpResponse:
    company = get_object_or_404(selectors.company_list(), pk=pk)
    leads = selectors.lead_list().filter(company=company).select_related("owner")
    activity_rows = (
        selectors.activity_list()
        .filter(lead__company=company)
        .order_by()
        .values("type")
        .annotate(n=Count("pk"), last=Max("occurred_at"))
    )
    labels = dict(ActivityType.choices)
    summary = sorted(
        ({"label": labels.get(r["type"], r["type"]), **r} for r in activity_rows),
        key=lambda row: -row["n"],
    )
    stages = (
        leads.prefetch_related(None)
        .order_by()
        .values_list("lifecycle_stage")
        .annotate(n=Count("pk"))
    )
    by_stage = dict(stages)
    return TemplateResponse(
        request,
        "leads/company.html",
        {
            "company": company,
            "scores": list(
                CompanyScore.objects.filter(company=company)
                .select_related("model")
                .order_by("-model__is_primary", "model__name")
            ),
            "leads": list(leads.order_by("-created_at", "-id")[:COMPANY_LEADS]),
            "lead_count": sum(by_stage.values()),
            "by_stage": [
                (label, by_stage[value])
                for value, label in LifecycleStage.choices
                if value in by_stage
            ],
            "activity_summary": summary,
            "activity_total": sum(row["n"] for row in summary),
            "last_activity": max((row["last"] for row in summary), default=None),
        },
    )
