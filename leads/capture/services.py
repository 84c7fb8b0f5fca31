"""Capture forms: designing them (CRUD) and what a visitor's submission does.

A submission is one transaction in the form's tenant: the lead is created or updated
(lead_upsert, matched by email, filling only empty fields), joins the form's campaign
(the campaigns app's hook), gets a form_submission activity with the page's UTM and
referrer, and a consent event when the box was ticked — pending until the address is
confirmed when the form asks for double opt-in. Leads, activities and consent are
written by the lead services only; this module writes forms, submissions and visitors.
"""

from collections import OrderedDict
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts import events
from accounts.services import Origin, audit_record
from accounts.sql import insert_columns
from accounts.tenancy import current_tenant_id_or_none, tenant_scope, unscoped
from leads.capture import tokens
from leads.capture.spec import (
    CleanedSubmission,
    clean_submission,
    field_for_target,
    validate_form_spec,
)
from leads.capture.tracking import (
    visitor_for,
    visitor_identified_sql,
    visitor_key_valid,
    visitor_touch_identified,
)
from leads.models import (
    ActivityType,
    CaptureForm,
    Channel,
    ConsentPurpose,
    ConsentStatus,
    CustomFieldDefinition,
    FormSubmission,
    Lead,
    Visitor,
)
from leads.services import activity_record, consent_record, lead_upsert

EDITABLE = (
    "name",
    "fields",
    "campaign_id",
    "consent_text",
    "consent_required",
    "double_opt_in",
    "thank_you_message",
    "redirect_url",
    "is_active",
)


# --- Designing forms -----------------------------------------------------------------------


def _campaign_exists(campaign_id: int) -> bool:
    # leads may not import campaigns (DESIGN.md); the FK knows the model, and its
    # tenant manager limits the lookup to the current tenant.
    campaign_model = CaptureForm._meta.get_field("campaign").related_model
    return campaign_model._default_manager.filter(pk=campaign_id).exists()


def _validate(form: CaptureForm) -> None:
    errors: dict[str, list[str]] = {}
    try:
        form.fields = validate_form_spec(
            form.fields, custom_fields=CustomFieldDefinition.objects.all()
        )
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if form.campaign_id is not None and not _campaign_exists(form.campaign_id):
        errors["campaign_id"] = [_("No campaign of this tenant has this id.")]
    if (form.consent_required or form.double_opt_in) and not form.consent_text.strip():
        errors["consent_text"] = [
            _("Write the consent text: the box is required or confirmed by email.")
        ]
    if form.redirect_url and not form.redirect_url.lower().startswith(("https://", "http://")):
        errors["redirect_url"] = [_("Use an http:// or https:// address.")]
    try:
        form.full_clean(exclude=["tenant", "campaign", "fields", "key"])
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            errors.setdefault(name, []).extend(messages)
    if errors:
        raise ValidationError(errors)


def capture_form_create(
    *,
    tenant_id: int,
    origin: Origin,
    name: str,
    fields: list,
    campaign_id: int | None = None,
    consent_text: str = "",
    consent_required: bool = False,
    double_opt_in: bool = False,
    thank_you_message: str = "",
    redirect_url: str = "",
    is_active: bool = True,
) -> CaptureForm:
    """A new form; its spec is validated (spec.validate_form_spec) and its key random."""
    with tenant_scope(tenant_id):
        form = CaptureForm(
            tenant_id=tenant_id,
            name=name,
            fields=fields,
            campaign_id=campaign_id,
            consent_text=consent_text,
            consent_required=consent_required,
            double_opt_in=double_opt_in,
            thank_you_message=thank_you_message,
            redirect_url=redirect_url,
            is_active=is_active,
        )
        _validate(form)
        form.save()
        audit_record(tenant_id=tenant_id, origin=origin, action="capture_form.created", target=form)
        return form


