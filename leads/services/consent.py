"""Consent per purpose, its history, and the per-tenant suppression list.

Marketing email and sales contact are separate purposes: a trade-show lead may be
contactable by sales but not mailed, or the reverse. Every change is a ConsentEvent
(when, how = channel, stated basis, proof: form, page, IP, …) and sets the lead's
current status. Withdrawing marketing-email consent (an unsubscribe) puts the address
on the suppression list, which is per tenant by normalised email and is what sending
checks last. A new explicit opt-in lifts an "unsubscribed" suppression (the person
asked again); bounces, complaints and manual entries stay.
"""

from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts import events
from accounts.services import Origin, audit_record
from accounts.sql import insert_columns
from accounts.tenancy import tenant_scope
from leads.models import ConsentEvent, ConsentPurpose, ConsentStatus, Lead, Suppression
from leads.services.leads import email_clean

CONSENT_FIELD = {
    ConsentPurpose.EMAIL_MARKETING: "email_consent",
    ConsentPurpose.SALES_CONTACT: "sales_contact_consent",
}
PROOF_KEYS = frozenset(
    {"form_id", "form_key", "page_url", "ip", "user_agent", "text", "file", "note", "source"}
)


def _proof_clean(proof: dict | None) -> dict:
    if proof is None:
        return {}
    if not isinstance(proof, dict):
        raise ValidationError({"proof": [_("Proof is an object.")]})
    unknown = sorted(set(proof) - PROOF_KEYS)
    if unknown:
        raise ValidationError(
            {"proof": [_("Unknown keys: %(keys)s.") % {"keys": ", ".join(unknown)}]}
        )
    return {key: str(value)[:2000] for key, value in proof.items() if value not in (None, "")}


def consent_record(
    *,
    lead: Lead,
    purpose: str,
    status: str,
    channel: str,
    origin: Origin,
    basis: str = "",
    proof: dict[str, Any] | None = None,
    occurred_at=None,
    savepoint: bool = True,
) -> ConsentEvent:
    """Record a consent change for one purpose and make it the lead's current status.

    Withdrawing marketing email suppresses the address; granting it lifts an
    unsubscribe suppression. Emits `lead.consent_changed`. Every ValidationError comes
    before any write: with savepoint=False, a caller in the lead's tenant scope (the
    public form view) has it join its transaction without a savepoint."""
    errors: dict[str, list[str]] = {}
    if purpose not in ConsentPurpose.values:
        errors["purpose"] = [_("Not a consent purpose.")]
    if status not in ConsentStatus.values or status == ConsentStatus.UNKNOWN:
        errors["status"] = [_("Use granted, pending or withdrawn.")]
    if len(basis) > ConsentEvent._meta.get_field("basis").max_length:
        errors["basis"] = [_("The stated basis is too long.")]
    if errors:
        raise ValidationError(errors)
    proof = _proof_clean(proof)
    if origin.ip_address and "ip" not in proof and channel != "import":
        proof["ip"] = origin.ip_address
    tenant_id = lead.tenant_id
    with tenant_scope(tenant_id, savepoint=savepoint):
        event = ConsentEvent(
            tenant_id=tenant_id,
            lead=lead,
            purpose=purpose,
            status=status,
            channel=channel,
            basis=basis,
            proof=proof,
            occurred_at=occurred_at or timezone.now(),
            actor=origin.actor,
        )
        field = CONSENT_FIELD[purpose]
        changed = getattr(lead, field) != status
        if changed:
            setattr(lead, field, status)
            lead.updated_at = timezone.now()
        lift = (
            purpose == ConsentPurpose.EMAIL_MARKETING
            and bool(lead.email)
            and status == ConsentStatus.GRANTED
        )
        _write(event, lead, field if changed else None, lift_unsubscribe=lift)
        if (
            purpose == ConsentPurpose.EMAIL_MARKETING
            and lead.email
            and status == ConsentStatus.WITHDRAWN
        ):
            suppression_add(
                tenant_id=tenant_id,
                email=lead.email,
                reason=Suppression.Reason.UNSUBSCRIBED,
                note=_("Withdrew marketing email consent (%(channel)s).") % {"channel": channel},
            )
        events.emit(
            "lead.consent_changed",
            tenant_id=tenant_id,
            payload={
                "v": 1,
                "lead_id": lead.id,
                "email": lead.email,
                "purpose": purpose,
                "status": status,
                "channel": channel,
            },
        )
        return event


def _write(event: ConsentEvent, lead: Lead, field: str | None, *, lift_unsubscribe: bool) -> None:
    """The consent event, the lead's current status (`field`, when it changed) and the
    lifting of an unsubscribe suppression: one statement on PostgreSQL."""
    if connection.vendor != "postgresql":
        event.save(force_insert=True)
        if field is not None:
            Lead.objects.filter(pk=lead.pk).update(
                **{field: getattr(lead, field), "updated_at": lead.updated_at}
            )
        if lift_unsubscribe:
            Suppression.objects.filter(
                email=lead.email, reason=Suppression.Reason.UNSUBSCRIBED
            ).delete()
        return
    columns, values = insert_columns(event)
    parts = [
        f"new_event AS (INSERT INTO {ConsentEvent._meta.db_table} ({', '.join(columns)})"
        f" VALUES ({', '.join(['%s'] * len(columns))}) RETURNING id)"
    ]
    params = [*values]
    if field is not None:
        # The column name is one of CONSENT_FIELD's, never input.
        parts.append(
            f"status AS (UPDATE {Lead._meta.db_table} SET {field} = %s, updated_at = %s"
            " WHERE tenant_id = %s AND id = %s)"
        )
        params += [getattr(lead, field), lead.updated_at, lead.tenant_id, lead.pk]
    if lift_unsubscribe:
        parts.append(
            f"lifted AS (DELETE FROM {Suppression._meta.db_table}"
            " WHERE tenant_id = %s AND email = %s AND reason = %s)"
        )
        params += [lead.tenant_id, lead.email, Suppression.Reason.UNSUBSCRIBED.value]
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(parts)} SELECT id FROM new_event", params)
        event.id = cursor.fetchone()[0]
    event._state.adding, event._state.db = False, connection.alias


def suppression_add(*, tenant_id: int, email: str, reason: str, note: str = "") -> Suppression:
    """Put an address on the tenant's suppression list (idempotent: an address already
    there keeps its first reason)."""
    email = email_clean(email)
    if not email:
        raise ValidationError({"email": [_("This field is required.")]})
    if reason not in Suppression.Reason.values:
        raise ValidationError({"reason": [_("Not a suppression reason.")]})
    with tenant_scope(tenant_id):
        Suppression.objects.bulk_create(
            [Suppression(tenant_id=tenant_id, email=email, reason=reason, note=note[:500])],
            ignore_conflicts=True,
        )
        return Suppression.objects.get(email=email)


def suppression_remove(*, suppression: Suppression, origin: Origin) -> None:
    """Take an address off the list (audited: mailing it again is a decision)."""
    with tenant_scope(suppression.tenant_id):
        audit_record(
            tenant_id=suppression.tenant_id,
            origin=origin,
            action="suppression.removed",
            target=suppression,
            metadata={"reason": suppression.reason},
        )
        suppression.delete()
