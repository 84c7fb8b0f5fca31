"""Merging duplicate leads into one."""

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts import events
from accounts.services import Origin, audit_record
from accounts.tenancy import tenant_scope
from leads.models import (
    FUNNEL_ORDER,
    Activity,
    Channel,
    ConsentEvent,
    ConsentStatus,
    FormSubmission,
    Lead,
    LeadScore,
    LeadTag,
    LifecycleTransition,
    Visitor,
)
from leads.scoring.services import rescore_after_commit
from leads.services.leads import LEAD_VALUE_FIELDS, lead_change_stage

#: Filled on the kept lead from the merged one when empty there.
FILL_FIELDS = (*LEAD_VALUE_FIELDS, "company_id", "owner_id", "source_campaign_id")
CONSENT_FIELDS = ("email_consent", "sales_contact_consent")


def lead_merge(*, keep: Lead, merge: Lead, origin: Origin) -> Lead:
    """Merge `merge` into `keep`, in one transaction, audited.

    Moves activities, visitors, consent history, lifecycle transitions, form
    submissions and tags to `keep`; campaign memberships move through the
    `campaign.leads_merged` hook (campaigns owns them; a lead both were members of
    keeps keep's membership). Empty fields of `keep` (names, phone, company, owner,
    source campaign, custom keys, an unknown consent status, even the email) are
    filled from `merge`; a further funnel stage of `merge` is taken, recorded as a
    transition. `merge` stays as a tombstone: merged_into=keep, email cleared so the
    address is free. Emits `lead.merged`."""
    if keep.tenant_id != merge.tenant_id or keep.pk == merge.pk:
        raise ValidationError({"merge": [_("Choose another lead of the same tenant.")]})
    tenant_id = keep.tenant_id
    with tenant_scope(tenant_id):
        # Lock both rows (in id order, so two opposite merges cannot deadlock).
        locked = {
            lead.pk: lead
            for lead in Lead.objects.select_for_update()
            .filter(pk__in=[keep.pk, merge.pk])
            .order_by("pk")
        }
        if len(locked) != 2:
            raise ValidationError({"merge": [_("No lead with this id.")]})
        keep, merge = locked[keep.pk], locked[merge.pk]
        if keep.merged_into_id or merge.merged_into_id:
            raise ValidationError({"merge": [_("This lead was already merged.")]})

        moved = {
            "activities": Activity.objects.filter(lead=merge).update(lead=keep),
            "transitions": LifecycleTransition.objects.filter(lead=merge).update(lead=keep),
            "consent_events": ConsentEvent.objects.filter(lead=merge).update(lead=keep),
            "form_submissions": FormSubmission.objects.filter(lead=merge).update(lead=keep),
            "visitors": Visitor.objects.filter(lead=merge).update(lead=keep),
        }
        keep_tags = LeadTag.objects.filter(lead=keep).values("tag_id")
        moved["tags"] = (
            LeadTag.objects.filter(lead=merge).exclude(tag_id__in=keep_tags).update(lead=keep)
        )
        LeadTag.objects.filter(lead=merge).delete()
        # Earlier tombstones of `merge` now point at the surviving lead.
        Lead.objects.filter(merged_into=merge).update(merged_into=keep)
        events.hook(
            "campaign.leads_merged", tenant_id=tenant_id, keep_id=keep.pk, merge_id=merge.pk
        )

        filled = []
        for field in FILL_FIELDS:
            if getattr(keep, field) in ("", None) and getattr(merge, field) not in ("", None):
                setattr(keep, field, getattr(merge, field))
                filled.append(field)
        for field in CONSENT_FIELDS:
            if (
                getattr(keep, field) == ConsentStatus.UNKNOWN
                and getattr(merge, field) != ConsentStatus.UNKNOWN
            ):
                setattr(keep, field, getattr(merge, field))
                filled.append(field)
        custom = dict(keep.custom_fields or {})
        for key, value in (merge.custom_fields or {}).items():
            if custom.get(key) in (None, "", []) and value not in (None, "", []):
                custom[key] = value
                filled.append(f"custom.{key}")
        keep.custom_fields = custom
        merged_email = merge.email
        now = timezone.now()
        # Free the address before keep may take it (unique per tenant).
        Lead.objects.filter(pk=merge.pk).update(email="", merged_into=keep, updated_at=now)
        merge.email, merge.merged_into, merge.updated_at = "", keep, now
        if not keep.email and merged_email:
            keep.email = merged_email
            filled.append("email")
        keep.updated_at = now
        keep.save()

        if _funnel_rank(merge.lifecycle_stage) > _funnel_rank(keep.lifecycle_stage):
            lead_change_stage(
                lead=keep,
                to_stage=merge.lifecycle_stage,
                origin=origin,
                channel=Channel.SYSTEM,
                reason=_("Merged with lead #%(id)d") % {"id": merge.pk},
            )
        audit_record(
            tenant_id=tenant_id,
            origin=origin,
            action="lead.merged",
            target=keep,
            metadata={
                "merged_id": merge.pk,
                "merged_email": merged_email,
                "moved": moved,
                "filled": filled,
            },
        )
        events.emit(
            "lead.merged",
            tenant_id=tenant_id,
            payload={
                "v": 1,
                "lead_id": keep.pk,
                "merged_id": merge.pk,
                "email": keep.email,
                "fields": sorted(filled),
            },
        )
        # The merged lead's scores go; the kept one is scored with both histories.
        LeadScore.objects.filter(lead_id=merge.pk).delete()
        rescore_after_commit(tenant_id, [keep.pk])
        return keep


def _funnel_rank(stage: str) -> int:
    return FUNNEL_ORDER.index(stage) if stage in FUNNEL_ORDER else -1
