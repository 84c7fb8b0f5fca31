"""Webhooks API: endpoints (CRUD, rotate secret, test event) and deliveries (list with
filters, one delivery with its attempts, replay). Owners and admins only.

Thin, like the rest of the API: serializers check shapes, accounts.webhooks.services
does the work; the tenant scope and roles come from accounts.api.base.
"""

import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error

from accounts.api.base import ADMIN_ONLY, TenantScopedViewSet
from accounts.api.serializer_base import ModelSerializer
from accounts.api.serializers import UserSummarySerializer
from accounts.webhooks import selectors
from accounts.webhooks import services as webhook_services
from accounts.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)

# --- Serializers ---------------------------------------------------------------------------


class WebhookEndpointOutputSerializer(ModelSerializer):
    created_by = UserSummarySerializer(read_only=True, allow_null=True)
    events = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "description",
            "events",
            "is_active",
            "disabled_at",
            "disabled_reason",
            "failing_since",
            "created_by",
            "created_at",
            "secret_rotated_at",
        ]
        read_only_fields = fields


class WebhookEndpointSecretSerializer(WebhookEndpointOutputSerializer):
    secret = serializers.CharField(
        help_text=_("The signing secret. Shown in this response only; store it now.")
    )

    class Meta(WebhookEndpointOutputSerializer.Meta):
        fields = [*WebhookEndpointOutputSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class WebhookEndpointInputSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=2000)
    description = serializers.CharField(max_length=200, allow_blank=True, required=False)
    events = serializers.ListField(
        child=serializers.CharField(max_length=64),
        allow_empty=False,
        help_text=_('Event names, or ["*"] for every event.'),
    )
    is_active = serializers.BooleanField(
        required=False, help_text=_("On update: false disables, true enables again.")
    )


class WebhookAttemptSerializer(ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["number", "attempted_at", "status_code", "duration_ms", "error", "succeeded"]
        read_only_fields = fields


class WebhookDeliveryOutputSerializer(ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "endpoint",
            "event_id",
            "event_name",
            "status",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "last_duration_ms",
            "last_error",
            "replay_of",
            "created_at",
            "delivered_at",
        ]
        read_only_fields = fields


class WebhookDeliveryDetailSerializer(WebhookDeliveryOutputSerializer):
    body = serializers.CharField(help_text=_("The exact JSON text sent."))
    attempt_log = WebhookAttemptSerializer(many=True, read_only=True)

    class Meta(WebhookDeliveryOutputSerializer.Meta):
        fields = [*WebhookDeliveryOutputSerializer.Meta.fields, "body", "attempt_log"]
        read_only_fields = fields


def _validation_error(exc: DjangoValidationError) -> serializers.ValidationError:
    return serializers.ValidationError(as_serializer_error(exc))


# --- Endpoints -------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary=_("Webhook endpoints of the tenant")),
    retrieve=extend_schema(summary=_("One webhook endpoint")),
    create=extend_schema(
        summary=_("Add a webhook endpoint; the signing secret is in this response only"),
        request=WebhookEndpointInputSerializer,
        responses={201: WebhookEndpointSecretSerializer},
    ),
    partial_update=extend_schema(
        summary=_("Change an endpoint, or disable and enable it"),
        request=WebhookEndpointInputSerializer,
        responses=WebhookEndpointOutputSerializer,
    ),
    destroy=extend_schema(
        summary=_("Delete an endpoint and its delivery log"),
        responses={204: OpenApiResponse(description=_("Done; no body."))},
    ),
)
class WebhookEndpointViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    read_roles = ADMIN_ONLY
    write_roles = ADMIN_ONLY
    serializer_class = WebhookEndpointOutputSerializer
    queryset = WebhookEndpoint._base_manager.none()  # model for the schema only
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[WebhookEndpoint]:
        return selectors.webhook_endpoint_list()

    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = WebhookEndpointInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            issued = webhook_services.webhook_endpoint_create(
                tenant_id=self.tenant.id,
                url=data["url"],
                events=data["events"],
                description=data.get("description", ""),
                origin=self.origin,
            )
        except DjangoValidationError as exc:
            raise _validation_error(exc) from exc
        body = {**WebhookEndpointOutputSerializer(issued.endpoint).data, "secret": issued.secret}
        return Response(body, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        endpoint = self.get_object()
        serializer = WebhookEndpointInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        active = data.pop("is_active", None)
        try:
            endpoint = webhook_services.webhook_endpoint_update(
                endpoint=endpoint, origin=self.origin, **data
            )
        except DjangoValidationError as exc:
            raise _validation_error(exc) from exc
        if active is not None:
            endpoint = webhook_services.webhook_endpoint_set_active(
                endpoint=endpoint, active=active, origin=self.origin
            )
        return Response(WebhookEndpointOutputSerializer(endpoint).data)

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        webhook_services.webhook_endpoint_delete(endpoint=self.get_object(), origin=self.origin)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary=_("Replace the signing secret; the new one is in this response only"),
        request=None,
        responses=WebhookEndpointSecretSerializer,
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, *args, **kwargs) -> Response:
        issued = webhook_services.webhook_endpoint_rotate_secret(
            endpoint=self.get_object(), origin=self.origin
        )
        body = {**WebhookEndpointOutputSerializer(issued.endpoint).data, "secret": issued.secret}
        return Response(body)

    @extend_schema(
        summary=_("Send a webhook.test event to the endpoint"),
        request=None,
        responses={202: WebhookDeliveryOutputSerializer},
    )
    @action(detail=True, methods=["post"])
    def test(self, request: Request, *args, **kwargs) -> Response:
        try:
            delivery = webhook_services.webhook_send_test(
                endpoint=self.get_object(), origin=self.origin
            )
        except DjangoValidationError as exc:
            raise _validation_error(exc) from exc
        return Response(
            WebhookDeliveryOutputSerializer(delivery).data, status=status.HTTP_202_ACCEPTED
        )


