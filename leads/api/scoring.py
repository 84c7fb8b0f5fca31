"""Scoring API: models with their rules, the editor's preview and field catalogue, a
recompute on demand, and a lead's score breakdown.

    GET/POST          scoring-models/                  list / create (rules nested)
    GET/PATCH/DELETE  scoring-models/<id>/             one model; PATCH with `rules`
                                                       replaces them
    POST              scoring-models/preview/          leads reaching MQL under unsaved rules
    GET               scoring-models/fields/           what rules may test (for editors)
    POST              scoring-models/<id>/recompute/   recompute now (background task)
    GET               leads/<id>/score/                the lead's scores, rule by rule
"""

from django.db.models import Prefetch, QuerySet
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import TenantScopedViewSet
from accounts.models import Role
from leads.api.pagination import IdPagination
from leads.models import Lead, ScoringModel, ScoringRule
from leads.scoring import services

MARKETING_ADMIN_ROLES = frozenset({Role.MARKETING, Role.ADMIN, Role.OWNER})
RULE_FIELDS = [
    "id", "kind", "field", "operator", "value", "activity_type", "property_key",
    "property_operator", "property_value", "points", "cap", "window_days", "position",
]  # fmt: skip


class ScoringRuleSerializer(serializers.ModelSerializer):
    class Meta:
        model = ScoringRule
        fields = RULE_FIELDS
        read_only_fields = RULE_FIELDS


class ScoringModelOutputSerializer(serializers.ModelSerializer):
    rules = ScoringRuleSerializer(many=True, read_only=True)
    scores_current = serializers.SerializerMethodField()

    class Meta:
        model = ScoringModel
        fields = [
            "id", "name", "description", "is_primary", "mql_threshold", "bands",
            "half_life_days", "version", "scored_version", "scored_at", "scores_current",
            "rules", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_scores_current(self, model: ScoringModel) -> bool:
        """Whether every lead's score is computed under the model's current rules."""
        return model.scored_version >= model.version


class RuleInputSerializer(serializers.Serializer):
    """Shape only; leads.scoring.services.rule_clean checks the meaning."""

    kind = serializers.ChoiceField(choices=ScoringRule.Kind.choices)
    points = serializers.IntegerField()
    field = serializers.CharField(required=False, allow_blank=True)
    operator = serializers.CharField(required=False, allow_blank=True)
    value = serializers.JSONField(required=False, allow_null=True)
    activity_type = serializers.CharField(required=False, allow_blank=True)
    property_key = serializers.CharField(required=False, allow_blank=True)
    property_operator = serializers.CharField(required=False, allow_blank=True)
    property_value = serializers.JSONField(required=False, allow_null=True)
    cap = serializers.IntegerField(required=False, allow_null=True)
    window_days = serializers.IntegerField(required=False, allow_null=True)


class ScoringModelInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True)
    is_primary = serializers.BooleanField(required=False)
    mql_threshold = serializers.IntegerField(required=False)
    bands = serializers.JSONField(required=False)
    half_life_days = serializers.DecimalField(
        max_digits=7, decimal_places=2, required=False, allow_null=True
    )
    rules = RuleInputSerializer(many=True, required=False)


class PreviewInputSerializer(serializers.Serializer):
    rules = RuleInputSerializer(many=True)
    mql_threshold = serializers.IntegerField()
    half_life_days = serializers.DecimalField(
        max_digits=7, decimal_places=2, required=False, allow_null=True
    )
    bands = serializers.JSONField(required=False)
    model = serializers.IntegerField(required=False, help_text=_("The saved model it replaces."))


PREVIEW_OUTPUT = inline_serializer(
    "ScoringPreview",
    {
        "would_reach_mql": serializers.IntegerField(),
        "leads": serializers.IntegerField(),
        "reach_mql_now": serializers.IntegerField(allow_null=True),
    },
)


def _rules(data: list[dict]) -> list[dict]:
    # Unset optional keys stay unset, so rule_clean sees exactly what was sent.
    return [dict(rule) for rule in data]


@extend_schema_view(
    list=extend_schema(summary=_("Scoring models")),
    retrieve=extend_schema(summary=_("One scoring model with its rules")),
    create=extend_schema(
        summary=_("Create a scoring model"),
        request=ScoringModelInputSerializer,
        responses={201: ScoringModelOutputSerializer},
    ),
    partial_update=extend_schema(
        summary=_("Change a scoring model (rules given replace the rules)"),
        request=ScoringModelInputSerializer,
    ),
    destroy=extend_schema(summary=_("Delete a scoring model")),
)
class ScoringModelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    write_roles = MARKETING_ADMIN_ROLES
    serializer_class = ScoringModelOutputSerializer
    pagination_class = IdPagination
    queryset = ScoringModel._base_manager.none()
    isolation_model = ScoringModel
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[ScoringModel]:
        return ScoringModel.objects.prefetch_related(
            Prefetch("rules", queryset=ScoringRule.objects.order_by("position", "id"))
        ).order_by("-is_primary", "name", "id")

    def _out(self, model: ScoringModel) -> dict:
        return ScoringModelOutputSerializer(self.get_queryset().get(pk=model.pk)).data

    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = ScoringModelInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        rules = _rules(request.data.get("rules") or [])
        data.pop("rules", None)
        model = services.scoring_model_create(
            tenant_id=self.tenant.id, origin=self.origin, rules=rules, **data
        )
        return Response(self._out(model), status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        model = self.get_object()
        serializer = ScoringModelInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        rules = _rules(request.data["rules"]) if "rules" in request.data else None
        data.pop("rules", None)
        model = services.scoring_model_update(model=model, origin=self.origin, rules=rules, **data)
        return Response(self._out(model))

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        services.scoring_model_delete(model=self.get_object(), origin=self.origin)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary=_("Preview: leads that would reach MQL under these rules"),
        request=PreviewInputSerializer,
        responses={200: PREVIEW_OUTPUT},
    )
    @action(detail=False, methods=["post"])
    def preview(self, request: Request, *args, **kwargs) -> Response:
        serializer = PreviewInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        model = None
        if data.get("model") is not None:
            model = self.get_queryset().filter(pk=data["model"]).first()
            if model is None:
                raise serializers.ValidationError({"model": [_("No such scoring model.")]})
        result = services.scoring_preview(
            tenant_id=self.tenant.id,
            rules=_rules(request.data.get("rules") or []),
            mql_threshold=data["mql_threshold"],
            half_life_days=data.get("half_life_days"),
            bands=data.get("bands"),
            model=model,
        )
        return Response(result)

    @extend_schema(summary=_("What scoring rules may test"), responses={200: dict})
    @action(detail=False, methods=["get"])
    def fields(self, request: Request, *args, **kwargs) -> Response:
        return Response(services.rule_catalogue())

    @extend_schema(
        summary=_("Recompute every lead's score now"), request=None, responses={202: dict}
    )
    @action(detail=True, methods=["post"])
    def recompute(self, request: Request, *args, **kwargs) -> Response:
        model = self.get_object()
        services.scores_recompute_later(tenant_id=self.tenant.id, model_id=model.id)
        return Response({"queued": True}, status=status.HTTP_202_ACCEPTED)


def lead_score_response(lead: Lead) -> Response:
    """GET leads/<id>/score/: each model's fit, behaviour, total and band, and every rule
    with the points it gave (zero for rules that did not score), primary model first."""
    return Response(services.lead_score_explained(lead))
