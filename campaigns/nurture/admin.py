"""Nurturing in the platform admin (every tenant's rows: the admin site runs each view
in the named escape, see accounts.admin_site). Imported by campaigns/admin.py.

Writes go through campaigns.nurture.services inside the scope of the row's tenant, so
the admin keeps the tenant's rules (merge fields checked, a sender or template in use
not deleted, settings validated) and row-level security checks each write:

- sender identities, email templates, sending settings: edited through their services;
- sequences: read-only with their steps (steps are saved as a whole new version, which
  the staff UI and the API do); activate / pause are actions (sequence_set_status);
- enrolments: read-only; pause / resume / remove are actions (enrolment_set_state);
- outgoing messages: read-only, the dispatcher's log;
- segments: edited through campaigns.nurture.segments (the filter checked as the lead
  list reads it); "evaluate now" refreshes members and enrols as the beat task does.
"""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from accounts.admin.base import (
    CREATED_FILTER,
    TENANT_SEARCH,
    ServiceErrorsAsMessages,
    adopt,
    origin_of,
)
from accounts.tenancy import tenant_scope
from campaigns.models import (
    EmailTemplate,
    Enrolment,
    OutgoingMessage,
    SenderIdentity,
    SendingSettings,
    Sequence,
    SequenceStep,
)
from campaigns.nurture import segments, services
from campaigns.nurture.models import Segment


class ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class ActionsOnly(ReadOnly):
    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return obj is None and request.user.is_staff  # actions on the list, no edit form