# --- Deliveries ------------------------------------------------------------------------------


class WebhookDeliveryFilter(django_filters.FilterSet):
    endpoint = django_filters.NumberFilter(field_name="endpoint_id")
    status = django_filters.ChoiceFilter(choices=DeliveryStatus.choices)
    event = django_filters.CharFilter(field_name="event_name", help_text=_("Event name."))
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = WebhookDelivery
        fields = ["endpoint", "status", "event", "created_after", "created_before"]


@extend_schema_view(
    list=extend_schema(summary=_("Webhook deliveries, newest first")),
    retrieve=extend_schema(
        summary=_("One delivery with its body and attempts"),
        responses=WebhookDeliveryDetailSerializer,
    ),
)
class WebhookDeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    read_roles = ADMIN_ONLY
    write_roles = ADMIN_ONLY
    serializer_class = WebhookDeliveryOutputSerializer
    filterset_class = WebhookDeliveryFilter
    queryset = WebhookDelivery._base_manager.none()  # model for the schema only
    http_method_names = ["get", "post", "head", "options"]

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        if self.action == "list":
            return selectors.webhook_delivery_list()
        return WebhookDelivery.objects.select_related("endpoint")

    def retrieve(self, request: Request, *args, **kwargs) -> Response:
        delivery = self.get_object()
        delivery.attempt_log_rows = list(selectors.webhook_attempt_list(delivery.id))
        data = WebhookDeliveryOutputSerializer(delivery).data
        data["body"] = delivery.body
        data["attempt_log"] = WebhookAttemptSerializer(delivery.attempt_log_rows, many=True).data
        return Response(data)

    @extend_schema(
        summary=_("Send a delivery again, as a new delivery"),
        request=None,
        responses={202: WebhookDeliveryOutputSerializer},
    )
    @action(detail=True, methods=["post"])
    def replay(self, request: Request, *args, **kwargs) -> Response:
        try:
            replay = webhook_services.webhook_delivery_replay(
                delivery=self.get_object(), origin=self.origin
            )
        except DjangoValidationError as exc:
            raise _validation_error(exc) from exc
        return Response(
            WebhookDeliveryOutputSerializer(replay).data, status=status.HTTP_202_ACCEPTED
        )
