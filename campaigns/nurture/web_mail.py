"""Staff web UI of what nurture mails are made of: email templates (the editor with a
live preview rendered for a real lead, and a test send), sender identities and the
tenant's sending settings (limits, quiet hours).

The preview and the test send are the services' (email_template_render and
email_template_test_send: the dispatcher's own mail builder, footer included, no
tracking, an unsubscribe link that unsubscribes nobody), given the editor's fields as
they are: htmx posts them as they change, so the unsaved text is what is previewed.
"""

from dataclasses import dataclass, field

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.services import Origin
from accounts.web import tenant_view
from campaigns.models import EmailTemplate, SenderIdentity
from campaigns.nurture import render, selectors, services
from campaigns.nurture.forms import (
    EmailTemplateForm,
    SenderIdentityForm,
    SendingSettingsForm,
    TestSendForm,
)
from campaigns.nurture.web import WRITE_ROLES, can_write
from leads.models import Lead
from leads.selectors import lead_list, lead_search

# --- Templates -------------------------------------------------------------------------------


@tenant_view
def template_index(request: HttpRequest) -> HttpResponse:
    return TemplateResponse(
        request,
        "campaigns/nurture/templates.html",
        {"templates": selectors.email_template_list()[:500], "can_write": can_write(request)},
    )


def _preview_lead(query: str) -> Lead | None:
    """The lead a preview is rendered for: by id, or the newest matching a search."""
    query = query.strip()
    if not query:
        return None
    leads = lead_list().select_related("owner")
    if query.isdigit():
        found = leads.filter(pk=int(query)).first()
        if found is not None:
            return found
    return lead_search(leads, query).order_by("-created_at", "-id").first()


def _preview_sender(raw: str) -> SenderIdentity | None:
    senders = selectors.sender_identity_list()
    if raw.isdigit():
        found = senders.filter(pk=int(raw)).first()
        if found is not None:
            return found
    return senders.first()


@dataclass(slots=True)
class Preview:
    subject: str = ""
    html: str = ""
    text: str = ""
    errors: dict[str, list[str]] = field(default_factory=dict)  # part or "sender" -> messages


def _draft(data, template_obj: EmailTemplate | None, tenant) -> tuple[EmailTemplate, dict]:
    """The editor's fields as an unsaved template (with the edited template's id, so a
    test send is audited against it), and the errors of the parts that do not parse:
    those parts are left out, the others still render."""
    errors: dict[str, list[str]] = {}
    parts = {}
    for part in ("subject", "html", "text"):
        source = data.get(part, "")
        try:
            render.parse(source)
        except render.TemplateSyntaxError as exc:
            errors[part] = [str(exc)]
            source = ""
        parts[part] = source
    draft = EmailTemplate(
        pk=template_obj.pk if template_obj else None,
        tenant=tenant,
        name=template_obj.name if template_obj else "",
        **parts,
    )
    return draft, errors


def _preview_context(request: HttpRequest, data, template_obj=None) -> dict:
    query = data.get("preview_lead", "")
    lead = _preview_lead(query)
    sender = _preview_sender(data.get("preview_sender", ""))
    draft, errors = _draft(data, template_obj, request.tenant)
    preview = Preview(errors=errors)
    if sender is None:
        preview.errors["sender"] = [_("Add a sender first: every mail ends with its details.")]
    else:
        rendered = services.email_template_render(
            template=draft, lead=lead or Lead(tenant=request.tenant), sender=sender,
            tenant=request.tenant,
        )  # fmt: skip
        preview.subject, preview.html, preview.text = (
            rendered["subject"],
            rendered["html"],
            rendered["text"],
        )
    return {
        "preview": preview,
        "preview_lead": lead,
        "preview_query": query,
        "preview_sender": sender,
        "lead_not_found": bool(query.strip()) and lead is None,
    }


def _editor(request, template_obj, form, status: int = 200) -> TemplateResponse:
    if form.is_bound:
        data = {key: request.POST.get(key, "") for key in ("subject", "html", "text")}
    elif template_obj is not None:
        data = {
            "subject": template_obj.subject,
            "html": template_obj.html,
            "text": template_obj.text,
        }
    else:
        data = {}
    data["preview_lead"] = request.POST.get("preview_lead", request.GET.get("lead", ""))
    data["preview_sender"] = request.POST.get("preview_sender", "")
    return TemplateResponse(
        request,
        "campaigns/nurture/template_edit.html",
        {
            "template_obj": template_obj,
            "form": form,
            "senders": selectors.sender_identity_list()[:100],
            "test_form": TestSendForm(initial={"to": request.user.email}),
            **_preview_context(request, data, template_obj),
        },
        status=status,
    )


def _template_save(request: HttpRequest, template_obj: EmailTemplate | None) -> HttpResponse:
    if request.method != "POST":
        initial = EmailTemplateForm.initial_for(template_obj) if template_obj else None
        return _editor(request, template_obj, EmailTemplateForm(initial=initial))
    form = EmailTemplateForm(request.POST)
    if form.is_valid():
        origin = Origin.from_request(request)
        try:
            with transaction.atomic():
                if template_obj is None:
                    template_obj = services.email_template_create(
                        tenant_id=request.tenant.id, origin=origin, **form.service_fields()
                    )
                else:
                    services.email_template_update(
                        template=template_obj, origin=origin, **form.service_fields()
                    )
        except ValidationError as exc:
            if template_obj is not None and template_obj.pk:
                template_obj.refresh_from_db()
            form.add_service_errors(exc.message_dict)
        else:
            messages.success(request, _("The template was saved."))
            return redirect(
                "campaigns:nurture_template", tenant=request.tenant.slug, pk=template_obj.pk
            )
    return _editor(request, template_obj, form, status=400)