def capture_form_update(*, form: CaptureForm, origin: Origin, **changes: Any) -> CaptureForm:
    """Change what the tenant designs; the key (and so every embed) stays the same."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise TypeError(f"not editable: {', '.join(sorted(unknown))}")
    with tenant_scope(form.tenant_id):
        for name, value in changes.items():
            setattr(form, name, value)
        _validate(form)
        form.updated_at = timezone.now()
        form.save()
        audit_record(
            tenant_id=form.tenant_id,
            origin=origin,
            action="capture_form.updated",
            target=form,
            metadata={"changed": sorted(changes)},
        )
        _forget_after_commit(form.key)
    return form


def capture_form_delete(*, form: CaptureForm, origin: Origin) -> None:
    """Delete the form and its submissions. Leads, activities and consent proof (which
    names the form) stay; deactivating keeps the submissions and is usually better."""
    with tenant_scope(form.tenant_id):
        audit_record(
            tenant_id=form.tenant_id, origin=origin, action="capture_form.deleted", target=form
        )
        _forget_after_commit(form.key)
        form.delete()


# --- Finding a form from the public side ---------------------------------------------------

# key → tenant id: a form never changes tenant, so the answer can be kept for the
# process's life (forms deleted later are not found by the scoped lookup that follows).
_TENANT_OF_KEY: OrderedDict[str, int] = OrderedDict()
_TENANT_OF_KEY_SIZE = 10_000


def tenant_for_form_key(key: str) -> int | None:
    """The tenant owning the form with this key; None when there is none."""
    if not key or len(key) > 64:
        return None
    tenant_id = _TENANT_OF_KEY.get(key)
    if tenant_id is not None:
        return tenant_id
    with unscoped(reason="public capture endpoint: find a form's tenant by its secret key"):
        tenant_id = (
            CaptureForm.objects.filter(key=key, tenant__is_active=True)
            .values_list("tenant_id", flat=True)
            .first()
        )
    if tenant_id is not None:
        _TENANT_OF_KEY[key] = tenant_id
        if len(_TENANT_OF_KEY) > _TENANT_OF_KEY_SIZE:
            _TENANT_OF_KEY.popitem(last=False)
    return tenant_id


# key → the active form as a submission last read it (with its tenant). Submissions
# reuse it without reading the form again: the INSERT of the submission row checks that
# the form is still as remembered (form_submission_create raises FormChanged when not),
# and any refusal is decided again on the form as stored (the public view retries).
_REMEMBERED: OrderedDict[str, CaptureForm] = OrderedDict()
_REMEMBERED_SIZE = 10_000


def capture_form_get_active(key: str, *, remember: bool = False) -> CaptureForm | None:
    """The active form with this key, in the current tenant scope (and an active tenant:
    the key-to-tenant cache does not notice a tenant being switched off). remember:
    keep it for capture_form_remembered (or forget it when there is none)."""
    form = (
        CaptureForm.objects.select_related("tenant")
        .filter(key=key, is_active=True, tenant__is_active=True)
        .first()
    )
    if remember:
        if form is None:
            _REMEMBERED.pop(key, None)
        else:
            _REMEMBERED[key] = form
            if len(_REMEMBERED) > _REMEMBERED_SIZE:
                _REMEMBERED.popitem(last=False)
    return form


def capture_form_remembered(key: str) -> CaptureForm | None:
    """The form as this process last read it for a submission, if it did: to be used only
    where the stored row is checked too (form_submission_create does)."""
    return _REMEMBERED.get(key)


def capture_form_forget(key: str) -> None:
    """Drop the remembered form (this process; others notice through FormChanged)."""
    _REMEMBERED.pop(key, None)


def _forget_after_commit(key: str) -> None:
    # Now and after commit: a submission between the two would remember the old row.
    capture_form_forget(key)
    transaction.on_commit(lambda: capture_form_forget(key))


class FormChanged(Exception):
    """The form was edited, deactivated or deleted (or its campaign or tenant changed)
    since this process remembered it; nothing of the submission may be kept."""


# --- Submissions ---------------------------------------------------------------------------


@dataclass
class SubmissionContext:
    """Where a submission came from: the request and the page around the form."""

    ip_address: str | None = None
    user_agent: str = ""
    page_url: str = ""
    referrer: str = ""
    utm: dict[str, str] = field(default_factory=dict)
    visitor_key: str = ""

    @property
    def origin(self) -> Origin:
        # The visitor is nobody we know: the address and browser are the whole origin.
        return Origin(ip_address=self.ip_address, user_agent=self.user_agent)


@dataclass
class SubmissionResult:
    submission: FormSubmission
    lead: Lead
    created: bool
    tracking_token: str
    confirmation_pending: bool


def _remap_lead_errors(exc: ValidationError, spec: list[dict]) -> ValidationError:
    """lead_upsert names lead fields (`phone`, `custom.size`); the visitor knows the
    form's fields. Anything not on the form is the form's as a whole."""
    remapped: dict[str, list[str]] = {}
    for name, messages in exc.message_dict.items():
        target = name if name.startswith("custom.") else f"lead.{name}"
        form_field = field_for_target(spec, target) or "non_field_errors"
        remapped.setdefault(form_field, []).extend(messages)
    return ValidationError(remapped)


def _consent_proof(
    form: CaptureForm, submission: FormSubmission, context: SubmissionContext, note: str = ""
) -> dict:
    """What the visitor saw and where (the lead services' proof keys)."""
    return {
        "form_id": form.id,
        "form_key": form.key,
        "source": f"form_submission:{submission.id}",
        "text": form.consent_text,
        "page_url": context.page_url,
        "ip": context.ip_address,
        "user_agent": context.user_agent,
        "note": note or f"form: {form.name}",
    }


def form_submission_create(
    *,
    form: CaptureForm,
    data: Mapping,
    context: SubmissionContext,
    savepoint: bool = True,
) -> SubmissionResult:
    """Everything a visitor's submission does, in one transaction of the form's tenant.
    Raises ValidationError keyed by the form's field names (and `consent`), and
    FormChanged when `form` (as remembered by the caller) is no longer the stored form;
    either way the caller rolls back and may retry on the stored form.

    savepoint=False: a caller already in the form's tenant scope (the public view,
    which looks the form up in the same transaction) lets the writes join its
    transaction without a savepoint of their own (two round trips); on an exception it
    must roll its transaction back, as the view does. The services called here never
    take one either: their errors come before their writes, and any exception leaves
    this block, whose transaction (or savepoint) rolls back as a whole."""
    cleaned: CleanedSubmission = clean_submission(
        form.fields,
        data,
        consent_shown=bool(form.consent_text.strip()),
        consent_required=form.consent_required,
    )
    if cleaned.errors:
        raise ValidationError(cleaned.errors)
    tenant_id = form.tenant_id
    origin = context.origin
    joined = (
        not savepoint and current_tenant_id_or_none() == tenant_id and connection.in_atomic_block
    )
    # The submission's events (lead created, its stage, consent) go out in one INSERT.
    with nullcontext() if joined else tenant_scope(tenant_id), events.collecting():
        try:
            upserted = lead_upsert(
                tenant_id=tenant_id,
                email=cleaned.email,
                fields=cleaned.lead_fields,
                channel=Channel.FORM,
                origin=origin,
                source_campaign_id=form.campaign_id,
                policy="fill_empty",
                savepoint=False,
            )
        except ValidationError as exc:
            raise _remap_lead_errors(exc, form.fields) from exc
        lead = upserted.lead
        values = dict(cleaned.values)
        if form.consent_text.strip():
            values["consent"] = cleaned.consent
        submission = FormSubmission(
            tenant_id=tenant_id,
            form=form,
            lead=lead,
            data=values,
            ip_address=context.ip_address,
            user_agent=context.user_agent[:300],
            referrer=context.referrer[:1000],
            page_url=context.page_url[:1000],
            utm=context.utm,
        )
        visitor_key = context.visitor_key if visitor_key_valid(context.visitor_key) else ""
        visitor = _insert_submission(submission, form, lead=lead, visitor_key=visitor_key)
        if form.campaign_id is not None:
            events.hook(
                "campaign.leads_responded",
                tenant_id=tenant_id,
                campaign_id=form.campaign_id,
                lead_ids=[lead.id],
                status="responded",
            )
        activity_record(
            tenant_id=tenant_id,
            type=ActivityType.FORM_SUBMISSION,
            lead=lead,
            visitor=visitor,
            campaign_id=form.campaign_id,
            channel=Channel.FORM,
            properties={
                "form_id": form.id,
                "form_name": form.name,
                "submission_id": submission.id,
                "url": context.page_url,
                "referrer": context.referrer,
                **context.utm,
            },
            savepoint=False,
        )
        # Higher apps act on a submission (nurture enrols the form's submitters).
        events.emit(
            "form.submitted",
            tenant_id=tenant_id,
            payload={
                "v": 1,
                "form_id": form.id,
                "submission_id": submission.id,
                "lead_id": lead.id,
                "campaign_id": form.campaign_id,
            },
        )
        pending = False
        if cleaned.consent:
            already = lead.email_consent == ConsentStatus.GRANTED
            pending = form.double_opt_in and not already
            if pending or not already:
                consent_record(
                    lead=lead,
                    purpose=ConsentPurpose.EMAIL_MARKETING,
                    status=ConsentStatus.PENDING if pending else ConsentStatus.GRANTED,
                    channel=Channel.FORM,
                    origin=origin,
                    basis=_("Ticked the consent box on the form “%(form)s”.") % {"form": form.name},
                    proof=_consent_proof(
                        form,
                        submission,
                        context,
                        note=f"form: {form.name}; double opt-in: "
                        + ("confirmation mail sent" if pending else "no"),
                    ),
                    savepoint=False,
                )
        if pending:
            from leads.capture.tasks import send_form_confirmation

            submission_id = submission.id
            transaction.on_commit(lambda: send_form_confirmation.delay(tenant_id, submission_id))
    return SubmissionResult(
        submission=submission,
        lead=lead,
        created=upserted.created,
        tracking_token=tokens.tracking_token(tenant_id=tenant_id, lead_id=lead.id),
        confirmation_pending=pending,
    )


def _insert_submission(
    submission: FormSubmission, form: CaptureForm, *, lead: Lead, visitor_key: str
) -> Visitor | None:
    """INSERT the submission if the form is still active and as `form` holds it (same
    version, campaign, tenant language, tenant active), and touch the visitor of
    `visitor_key` tied to the lead (tracking.visitor_touch_identified). Raises
    FormChanged, having written nothing, when the form is not as held. On PostgreSQL one
    statement: the form check rides in the INSERT, the visitor's write waits on it."""
    if connection.vendor != "postgresql":
        current = CaptureForm.objects.filter(
            pk=form.pk,
            is_active=True,
            updated_at=form.updated_at,
            campaign_id=form.campaign_id,
            tenant__is_active=True,
            tenant__language=form.tenant.language,
        )
        if not current.exists():
            raise FormChanged(form.key)
        submission.save(force_insert=True)
        if not visitor_key:
            return None
        return visitor_touch_identified(tenant_id=form.tenant_id, key=visitor_key, lead=lead)
    columns, values = insert_columns(submission)
    tenants = CaptureForm._meta.get_field("tenant").related_model._meta.db_table
    ctes = [
        f"submission AS (INSERT INTO {FormSubmission._meta.db_table} ({', '.join(columns)})"
        f" SELECT {', '.join(['%s'] * len(columns))} WHERE EXISTS ("
        f" SELECT 1 FROM {CaptureForm._meta.db_table} f JOIN {tenants} t"
        " ON t.id = f.tenant_id WHERE f.tenant_id = %s AND f.id = %s AND f.is_active"
        " AND f.updated_at = %s AND f.campaign_id IS NOT DISTINCT FROM %s"
        " AND t.is_active AND t.language = %s) RETURNING id)"
    ]
    params = [
        *values,
        form.tenant_id,
        form.pk,
        form.updated_at,
        form.campaign_id,
        form.tenant.language,
    ]
    now = timezone.now()
    if visitor_key:
        visitor_ctes, visitor_params = visitor_identified_sql(
            tenant_id=form.tenant_id,
            key=visitor_key,
            lead_id=lead.id,
            now=now,
            when="EXISTS (SELECT 1 FROM submission)",
        )
        ctes.append(visitor_ctes)
        params += visitor_params
        selected = "(SELECT id FROM visitor), (SELECT first_seen_at FROM visitor)"
    else:
        selected = "NULL, NULL"
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH {', '.join(ctes)} SELECT (SELECT id FROM submission), {selected}", params
        )
        submission_id, *visitor_row = cursor.fetchone()
    if submission_id is None:
        raise FormChanged(form.key)
    submission.id = submission_id
    submission._state.adding, submission._state.db = False, connection.alias
    if not visitor_key:
        return None
    return visitor_for(
        tenant_id=form.tenant_id, key=visitor_key, lead=lead, row=tuple(visitor_row), now=now
    )


