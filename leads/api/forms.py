"""Capture forms API: design a form, get its public URL and embed snippet.

    GET/POST          forms/        the tenant's forms (filters: is_active, campaign)
    GET/PATCH/DELETE  forms/{id}/   one form; its detail carries `embed_html`

The spec in `fields` is checked by leads.capture.spec: errors name the field's index
and attribute, e.g. {"fields[1].maps_to": ["Field 2 (“company”): unknown lead field …"]}.
The routes are `form_urlpatterns`, included by leads/api/urls.py.
"""

import django_filters
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from accounts.api.base import TenantScopedViewSet
from accounts.api.serializer_base import ModelSerializer
from accounts.models import Role
from leads.capture import services
from leads.capture.public_views import absolute, embed_snippet, public_url, script_url
from leads.models import CaptureForm

FORM_WRITE_ROLES = frozenset({Role.OWNER, Role.ADMIN, Role.MARKETING})


class CaptureFormOutputSerializer(ModelSerializer):
    campaign_id = serializers.IntegerField(allow_null=True, read_only=True)
    public_url = serializers.SerializerMethodField(help_text=_("The hosted form page."))
    submit_url = serializers.SerializerMethodField(
        help_text=_("Where embedded forms post (form-encoded or JSON).")
    )

    class Meta:
        model = CaptureForm
        fields = [
            "id",
            "name",
            "key",
            "campaign_id",
            "fields",
            "consent_text",
            "consent_required",
            "double_opt_in",
            "thank_you_message",
            "redirect_url",
            "is_active",
            "public_url",
            "submit_url",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_public_url(self, form: CaptureForm) -> str:
        return public_url(form)

    def get_submit_url(self, form: CaptureForm) -> str:
        from django.urls import reverse

        return absolute(reverse("capture:submit", args=[form.key]))


class CaptureFormDetailSerializer(CaptureFormOutputSerializer):
    embed_html = serializers.SerializerMethodField(
        help_text=_("HTML to paste into a page: a plain form plus our small script.")
    )
    script_url = serializers.SerializerMethodField(
        help_text=_("The tracking script, for pages without a form (data-key=<form key>).")
    )

    class Meta(CaptureFormOutputSerializer.Meta):
        fields = [*CaptureFormOutputSerializer.Meta.fields, "embed_html", "script_url"]
        read_only_fields = fields

    def get_embed_html(self, form: CaptureForm) -> str:
        return embed_snippet(form)

    def get_script_url(self, form: CaptureForm) -> str:
        return script_url()


class CaptureFormInputSerializer(serializers.Serializer):
    """Shapes only; the spec and the rules are checked by the service."""

    name = serializers.CharField(max_length=200)
    fields = serializers.JSONField(
        help_text=_(
            'A list of {"name", "label", "type", "required", "maps_to", "choices",'
            ' "placeholder", "help_text"}; maps_to is "lead.<field>", "custom.<key>" or "".'
        )
    )
    campaign_id = serializers.IntegerField(allow_null=True, required=False)
    consent_text = serializers.CharField(allow_blank=True, required=False, max_length=5000)
    consent_required = serializers.BooleanField(required=False)
    double_opt_in = serializers.BooleanField(required=False)
    thank_you_message = serializers.CharField(allow_blank=True, required=False, max_length=5000)
    redirect_url = serializers.CharField(allow_blank=True, required=False, max_length=200)
    is_active = serializers.BooleanField(required=False)


class CaptureFormFilter(django_filters.FilterSet):
    # Declared, not generated: generating one would query the tenant-owned models at
    # import time, outside any tenant scope.
    is_active = django_filters.BooleanFilter(help_text=_("Active forms only, or inactive ones."))
    campaign = django_filters.NumberFilter(
        field_name="campaign_id", help_text=_("Forms of this campaign (id).")
    )

    class Meta:
        model = CaptureForm
        fields = ["is_active", "campaign"]


@extend_schema_view(
    list=extend_schema(summary=_("Capture forms of the tenant")),
    retrieve=extend_schema(
        summary=_("One capture form, with its embed code"), responses=CaptureFormDetailSerializer
    ),
    create=extend_schema(
        summary=_("Design a capture form"),
        request=CaptureFormInputSerializer,
        responses={201: CaptureFormDetailSerializer},
    ),
    partial_update=extend_schema(
        summary=_("Change a capture form (its key and embeds stay)"),
        request=CaptureFormInputSerializer,
        responses=CaptureFormDetailSerializer,
    ),
    destroy=extend_schema(
        summary=_("Delete a capture form and its submissions"),
        responses={204: OpenApiResponse(description=_("Done; no body."))},
    ),
)
class CaptureFormViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    write_roles = FORM_WRITE_ROLES
    serializer_class = CaptureFormOutputSerializer
    queryset = CaptureForm._base_manager.none()  # model for the schema only
    filterset_class = CaptureFormFilter
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[CaptureForm]:
        return CaptureForm.objects.select_related("tenant").order_by("-created_at", "-id")

    def retrieve(self, request: Request, *args, **kwargs) -> Response:
        return Response(CaptureFormDetailSerializer(self.get_object()).data)

    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = CaptureFormInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        form = services.capture_form_create(
            tenant_id=self.tenant.id, origin=self.origin, **serializer.validated_data
        )
        form.tenant = self.tenant
        return Response(CaptureFormDetailSerializer(form).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        form = self.get_object()
        serializer = CaptureFormInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        form = services.capture_form_update(
            form=form, origin=self.origin, **serializer.validated_data
        )
        return Response(CaptureFormDetailSerializer(form).data)

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        services.capture_form_delete(form=self.get_object(), origin=self.origin)
        return Response(status=status.HTTP_204_NO_CONTENT)


# Path-style routes (`<str:pk>`): a non-numeric id still reaches the view and gets a JSON 404.
router = SimpleRouter(use_regex_path=False)
router.register("forms", CaptureFormViewSet, basename="capture-form")

form_urlpatterns: list = [*router.urls]
