"""Nurture API: sender identities, email templates (preview, test send), sequences
(status, versioned steps, figures), enrolments (enrol by ids or a lead filter, pause,
resume, remove, mark replied), outgoing messages and their events, sending settings.

Views validate shapes, call one service, serialize the result; the tenant, its scope
and the role checks come from accounts.api.base. Everyone in the tenant reads;
marketing, admins and owners write (campaigns.services.CAMPAIGN_WRITE_ROLES, checked
again by the services). The suppression list is the leads API's `suppressions/`.
"""

from collections import Counter

from django.db.models import Count, QuerySet
from django.http import QueryDict
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import TenantScopedAPIView, TenantScopedViewSet
from campaigns.models import (
    Campaign,
    EmailTemplate,
    Enrolment,
    OutgoingMessage,
    Segment,
    SenderIdentity,
    Sequence,
    SequenceStep,
)
from campaigns.nurture import selectors, services
from campaigns.nurture.api.filters import (
    EnrolmentFilter,
    OutgoingMessageFilter,
    SenderIdentityFilter,
)
from campaigns.nurture.api.serializers import (
    MAX_ENROL,
    EmailTemplateInputSerializer,
    EmailTemplateOutputSerializer,
    EnrolInputSerializer,
    EnrolmentOutputSerializer,
    EnrolOutputSerializer,
    OutgoingMessageDetailSerializer,
    OutgoingMessageOutputSerializer,
    PreviewQuerySerializer,
    RenderedMailSerializer,
    SenderIdentityInputSerializer,
    SenderIdentityOutputSerializer,
    SendingSettingsSerializer,
    SequenceDetailSerializer,
    SequenceInputSerializer,
    SequenceOutputSerializer,
    SequenceStatsSerializer,
    StepsSerializer,
    TestSendInputSerializer,
    TestSendOutputSerializer,
)
from campaigns.services import CAMPAIGN_WRITE_ROLES
from leads.api.filters import LeadFilter
from leads.api.pagination import CreatedPagination, KeysetPagination, OccurredPagination
from leads.api.serializers import ActivityOutputSerializer
from leads.models import Activity, ActivityType, CaptureForm, Lead
from leads.selectors import lead_list

NO_CONTENT = {204: OpenApiResponse(description=_("Done; no body."))}
EMAIL_ACTIVITY_TYPES = [
    ActivityType.EMAIL_SENT,
    ActivityType.EMAIL_DELIVERED,
    ActivityType.EMAIL_OPENED,
    ActivityType.EMAIL_CLICKED,
    ActivityType.EMAIL_BOUNCED,
    ActivityType.EMAIL_UNSUBSCRIBED,
]


class NewestPagination(KeysetPagination):
    """The large tables (enrolments, messages): by id, which grows with the time a row
    was written, so the primary key's index serves the order."""

    sorts = {"-created": (("id",), True), "created": (("id",), False)}


class _NurtureViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    write_roles = CAMPAIGN_WRITE_ROLES
    pagination_class = CreatedPagination
    filterset_class = None
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]


def _validated(serializer_class, data, **kwargs) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


