"""Webhook settings of a tenant (owners and admins): endpoints, the signing secret shown
once, enable/disable, rotate, test, and each endpoint's delivery log with replay."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.forms import WebhookEndpointForm
from accounts.models import ADMIN_ROLES
from accounts.services import Origin
from accounts.web import error_messages, keyset_page, tenant_view
from accounts.webhooks import selectors
from accounts.webhooks import services as webhook_services
from accounts.webhooks.catalogue import ALL_EVENTS
from accounts.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

DELIVERY_PAGE_SIZE = 50


def _list_page(request: HttpRequest, form: WebhookEndpointForm, status: int = 200):
    context = {"endpoints": selectors.webhook_endpoint_list(), "form": form, "ALL": ALL_EVENTS}
    return TemplateResponse(request, "accounts/webhooks.html", context, status=status)


def _secret_page(request: HttpRequest, endpoint: WebhookEndpoint, secret: str, created: bool):
    # Rendered, never redirected to: the secret exists only in this response.
    response = TemplateResponse(
        request,
        "accounts/webhook_secret.html",
        {"endpoint": endpoint, "secret": secret, "created": created},
    )
    response["Cache-Control"] = "no-store"
    return response


@tenant_view(roles=ADMIN_ROLES)
def webhooks(request: HttpRequest) -> HttpResponse:
    """GET lists the endpoints; POST creates one and shows its signing secret once."""
    if request.method != "POST":
        return _list_page(request, WebhookEndpointForm())
    form = WebhookEndpointForm(request.POST)
    if not form.is_valid():
        return _list_page(request, form, status=400)
    try:
        issued = webhook_services.webhook_endpoint_create(
            tenant_id=request.tenant.id,
            url=form.cleaned_data["url"],
            description=form.cleaned_data["description"],
            events=form.event_names(),
            origin=Origin.from_request(request),
        )
    except ValidationError as exc:
        for message in error_messages(exc):
            form.add_error(None, message)
        return _list_page(request, form, status=400)
    return _secret_page(request, issued.endpoint, issued.secret, created=True)


def _endpoint(pk: int) -> WebhookEndpoint:
    return get_object_or_404(selectors.webhook_endpoint_list(), pk=pk)


@tenant_view(roles=ADMIN_ROLES, isolation_model=WebhookEndpoint)
def webhook_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One endpoint and its delivery log, newest first (keyset pages)."""
    endpoint = _endpoint(pk)
    deliveries = selectors.webhook_delivery_list(endpoint.id)
    status = request.GET.get("status", "")
    if status in DeliveryStatus.values:
        deliveries = deliveries.filter(status=status)
    page = keyset_page(deliveries, request.GET.get("cursor"), DELIVERY_PAGE_SIZE)
    context = {
        "endpoint": endpoint,
        "page": page,
        "status": status,
        "statuses": DeliveryStatus.choices,
        "is_first_page": not request.GET.get("cursor"),
    }
    return TemplateResponse(request, "accounts/webhook_detail.html", context)


@tenant_view(roles=ADMIN_ROLES, isolation_model=WebhookEndpoint)
@require_POST
def webhook_set_active(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(pk)
    active = request.POST.get("active") == "1"
    webhook_services.webhook_endpoint_set_active(
        endpoint=endpoint, active=active, origin=Origin.from_request(request)
    )
    if active:
        messages.success(request, _("The endpoint was enabled."))
    else:
        messages.success(request, _("The endpoint was disabled."))
    return redirect("accounts:webhook_detail", tenant=request.tenant.slug, pk=endpoint.pk)


@tenant_view(roles=ADMIN_ROLES, isolation_model=WebhookEndpoint)
@require_POST
def webhook_rotate_secret(request: HttpRequest, pk: int) -> HttpResponse:
    issued = webhook_services.webhook_endpoint_rotate_secret(
        endpoint=_endpoint(pk), origin=Origin.from_request(request)
    )
    return _secret_page(request, issued.endpoint, issued.secret, created=False)


@tenant_view(roles=ADMIN_ROLES, isolation_model=WebhookEndpoint)
@require_POST
def webhook_send_test(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(pk)
    try:
        webhook_services.webhook_send_test(endpoint=endpoint, origin=Origin.from_request(request))
    except ValidationError as exc:
        for message in error_messages(exc):
            messages.error(request, message)
    else:
        messages.success(request, _("A test event was queued; it appears in the log below."))
    return redirect("accounts:webhook_detail", tenant=request.tenant.slug, pk=endpoint.pk)


@tenant_view(roles=ADMIN_ROLES, isolation_model=WebhookEndpoint)
@require_POST
def webhook_delete(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(pk)
    webhook_services.webhook_endpoint_delete(endpoint=endpoint, origin=Origin.from_request(request))
    messages.success(request, _("The endpoint %(url)s was deleted.") % {"url": endpoint.url})
    return redirect("accounts:webhooks", tenant=request.tenant.slug)


@tenant_view(roles=ADMIN_ROLES, isolation_model=WebhookDelivery)
@require_POST
def webhook_delivery_replay(request: HttpRequest, pk: int) -> HttpResponse:
    delivery = get_object_or_404(
        selectors.webhook_delivery_list().select_related("endpoint"), pk=pk
    )
    try:
        webhook_services.webhook_delivery_replay(
            delivery=delivery, origin=Origin.from_request(request)
        )
    except ValidationError as exc:
        for message in error_messages(exc):
            messages.error(request, message)
    else:
        messages.success(request, _("The delivery was queued again."))
    return redirect("accounts:webhook_detail", tenant=request.tenant.slug, pk=delivery.endpoint_id)