@tenant_view(roles=WRITE_ROLES)
def template_create(request: HttpRequest) -> HttpResponse:
    return _template_save(request, None)


@tenant_view(roles=WRITE_ROLES, isolation_model=EmailTemplate)
def template_edit(request: HttpRequest, pk: int) -> HttpResponse:
    return _template_save(request, get_object_or_404(EmailTemplate.objects.all(), pk=pk))


@tenant_view(roles=WRITE_ROLES)
@require_POST
def template_preview(request: HttpRequest) -> HttpResponse:
    """The preview partial for the editor's (unsaved) fields and the lead asked for."""
    return TemplateResponse(
        request, "campaigns/nurture/_preview.html", _preview_context(request, request.POST)
    )


@tenant_view(roles=WRITE_ROLES, isolation_model=EmailTemplate)
@require_POST
def template_test_send(request: HttpRequest, pk: int) -> HttpResponse:
    """Send the template as edited (unsaved), rendered for the preview lead, to an
    address (services.email_template_test_send: audited, nothing else written)."""
    template_obj = get_object_or_404(EmailTemplate.objects.all(), pk=pk)
    # The sender is the one the preview shows.
    form = TestSendForm(
        {"to": request.POST.get("to", ""), "sender": request.POST.get("preview_sender", "")}
    )
    errors: list[str] = []
    sent_to = ""
    draft, part_errors = _draft(request.POST, template_obj, request.tenant)
    if not form.is_valid():
        errors = [message for messages_ in form.errors.values() for message in messages_]
    elif part_errors:
        errors = [_("Fix the template first.")]
    else:
        lead = _preview_lead(request.POST.get("preview_lead", ""))
        try:
            services.email_template_test_send(
                template=draft,
                lead=lead or Lead(tenant=request.tenant),
                sender=form.cleaned_data["sender"],
                tenant=request.tenant,
                to=form.cleaned_data["to"],
                origin=Origin.from_request(request),
            )
        except ValidationError as exc:
            errors = exc.messages
        else:
            sent_to = form.cleaned_data["to"]
    if request.htmx:
        return TemplateResponse(
            request,
            "campaigns/nurture/_test_send_result.html",
            {"errors": errors, "sent_to": sent_to},
            status=400 if errors else 200,
        )
    for message in errors:
        messages.error(request, message)
    if sent_to:
        messages.success(request, _("A test mail was sent to %(to)s.") % {"to": sent_to})
    return redirect("campaigns:nurture_template", tenant=request.tenant.slug, pk=template_obj.pk)


# --- Sender identities -----------------------------------------------------------------------


@tenant_view
def sender_index(request: HttpRequest) -> HttpResponse:
    form = SenderIdentityForm(request.POST or None)
    if request.method == "POST":
        if not can_write(request):
            raise PermissionDenied
        if form.is_valid():
            try:
                with transaction.atomic():
                    services.sender_identity_create(
                        tenant_id=request.tenant.id,
                        origin=Origin.from_request(request),
                        **form.service_fields(),
                    )
            except ValidationError as exc:
                form.add_service_errors(exc.message_dict)
            else:
                messages.success(request, _("The sender was added."))
                return redirect("campaigns:nurture_senders", tenant=request.tenant.slug)
    return TemplateResponse(
        request,
        "campaigns/nurture/senders.html",
        {
            "senders": selectors.sender_identity_list()[:200],
            "form": form,
            "can_write": can_write(request),
        },
        status=400 if form.is_bound else 200,
    )


@tenant_view(roles=WRITE_ROLES, isolation_model=SenderIdentity)
def sender_edit(request: HttpRequest, pk: int) -> HttpResponse:
    sender = get_object_or_404(SenderIdentity.objects.all(), pk=pk)
    if request.method != "POST":
        form = SenderIdentityForm(initial=SenderIdentityForm.initial_for(sender))
    else:
        form = SenderIdentityForm(request.POST)
        if form.is_valid():
            try:
                with transaction.atomic():
                    services.sender_identity_update(
                        sender=sender, origin=Origin.from_request(request), **form.service_fields()
                    )
            except ValidationError as exc:
                sender.refresh_from_db()
                form.add_service_errors(exc.message_dict)
            else:
                messages.success(request, _("The sender was saved."))
                return redirect("campaigns:nurture_senders", tenant=request.tenant.slug)
    return TemplateResponse(
        request,
        "campaigns/nurture/sender_edit.html",
        {"sender": sender, "form": form},
        status=400 if form.is_bound else 200,
    )


# --- Sending settings ------------------------------------------------------------------------


@tenant_view
def sending_settings(request: HttpRequest) -> HttpResponse:
    current = services.sending_settings_get(request.tenant.id)
    if request.method != "POST":
        form = SendingSettingsForm(initial=SendingSettingsForm.initial_for(current))
    else:
        if not can_write(request):
            raise PermissionDenied
        form = SendingSettingsForm(request.POST)
        if form.is_valid():
            try:
                with transaction.atomic():
                    services.sending_settings_update(
                        tenant_id=request.tenant.id,
                        origin=Origin.from_request(request),
                        **form.service_fields(),
                    )
            except ValidationError as exc:
                form.add_service_errors(exc.message_dict)
            else:
                messages.success(request, _("The sending settings were saved."))
                return redirect("campaigns:nurture_settings", tenant=request.tenant.slug)
    return TemplateResponse(
        request,
        "campaigns/nurture/sending_settings.html",
        {"form": form, "can_write": can_write(request)},
        status=400 if form.is_bound else 200,
    )
