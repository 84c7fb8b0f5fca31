"""Campaigns API: campaigns (CRUD, filters, figures) and their members, nested under
each campaign. Views validate input, call one service, serialize the result; the
tenant, its scope and the role checks come from accounts.api.base."""

from collections import Counter

from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import TenantScopedViewSet
from campaigns import selectors, services
from campaigns.api.filters import CampaignFilter, MemberFilter
from campaigns.api.serializers import (
    CampaignDetailSerializer,
    CampaignInputSerializer,
    CampaignOutputSerializer,
    MemberAddInputSerializer,
    MemberOutputSerializer,
    MembersAddBulkInputSerializer,
    MembersAddBulkOutputSerializer,
    MemberStatusInputSerializer,
)
from campaigns.models import Campaign, CampaignMembership

NO_CONTENT = {204: OpenApiResponse(description=_("Done; no body."))}


@extend_schema_view(
    list=extend_schema(summary=_("Campaigns, newest first, with their figures")),
    retrieve=extend_schema(summary=_("One campaign"), responses=CampaignDetailSerializer),
    create=extend_schema(
        summary=_("Create a campaign"),
        request=CampaignInputSerializer,
        responses={201: CampaignDetailSerializer},
    ),
    partial_update=extend_schema(
        summary=_("Change a campaign"),
        request=CampaignInputSerializer,
        responses=CampaignDetailSerializer,
    ),
    destroy=extend_schema(summary=_("Delete a campaign and its memberships"), responses=NO_CONTENT),
)
class CampaignViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    """Everyone in the tenant reads campaigns; marketing, admins and owners change them."""

    write_roles = services.CAMPAIGN_WRITE_ROLES
    serializer_class = CampaignOutputSerializer
    filterset_class = CampaignFilter
    queryset = Campaign._base_manager.none()  # model for the schema only
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Campaign]:
        return selectors.campaign_list()

    def _detail(self, campaign_id: int, code: int = status.HTTP_200_OK) -> Response:
        campaign = selectors.campaign_get(campaign_id=campaign_id)
        campaign.leads_by_stage = selectors.campaign_leads_by_stage(campaign_id=campaign_id)
        return Response(CampaignDetailSerializer(campaign).data, status=code)

    def retrieve(self, request: Request, *args, **kwargs) -> Response:
        campaign = self.get_object()
        campaign.leads_by_stage = selectors.campaign_leads_by_stage(campaign_id=campaign.pk)
        return Response(CampaignDetailSerializer(campaign).data)

    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = CampaignInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        campaign = services.campaign_create(
            tenant_id=self.tenant.id, origin=self.origin, **serializer.service_fields()
        )
        return self._detail(campaign.pk, status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        campaign = self.get_object()
        serializer = CampaignInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        services.campaign_update(
            campaign=campaign, origin=self.origin, **serializer.service_fields()
        )
        return self._detail(campaign.pk)

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        services.campaign_delete(campaign=self.get_object(), origin=self.origin)
        return Response(status=status.HTTP_204_NO_CONTENT)


CAMPAIGN_PATH = OpenApiParameter(
    "campaign_pk", OpenApiTypes.INT, OpenApiParameter.PATH, description=_("The campaign's id.")
)


@extend_schema(parameters=[CAMPAIGN_PATH])
@extend_schema_view(
    list=extend_schema(summary=_("Members of a campaign, newest first")),
    retrieve=extend_schema(summary=_("One member")),
    create=extend_schema(
        summary=_("Add one lead to the campaign"),
        description=_(
            "An existing member keeps its status when that is further along "
            "(invited < registered < no-show < responded < attended): then 200, else 201."
        ),
        request=MemberAddInputSerializer,
        responses={201: MemberOutputSerializer, 200: MemberOutputSerializer},
    ),
    bulk=extend_schema(
        summary=_("Add up to 1,000 leads to the campaign"),
        description=_("One result per lead id; existing members keep a further status."),
        request=MembersAddBulkInputSerializer,
        responses=MembersAddBulkOutputSerializer,
    ),
    partial_update=extend_schema(
        summary=_("Set a member's status"),
        request=MemberStatusInputSerializer,
        responses=MemberOutputSerializer,
    ),
    destroy=extend_schema(summary=_("Take a lead out of the campaign"), responses=NO_CONTENT),
)
class CampaignMemberViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """`campaigns/<campaign_pk>/members/`: a campaign of another tenant, or none, is 404."""

    write_roles = services.CAMPAIGN_WRITE_ROLES
    serializer_class = MemberOutputSerializer
    filterset_class = MemberFilter
    queryset = CampaignMembership._base_manager.none()  # model for the schema only
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    # For tests/test_isolation.py: the URL's campaign is the membership's campaign.
    isolation_model = CampaignMembership
    isolation_parents = {"campaign_pk": "campaign_id"}

    campaign: Campaign

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        # Before any input is read: an unknown campaign is 404 whatever the body says.
        self.campaign = get_object_or_404(
            Campaign.objects.only("id", "tenant_id"), pk=self.kwargs["campaign_pk"]
        )

    def get_queryset(self) -> QuerySet[CampaignMembership]:
        return selectors.campaign_membership_list(campaign_id=self.campaign.pk)

    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = MemberAddInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        added = services.membership_add(
            campaign=self.campaign,
            lead=serializer.validated_data["lead_id"],
            status=serializer.validated_data["status"],
            origin=self.origin,
        )
        code = status.HTTP_201_CREATED if added.result == services.ADDED else status.HTTP_200_OK
        return Response(MemberOutputSerializer(added.membership).data, status=code)

    @action(detail=False, methods=["post"])
    def bulk(self, request: Request, *args, **kwargs) -> Response:
        serializer = MembersAddBulkInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        lead_ids = serializer.validated_data["lead_ids"]
        outcomes = services.memberships_add_bulk(
            tenant_id=self.tenant.id,
            campaign_id=self.campaign.pk,
            lead_ids=lead_ids,
            status=serializer.validated_data["status"],
            origin=self.origin,
        )
        results = [{"lead_id": lead_id, "result": outcomes[lead_id]} for lead_id in lead_ids]
        counts = dict.fromkeys(services.ADD_RESULTS, 0) | Counter(outcomes.values())
        return Response(MembersAddBulkOutputSerializer({"results": results, "counts": counts}).data)

    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        membership = self.get_object()
        serializer = MemberStatusInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = services.membership_set_status(
            membership=membership, status=serializer.validated_data["status"], origin=self.origin
        )
        return Response(MemberOutputSerializer(membership).data)

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        services.membership_remove(membership=self.get_object(), origin=self.origin)
        return Response(status=status.HTTP_204_NO_CONTENT)