class ConfirmationInvalid(Exception):
    """The confirmation link names nothing that can be confirmed."""


def form_submission_confirm(*, token: str, origin: Origin) -> FormSubmission:
    """Double opt-in: the person clicked the link in the confirmation mail. Marketing
    consent becomes granted, with the original proof and when/where it was confirmed.
    Clicking twice changes nothing more. Raises tokens.BadToken for a bad link."""
    ref = tokens.read_confirmation_token(token)
    with tenant_scope(ref.tenant_id):
        submission = (
            FormSubmission.objects.select_for_update(of=("self",))
            .select_related("form", "lead")
            .filter(pk=ref.submission_id)
            .first()
        )
        if submission is None:
            raise ConfirmationInvalid(ref)
        if submission.confirmed_at is not None:
            return submission
        now = timezone.now()
        form = submission.form
        proof = _consent_proof(
            form,
            submission,
            SubmissionContext(
                ip_address=submission.ip_address,
                user_agent=submission.user_agent,
                page_url=submission.page_url,
            ),
            note=(
                f"form: {form.name}; double opt-in confirmed at {now.isoformat()}"
                f" from {origin.ip_address or '?'} ({origin.user_agent[:200]})"
            ),
        )
        consent_record(
            lead=submission.lead,
            purpose=ConsentPurpose.EMAIL_MARKETING,
            status=ConsentStatus.GRANTED,
            channel=Channel.FORM,
            origin=origin,
            basis=_("Confirmed by the link in the confirmation email (double opt-in)."),
            proof=proof,
        )
        submission.confirmed_at = now
        submission.save(update_fields=["confirmed_at"])
        return submission
