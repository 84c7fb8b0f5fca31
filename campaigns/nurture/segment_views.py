"""Staff pages of saved segments (/t/<tenant>/nurture/segments/): the list, a form to
make or change one with a "matches N leads" preview, and delete. Thin: the filter is
checked and the segment saved by campaigns.nurture.segments."""

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from accounts.services import Origin
from accounts.web import error_messages, tenant_view
from campaigns.models import Sequence
from campaigns.nurture import segments
from campaigns.nurture.models import Segment
from campaigns.services import CAMPAIGN_WRITE_ROLES


class SegmentForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=200)
    filter = forms.CharField(
        label=gettext_lazy("Filter"),
        required=False,
        max_length=segments.FILTER_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=gettext_lazy(
            "The lead list's filter: filter the lead list, then copy its address "
            "(or the part after “?”) here, e.g. stage=mql&tag=展示会."
        ),
    )


def _segment_or_404(pk: int) -> Segment:
    segment = Segment.objects.filter(pk=pk).first()
    if segment is None:
        raise Http404
    return segment


def _lead_list_url(request: HttpRequest, query: str) -> str:
    url = reverse("leads:index", kwargs={"tenant": request.tenant.slug})
    return f"{url}?{query}" if query else url


@tenant_view
def segment_list(request: HttpRequest) -> HttpResponse:
    rows = list(Segment.objects.order_by("name", "id"))
    used: dict[int, list[str]] = {}
    for segment_id, name in Sequence.objects.filter(enrol_on_segment__isnull=False).values_list(
        "enrol_on_segment_id", "name"
    ):
        used.setdefault(segment_id, []).append(name)
    return TemplateResponse(
        request,
        "campaigns/nurture/segments.html",
        {
            "rows": [
                {
                    "segment": s,
                    "sequences": used.get(s.pk, []),
                    "lead_list_url": _lead_list_url(request, s.filter),
                }
                for s in rows
            ],
            "can_write": request.tenant_access.role in CAMPAIGN_WRITE_ROLES,
        },
    )


def _edit(request: HttpRequest, segment: Segment | None) -> HttpResponse:
    preview: dict | None = None
    status = 200
    if request.method == "POST":
        form = SegmentForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            if "preview" in request.POST:
                preview = _preview(request, form, data["filter"])
            else:
                origin = Origin.from_request(request)
                try:
                    with transaction.atomic():
                        if segment is None:
                            segment = segments.segment_create(
                                tenant_id=request.tenant.id, origin=origin, **data
                            )
                        else:
                            segments.segment_update(segment=segment, origin=origin, **data)
                except ValidationError as exc:
                    for field, errors in exc.message_dict.items():
                        form.add_error(field if field in form.fields else None, errors)
                except PermissionDenied as exc:
                    form.add_error(None, error_messages(exc))
                else:
                    messages.success(request, _("The segment was saved."))
                    return redirect("campaigns:segments", tenant=request.tenant.slug)
        status = 200 if preview is not None and not form.errors else 400
    else:
        initial = {"name": segment.name, "filter": segment.filter} if segment else None
        form = SegmentForm(initial=initial)
        if segment is not None:
            count, problem = segments.segment_count(segment)
            preview = {
                "count": count,
                "problem": problem,
                "url": _lead_list_url(request, segment.filter),
            }
    return TemplateResponse(
        request,
        "campaigns/nurture/segment_form.html",
        {"form": form, "segment": segment, "preview": preview},
        status=status,
    )


def _preview(request: HttpRequest, form: SegmentForm, raw: str) -> dict | None:
    """How many leads the filter matches now, without saving; its errors on the form."""
    try:
        cleaned = segments.segment_filter_clean(tenant=request.tenant, raw=raw)
    except ValidationError as exc:
        form.add_error("filter", exc.message_dict["filter"])
        return None
    probe = Segment(tenant_id=request.tenant.id, filter=cleaned)
    count, problem = segments.segment_count(probe)
    return {"count": count, "problem": problem, "url": _lead_list_url(request, cleaned)}


@tenant_view(roles=CAMPAIGN_WRITE_ROLES)
def segment_new(request: HttpRequest) -> HttpResponse:
    return _edit(request, None)


@tenant_view(roles=CAMPAIGN_WRITE_ROLES, isolation_model=Segment)
def segment_edit(request: HttpRequest, pk: int) -> HttpResponse:
    return _edit(request, _segment_or_404(pk))


@tenant_view(roles=CAMPAIGN_WRITE_ROLES, isolation_model=Segment)
@require_POST
def segment_delete(request: HttpRequest, pk: int) -> HttpResponse:
    segment = _segment_or_404(pk)
    try:
        with transaction.atomic():
            segments.segment_delete(segment=segment, origin=Origin.from_request(request))
    except (ValidationError, PermissionDenied) as exc:
        for error in error_messages(exc):
            messages.error(request, error)
    else:
        messages.success(request, _("The segment was deleted."))
    return redirect("campaigns:segments", tenant=request.tenant.slug)
