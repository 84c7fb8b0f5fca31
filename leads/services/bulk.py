"""Bulk changes to many leads at once (the leads list's bulk actions).

Set-based: one UPDATE per call however many leads, and one outbox statement for the
`lead.updated` events of the leads that really changed.
"""

from django.utils import timezone

from accounts import events
from accounts.services import Origin
from accounts.tenancy import tenant_scope
from leads.models import Lead
from leads.services.leads import _check_references


def leads_owner_assign(
    *, tenant_id: int, lead_ids: list[int], owner_id: int | None, origin: Origin
) -> int:
    """Make `owner_id` (a member of the tenant, or None to unassign) the owner of the
    given live leads; ids of other tenants' or merged leads are ignored. Returns how
    many leads changed; each of them emits `lead.updated` (fields ["owner_id"])."""
    with tenant_scope(tenant_id):
        _check_references(tenant_id, {"owner_id": owner_id})
        queryset = Lead.objects.filter(pk__in=lead_ids, merged_into__isnull=True)
        if owner_id is None:
            queryset = queryset.filter(owner_id__isnull=False)
        else:
            queryset = queryset.exclude(owner_id=owner_id)
        rows = list(queryset.select_for_update().order_by("pk").values_list("id", "email"))
        if not rows:
            return 0
        Lead.objects.filter(pk__in=[lead_id for lead_id, _email in rows]).update(
            owner_id=owner_id, updated_at=timezone.now()
        )
        events.emit_many(
            "lead.updated",
            tenant_id=tenant_id,
            payloads=[
                {"v": 1, "lead_id": lead_id, "email": email, "fields": ["owner_id"]}
                for lead_id, email in rows
            ],
        )
    return len(rows)