# --- Sender identities ------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary=_("Sender identities (from, reply-to, postal address)")),
    retrieve=extend_schema(summary=_("One sender identity")),
    create=extend_schema(
        summary=_("Create a sender identity"),
        request=SenderIdentityInputSerializer,
        responses={201: SenderIdentityOutputSerializer},
    ),
    partial_update=extend_schema(
        summary=_("Change a sender identity"),
        request=SenderIdentityInputSerializer,
        responses=SenderIdentityOutputSerializer,
    ),
    destroy=extend_schema(
        summary=_("Delete a sender identity no sequence uses"), responses=NO_CONTENT
    ),
)
class SenderIdentityViewSet(_NurtureViewSet):
    serializer_class = SenderIdentityOutputSerializer
    filterset_class = SenderIdentityFilter
    queryset = SenderIdentity._base_manager.none()  # model for the schema only

    def get_queryset(self) -> QuerySet[SenderIdentity]:
        return SenderIdentity.objects.all()

    def create(self, request: Request, *args, **kwargs) -> Response:
        data = _validated(SenderIdentityInputSerializer, request.data)
        sender = services.sender_identity_create(
            tenant_id=self.tenant.id, origin=self.origin, **data
        )
        return Response(SenderIdentityOutputSerializer(sender).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        sender = self.get_object()
        data = _validated(SenderIdentityInputSerializer, request.data, partial=True)
        sender = services.sender_identity_update(sender=sender, origin=self.origin, **data)
        return Response(SenderIdentityOutputSerializer(sender).data)

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        services.sender_identity_delete(sender=self.get_object(), origin=self.origin)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Email templates --------------------------------------------------------------------------


def _lead_and_sender(data: dict) -> tuple[Lead, SenderIdentity]:
    """The lead whose data fills a preview, and the sender whose footer it shows."""
    lead = Lead.objects.select_related("company", "owner").filter(pk=data["lead_id"]).first()
    if lead is None:
        raise exceptions.ValidationError({"lead_id": [_("No lead with this id.")]})
    senders = SenderIdentity.objects.order_by("id")
    if data.get("sender_id") is not None:
        senders = senders.filter(pk=data["sender_id"])
    sender = senders.first()
    if sender is None:
        message = (
            _("No sender identity with this id.")
            if data.get("sender_id") is not None
            else _("Create a sender identity first.")
        )
        raise exceptions.ValidationError({"sender_id": [message]})
    return lead, sender


@extend_schema_view(
    list=extend_schema(summary=_("Email templates")),
    retrieve=extend_schema(summary=_("One email template")),
    create=extend_schema(
        summary=_("Create an email template (merge fields are checked)"),
        request=EmailTemplateInputSerializer,
        responses={201: EmailTemplateOutputSerializer},
    ),
    partial_update=extend_schema(
        summary=_("Change an email template"),
        request=EmailTemplateInputSerializer,
        responses=EmailTemplateOutputSerializer,
    ),
    destroy=extend_schema(summary=_("Delete a template no step uses"), responses=NO_CONTENT),
    preview=extend_schema(
        summary=_("The mail as a lead of the tenant would get it"),
        description=_(
            "Subject, plain text and HTML rendered with the lead's data and the sender's "
            "footer; no tracking, and the unsubscribe link is a placeholder."
        ),
        parameters=[PreviewQuerySerializer],
        responses=RenderedMailSerializer,
        filters=False,
    ),
    test_send=extend_schema(
        summary=_("Send the mail a lead would get to an address, as a test"),
        description=_(
            "Through the mail server, the subject marked as a test; no outgoing message "
            "is recorded and nothing is tracked."
        ),
        request=TestSendInputSerializer,
        responses=TestSendOutputSerializer,
    ),
)
class EmailTemplateViewSet(_NurtureViewSet):
    serializer_class = EmailTemplateOutputSerializer
    queryset = EmailTemplate._base_manager.none()

    def get_queryset(self) -> QuerySet[EmailTemplate]:
        return EmailTemplate.objects.all()

    def create(self, request: Request, *args, **kwargs) -> Response:
        data = _validated(EmailTemplateInputSerializer, request.data)
        template = services.email_template_create(
            tenant_id=self.tenant.id, origin=self.origin, **data
        )
        return Response(
            EmailTemplateOutputSerializer(template).data, status=status.HTTP_201_CREATED
        )

    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        template = self.get_object()
        data = _validated(EmailTemplateInputSerializer, request.data, partial=True)
        template = services.email_template_update(template=template, origin=self.origin, **data)
        return Response(EmailTemplateOutputSerializer(template).data)

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        services.email_template_delete(template=self.get_object(), origin=self.origin)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @action(detail=True, methods=["get"], filterset_class=None)
    def preview(self, request: Request, *args, **kwargs) -> Response:
        template = self.get_object()
        lead, sender = _lead_and_sender(_validated(PreviewQuerySerializer, request.query_params))
        rendered = services.email_template_render(
            template=template, lead=lead, sender=sender, tenant=self.tenant
        )
        return Response(RenderedMailSerializer(rendered).data)

    @action(detail=True, methods=["post"], url_path="test-send")
    def test_send(self, request: Request, *args, **kwargs) -> Response:
        template = self.get_object()
        data = _validated(TestSendInputSerializer, request.data)
        lead, sender = _lead_and_sender(data)
        message_id = services.email_template_test_send(
            template=template,
            lead=lead,
            sender=sender,
            tenant=self.tenant,
            to=data["to"],
            origin=self.origin,
        )
        return Response(TestSendOutputSerializer({"to": data["to"], "message_id": message_id}).data)


# --- Sequences ---------------------------------------------------------------------------------


def _steps_body(sequence: Sequence) -> dict:
    steps = SequenceStep.objects.filter(sequence=sequence, version=sequence.version).order_by(
        "order"
    )
    return StepsSerializer(
        {"sequence_id": sequence.pk, "version": sequence.version, "steps": list(steps)}
    ).data


def _check_references(data: dict) -> None:
    """Ids of the tenant's rows (another tenant's are invisible here: 'no such')."""
    errors = {}
    checks = (
        ("sender_id", SenderIdentity, _("No sender identity with this id.")),
        ("enrol_on_campaign_id", Campaign, _("No campaign with this id.")),
        ("enrol_on_form_id", CaptureForm, _("No form with this id.")),
        ("enrol_on_segment_id", Segment, _("No segment with this id.")),
    )
    for field, model, message in checks:
        if data.get(field) is not None and not model.objects.filter(pk=data[field]).exists():
            errors[field] = [message]
    if errors:
        raise exceptions.ValidationError(errors)


@extend_schema_view(
    list=extend_schema(summary=_("Sequences, newest first")),
    retrieve=extend_schema(
        summary=_("One sequence, with its enrolments by state"),
        responses=SequenceDetailSerializer,
    ),
    create=extend_schema(
        summary=_("Create a sequence (a draft; add steps, then activate it)"),
        request=SequenceInputSerializer,
        responses={201: SequenceDetailSerializer},
    ),
    partial_update=extend_schema(
        summary=_("Change a sequence's settings"),
        request=SequenceInputSerializer,
        responses=SequenceDetailSerializer,
    ),
    destroy=extend_schema(
        summary=_("Delete a sequence nobody was enrolled in"), responses=NO_CONTENT
    ),
    activate=extend_schema(
        summary=_("Activate the sequence (resumes its paused enrolments)"),
        request=None,
        responses=SequenceDetailSerializer,
    ),
    pause=extend_schema(
        summary=_("Pause the sequence and its enrolments"),
        request=None,
        responses=SequenceDetailSerializer,
    ),
    stats=extend_schema(
        summary=_("The sequence's figures: enrolments, mails, and each email step's"),
        description=_(
            "The figures of the sequence page: enrolments by state; mails sent, delivered, "
            "opened, clicked, replied, unsubscribed, bounced and leads converted to MQL, "
            "with their rates; the same per email step. A fixed number of queries "
            "whatever the number of steps and leads."
        ),
        responses=SequenceStatsSerializer,
    ),
)
class SequenceViewSet(_NurtureViewSet):
    serializer_class = SequenceOutputSerializer
    queryset = Sequence._base_manager.none()
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Sequence]:
        return Sequence.objects.all()

    def _detail(self, sequence_id: int, code: int = status.HTTP_200_OK) -> Response:
        sequence = Sequence.objects.get(pk=sequence_id)
        counts = dict.fromkeys(Enrolment.State.values, 0)
        for row in (
            Enrolment.objects.filter(sequence_id=sequence_id)
            .order_by()
            .values("state")
            .annotate(n=Count("id"))
        ):
            counts[row["state"]] = row["n"]
        sequence.enrolment_counts = counts
        return Response(SequenceDetailSerializer(sequence).data, status=code)

    def retrieve(self, request: Request, *args, **kwargs) -> Response:
        return self._detail(self.get_object().pk)

    def create(self, request: Request, *args, **kwargs) -> Response:
        data = _validated(SequenceInputSerializer, request.data)
        _check_references(data)
        sequence = services.sequence_create(tenant_id=self.tenant.id, origin=self.origin, **data)
        return self._detail(sequence.pk, status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        sequence = self.get_object()
        data = _validated(SequenceInputSerializer, request.data, partial=True)
        _check_references(data)
        services.sequence_update(sequence=sequence, origin=self.origin, **data)
        return self._detail(sequence.pk)

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        services.sequence_delete(sequence=self.get_object(), origin=self.origin)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _set_status(self, status_: str) -> Response:
        sequence = services.sequence_set_status(
            sequence=self.get_object(), status=status_, origin=self.origin
        )
        return self._detail(sequence.pk)

    @action(detail=True, methods=["post"])
    def activate(self, request: Request, *args, **kwargs) -> Response:
        return self._set_status(Sequence.Status.ACTIVE)

    @action(detail=True, methods=["post"])
    def pause(self, request: Request, *args, **kwargs) -> Response:
        return self._set_status(Sequence.Status.PAUSED)

    @action(detail=True, methods=["get"], pagination_class=None, filterset_class=None)
    def stats(self, request: Request, *args, **kwargs) -> Response:
        sequence = self.get_object()
        stats = selectors.sequence_stats_get(sequence.pk)
        steps = [
            {
                "step_id": step.pk,
                "order": step.order,
                "version": step.version,
                "template_id": step.template_id,
                "template_name": step.template.name if step.template else "",
                "mail": stats.steps.get(step.pk) or selectors.MailFigures(),
            }
            for step in selectors.email_steps_with_mail(sequence, stats)
        ]
        body = {
            "sequence_id": sequence.pk,
            "version": sequence.version,
            "enrolments": stats,
            "mail": stats.mail,
            "steps": steps,
        }
        return Response(SequenceStatsSerializer(body).data)

    @extend_schema(
        methods=["GET"],
        summary=_("The steps of the sequence's current version"),
        responses=StepsSerializer,
    )
    @extend_schema(
        methods=["PUT"],
        summary=_("Replace the steps (a new version when leads run the current one)"),
        description=_(
            "Enrolments keep the version they joined: nothing is sent twice and nobody "
            "is skipped. A bad step is named by its position and field: "
            '{"steps": {"2": {"template_id": ["…"]}}}.'
        ),
        request=StepsSerializer,
        responses=StepsSerializer,
    )
    @action(detail=True, methods=["get", "put"], pagination_class=None, filterset_class=None)
    def steps(self, request: Request, *args, **kwargs) -> Response:
        sequence = self.get_object()
        if request.method == "GET":
            return Response(_steps_body(sequence))
        data = _validated(StepsSerializer, request.data)
        try:
            services.sequence_steps_save(sequence=sequence, steps=data["steps"], origin=self.origin)
        except services.StepsInvalid as exc:
            if exc.step is None:
                raise exceptions.ValidationError({"steps": exc.messages}) from None
            raise exceptions.ValidationError(
                {"steps": {str(exc.step.index): {exc.step.field: exc.step.messages}}}
            ) from None
        return Response(_steps_body(Sequence.objects.get(pk=sequence.pk)))


# --- Enrolments -------------------------------------------------------------------------------


def _leads_matching(lead_filter: dict) -> list[int]:
    """Ids of the leads the lead list's filters select (at most MAX_ENROL)."""
    unknown = sorted(set(lead_filter) - set(LeadFilter.base_filters))
    if unknown:
        raise exceptions.ValidationError(
            {"lead_filter": {key: [_("Not a lead filter.")] for key in unknown}}
        )
    query = QueryDict(mutable=True)
    for key, value in lead_filter.items():
        values = value if isinstance(value, list) else [value]
        query.setlist(key, ["" if item is None else str(item) for item in values])
    filterset = LeadFilter(data=query, queryset=lead_list())
    if not filterset.is_valid():
        raise exceptions.ValidationError({"lead_filter": filterset.errors})
    ids = list(filterset.qs.order_by("id").values_list("id", flat=True)[: MAX_ENROL + 1])
    if len(ids) > MAX_ENROL:
        raise exceptions.ValidationError(
            {
                "lead_filter": [
                    _("More than %(n)d leads match: narrow the filter or use a segment.")
                    % {"n": MAX_ENROL}
                ]
            }
        )
    return ids


def _enrol_results(sequence_id: int, lead_ids: list[int], enrolled: list[int]) -> list[dict]:
    """Why each lead that was not enrolled was left out (two queries for them all)."""
    rest = set(lead_ids) - set(enrolled)
    found = set(Lead.objects.filter(pk__in=rest).values_list("id", flat=True))
    live = set(
        Enrolment.objects.filter(
            sequence_id=sequence_id, lead_id__in=found, state__in=services.LIVE
        ).values_list("lead_id", flat=True)
    )
    done = set(enrolled)
    results = []
    for lead_id in sorted(set(lead_ids)):
        if lead_id in done:
            result = "enrolled"
        elif lead_id not in found:
            result = "not_found"
        elif lead_id in live:
            result = "already_enrolled"
        else:
            result = "finished"
        results.append({"lead_id": lead_id, "result": result})
    return results


@extend_schema_view(
    list=extend_schema(summary=_("Enrolments, newest first (filter by sequence, state, lead)")),
    retrieve=extend_schema(summary=_("One enrolment: where the lead stands, when next")),
    enrol=extend_schema(
        summary=_("Enrol one lead, a list of leads, or the leads a filter selects"),
        description=_(
            "One result per lead. Leads already in the sequence, or that went through it "
            "when it does not allow re-enrolment, are left out. The sequence must be "
            "active or paused."
        ),
        request=EnrolInputSerializer,
        responses=EnrolOutputSerializer,
    ),
    pause=extend_schema(
        summary=_("Pause the enrolment"), request=None, responses=EnrolmentOutputSerializer
    ),
    resume=extend_schema(
        summary=_("Resume the enrolment"), request=None, responses=EnrolmentOutputSerializer
    ),
    remove=extend_schema(
        summary=_("Take the lead out of the sequence (exit: removed)"),
        request=None,
        responses=EnrolmentOutputSerializer,
    ),
    replied=extend_schema(
        summary=_("Mark that the lead replied (exit: replied)"),
        request=None,
        responses=EnrolmentOutputSerializer,
    ),
)
class EnrolmentViewSet(_NurtureViewSet):
    serializer_class = EnrolmentOutputSerializer
    filterset_class = EnrolmentFilter
    pagination_class = NewestPagination
    queryset = Enrolment._base_manager.none()
    http_method_names = ["get", "post", "head", "options"]

    def get_queryset(self) -> QuerySet[Enrolment]:
        return Enrolment.objects.select_related("lead__company")

    @action(detail=False, methods=["post"], filterset_class=None, pagination_class=None)
    def enrol(self, request: Request, *args, **kwargs) -> Response:
        data = _validated(EnrolInputSerializer, request.data)
        if "lead_filter" in data:
            lead_ids = _leads_matching(data["lead_filter"])
        else:
            lead_ids = data.get("lead_ids") or [data["lead_id"]]
        enrolled = services.enrol_leads(
            tenant_id=self.tenant.id,
            sequence_id=data["sequence_id"],
            lead_ids=lead_ids,
            origin=self.origin,
        )
        results = _enrol_results(data["sequence_id"], lead_ids, enrolled)
        counts = Counter(result["result"] for result in results)
        body = {
            "results": results,
            "counts": {
                name: counts.get(name, 0)
                for name in ("enrolled", "already_enrolled", "finished", "not_found")
            },
        }
        return Response(EnrolOutputSerializer(body).data)

    def _set_state(self, action_name: str) -> Response:
        enrolment = services.enrolment_set_state(
            enrolment=self.get_object(), action=action_name, origin=self.origin
        )
        return Response(EnrolmentOutputSerializer(self.get_queryset().get(pk=enrolment.pk)).data)

    @action(detail=True, methods=["post"])
    def pause(self, request: Request, *args, **kwargs) -> Response:
        return self._set_state("pause")

    @action(detail=True, methods=["post"])
    def resume(self, request: Request, *args, **kwargs) -> Response:
        return self._set_state("resume")

    @action(detail=True, methods=["post"])
    def remove(self, request: Request, *args, **kwargs) -> Response:
        return self._set_state("remove")

    @action(detail=True, methods=["post"])
    def replied(self, request: Request, *args, **kwargs) -> Response:
        return self._set_state("replied")


# --- Outgoing messages ------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary=_("Outgoing messages, newest first")),
    retrieve=extend_schema(
        summary=_("One outgoing message, with the headers it was sent with"),
        responses=OutgoingMessageDetailSerializer,
    ),
    events=extend_schema(
        summary=_("What happened to the message: the lead's email activities naming it"),
        description=_("Opens, clicks, bounces and unsubscribes recorded for this mail."),
        responses=ActivityOutputSerializer(many=True),
        filters=False,
    ),
)
class OutgoingMessageViewSet(_NurtureViewSet):
    """Read-only: the dispatcher writes these rows."""

    serializer_class = OutgoingMessageOutputSerializer
    filterset_class = OutgoingMessageFilter
    pagination_class = NewestPagination
    queryset = OutgoingMessage._base_manager.none()
    http_method_names = ["get", "head", "options"]

    def get_queryset(self) -> QuerySet[OutgoingMessage]:
        return OutgoingMessage.objects.select_related("lead__company", "enrolment")

    def retrieve(self, request: Request, *args, **kwargs) -> Response:
        return Response(OutgoingMessageDetailSerializer(self.get_object()).data)

    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=OccurredPagination)
    def events(self, request: Request, *args, **kwargs) -> Response:
        message = self.get_object()
        # The lead's activities (tenant, lead, occurred_at index), then this message's.
        activities = Activity.objects.filter(
            lead_id=message.lead_id,
            type__in=EMAIL_ACTIVITY_TYPES,
            properties__message_id=message.pk,
        )
        page = self.paginate_queryset(activities)
        return self.get_paginated_response(ActivityOutputSerializer(page, many=True).data)


# --- Sending settings -------------------------------------------------------------------------


class SendingSettingsView(TenantScopedAPIView):
    """`sending-settings/`: the tenant's limits and quiet hours (defaults until changed)."""

    write_roles = CAMPAIGN_WRITE_ROLES

    @extend_schema(
        summary=_("The tenant's sending limits and quiet hours"),
        responses=SendingSettingsSerializer,
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return Response(
            SendingSettingsSerializer(services.sending_settings_get(self.tenant.id)).data
        )

    @extend_schema(
        summary=_("Change the sending limits or quiet hours"),
        description=_("Quiet hours are set together: quiet_start and quiet_end (both null: none)."),
        request=SendingSettingsSerializer,
        responses=SendingSettingsSerializer,
    )
    def patch(self, request: Request, *args, **kwargs) -> Response:
        serializer = SendingSettingsSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        saved = services.sending_settings_update(
            tenant_id=self.tenant.id, origin=self.origin, **serializer.validated_data
        )
        return Response(SendingSettingsSerializer(saved).data)