class ServiceEdited(ServiceErrorsAsMessages, admin.ModelAdmin):
    """A model created and changed through `create(tenant_id, origin, **fields)` and
    `update(obj, origin, **changes)`, deleted through `delete(obj, origin)`."""

    form_fields: tuple[str, ...] = ()
    readonly_fields = ("created_at",)
    autocomplete_fields = ("tenant",)

    def create(self, tenant_id: int, origin, **fields):
        raise NotImplementedError

    def update(self, obj, origin, **changes):
        raise NotImplementedError

    def delete(self, obj, origin) -> None:
        raise NotImplementedError

    def get_fields(self, request: HttpRequest, obj=None):
        head = ("tenant",) if obj is None else ("tenant", *self.readonly_fields)
        return (*head, *self.form_fields)

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return () if obj is None else ("tenant", *self.readonly_fields)

    def save_model(self, request: HttpRequest, obj, form, change: bool) -> None:
        origin = origin_of(request)
        with tenant_scope(obj.tenant_id):
            if change:
                fields = {name: form.cleaned_data[name] for name in form.changed_data}
                saved = self.update(type(obj).objects.get(pk=obj.pk), origin, **fields)
            else:
                fields = {name: form.cleaned_data[name] for name in self.form_fields}
                saved = self.create(obj.tenant_id, origin, **fields)
        adopt(obj, saved)

    def delete_model(self, request: HttpRequest, obj) -> None:
        self.delete(obj, origin_of(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        with transaction.atomic():  # each deletion checked and audited, all or nothing
            for obj in queryset:
                self.delete_model(request, obj)


@admin.register(SenderIdentity)
class SenderIdentityAdmin(ServiceEdited):
    list_display = ("from_name", "from_email", "tenant", "created_at")
    list_select_related = ("tenant",)
    list_filter = (CREATED_FILTER,)
    search_fields = ("from_name", "from_email", *TENANT_SEARCH)
    ordering = ("-created_at", "-id")
    form_fields = ("from_name", "from_email", "reply_to", "postal_address")

    def create(self, tenant_id, origin, **fields):
        return services.sender_identity_create(tenant_id=tenant_id, origin=origin, **fields)

    def update(self, obj, origin, **changes):
        return services.sender_identity_update(sender=obj, origin=origin, **changes)

    def delete(self, obj, origin) -> None:
        services.sender_identity_delete(sender=obj, origin=origin)


@admin.register(EmailTemplate)
class EmailTemplateAdmin(ServiceEdited):
    list_display = ("name", "subject", "tenant", "updated_at")
    list_select_related = ("tenant",)
    list_filter = (CREATED_FILTER,)
    search_fields = ("name", "subject", *TENANT_SEARCH)
    ordering = ("-updated_at", "-id")
    readonly_fields = ("created_at", "updated_at")
    form_fields = ("name", "subject", "html", "text")

    def create(self, tenant_id, origin, **fields):
        return services.email_template_create(tenant_id=tenant_id, origin=origin, **fields)

    def update(self, obj, origin, **changes):
        return services.email_template_update(template=obj, origin=origin, **changes)

    def delete(self, obj, origin) -> None:
        services.email_template_delete(template=obj, origin=origin)


class SequenceStepInline(ReadOnly, admin.TabularInline):
    """Every version's steps (enrolments keep the version they joined)."""

    model = SequenceStep
    fields = ("version", "order", "kind", "template", "config")
    readonly_fields = fields
    extra = 0
    ordering = ("-version", "order")

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).select_related("template")


@admin.register(Sequence)
class SequenceAdmin(ActionsOnly, admin.ModelAdmin):
    list_display = ("name", "tenant", "status", "version", "sender", "updated_at")
    list_select_related = ("tenant", "sender")
    list_filter = ("status", CREATED_FILTER)
    search_fields = ("name", *TENANT_SEARCH)
    ordering = ("-created_at", "-id")
    fields = (
        "tenant",
        "name",
        "status",
        "version",
        "sender",
        "enrol_on_campaign",
        "enrol_on_recycled",
        "allow_reenrolment",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    inlines = (SequenceStepInline,)
    actions = ("activate", "pause")

    def _set_status(self, request: HttpRequest, queryset, status: str) -> None:
        changed = 0
        for sequence in queryset:
            try:
                services.sequence_set_status(
                    sequence=sequence, status=status, origin=origin_of(request)
                )
            except ValidationError as exc:
                for message in exc.messages:
                    self.message_user(request, f"{sequence}: {message}", messages.ERROR)
            else:
                changed += 1
        self.message_user(request, _("%(count)d sequences changed.") % {"count": changed})

    @admin.action(description=_("Activate the selected sequences"))
    def activate(self, request: HttpRequest, queryset) -> None:
        self._set_status(request, queryset, Sequence.Status.ACTIVE)

    @admin.action(description=_("Pause the selected sequences"))
    def pause(self, request: HttpRequest, queryset) -> None:
        self._set_status(request, queryset, Sequence.Status.PAUSED)


@admin.register(Enrolment)
class EnrolmentAdmin(ActionsOnly, admin.ModelAdmin):
    list_display = (
        "id",
        "lead",
        "sequence",
        "tenant",
        "state",
        "exit_reason",
        "step_order",
        "next_due_at",
        "enrolled_at",
    )
    list_select_related = ("lead", "sequence", "tenant")
    list_filter = ("state", "exit_reason", "source")
    search_fields = ("lead__email", "sequence__name", *TENANT_SEARCH)
    ordering = ("-id",)
    # Enrolments are many: skip the unfiltered COUNT(*) on every page.
    show_full_result_count = False
    fields = (
        "tenant",
        "lead",
        "sequence",
        "version",
        "step_order",
        "next_due_at",
        "state",
        "exit_reason",
        "source",
        "enrolled_at",
        "finished_at",
    )
    readonly_fields = fields
    actions = ("pause", "resume", "remove")

    def _set_state(self, request: HttpRequest, queryset, action_name: str) -> None:
        changed = 0
        for enrolment in queryset:
            try:
                services.enrolment_set_state(
                    enrolment=enrolment, action=action_name, origin=origin_of(request)
                )
            except ValidationError as exc:
                for message in exc.messages:
                    self.message_user(request, f"#{enrolment.pk}: {message}", messages.ERROR)
            else:
                changed += 1
        self.message_user(request, _("%(count)d enrolments changed.") % {"count": changed})

    @admin.action(description=_("Pause the selected enrolments"))
    def pause(self, request: HttpRequest, queryset) -> None:
        self._set_state(request, queryset, "pause")

    @admin.action(description=_("Resume the selected enrolments"))
    def resume(self, request: HttpRequest, queryset) -> None:
        self._set_state(request, queryset, "resume")

    @admin.action(description=_("Remove the selected enrolments from their sequences"))
    def remove(self, request: HttpRequest, queryset) -> None:
        self._set_state(request, queryset, "remove")


@admin.register(OutgoingMessage)
class OutgoingMessageAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("to_email", "subject", "status", "tenant", "attempts", "created_at", "sent_at")
    list_select_related = ("tenant",)
    list_filter = ("status", CREATED_FILTER)
    search_fields = ("to_email", "provider_message_id", *TENANT_SEARCH)
    ordering = ("-id",)
    show_full_result_count = False
    fields = (
        "tenant",
        "enrolment",
        "step",
        "lead",
        "to_email",
        "subject",
        "status",
        "attempts",
        "next_attempt_at",
        "provider_message_id",
        "raw_headers",
        "error",
        "created_at",
        "sent_at",
    )
    readonly_fields = fields


@admin.register(SendingSettings)
class SendingSettingsAdmin(ServiceErrorsAsMessages, admin.ModelAdmin):
    list_display = ("tenant", "per_minute", "per_day", "quiet_start", "quiet_end")
    list_select_related = ("tenant",)
    search_fields = TENANT_SEARCH
    ordering = ("tenant__name", "id")
    autocomplete_fields = ("tenant",)
    fields = ("tenant", "per_minute", "per_day", "quiet_start", "quiet_end")
    SETTINGS = ("per_minute", "per_day", "quiet_start", "quiet_end")

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return () if obj is None else ("tenant",)

    def save_model(self, request: HttpRequest, obj, form, change: bool) -> None:
        names = form.changed_data if change else self.SETTINGS
        changes = {name: form.cleaned_data[name] for name in names if name in self.SETTINGS}
        if ("quiet_start" in changes) != ("quiet_end" in changes):
            # The service takes quiet hours as a pair; the form always has both.
            changes["quiet_start"] = form.cleaned_data["quiet_start"]
            changes["quiet_end"] = form.cleaned_data["quiet_end"]
        with tenant_scope(obj.tenant_id):
            saved = services.sending_settings_update(
                tenant_id=obj.tenant_id, origin=origin_of(request), **changes
            )
        adopt(obj, saved)

    def delete_model(self, request: HttpRequest, obj) -> None:
        raise ValidationError(_("Sending settings are changed, not deleted."))

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Segment)
class SegmentAdmin(ServiceEdited):
    list_display = ("name", "tenant", "filter", "matched", "evaluated_at", "error")
    list_select_related = ("tenant",)
    list_filter = (CREATED_FILTER,)
    search_fields = ("name", *TENANT_SEARCH)
    ordering = ("-created_at", "-id")
    readonly_fields = ("evaluated_at", "matched", "error", "created_at", "updated_at")
    form_fields = ("name", "filter")
    actions = ("evaluate",)

    def create(self, tenant_id, origin, **fields):
        return segments.segment_create(tenant_id=tenant_id, origin=origin, **fields)

    def update(self, obj, origin, **changes):
        return segments.segment_update(segment=obj, origin=origin, **changes)

    def delete(self, obj, origin) -> None:
        segments.segment_delete(segment=obj, origin=origin)

    @admin.action(description=_("Evaluate now (refresh members, enrol in active sequences)"))
    def evaluate(self, request: HttpRequest, queryset: QuerySet[Segment]) -> None:
        enrolled = 0
        chosen = list(queryset)
        for segment in chosen:
            enrolled += segments.segment_evaluate(segment)["enrolled"]
        self.message_user(
            request,
            _("%(count)d segments evaluated, %(enrolled)d leads enrolled.")
            % {"count": len(chosen), "enrolled": enrolled},
        )
