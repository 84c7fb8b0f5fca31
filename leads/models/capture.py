"""Hosted lead-capture forms and what visitors submit through them."""

import secrets

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import TenantModel
from leads.models.people import Lead


def new_form_key() -> str:
    return secrets.token_urlsafe(16)


class CaptureForm(TenantModel):
    """A form a tenant designs and embeds on its site. `fields` is a list of
    {"name", "label", "maps_to" ("lead.<field>" or "custom.<key>"), "type", "required",
    "choices"}; the public endpoint finds the form by `key`, never by id."""

    name = models.CharField(_("name"), max_length=200)
    key = models.CharField(max_length=32, unique=True, default=new_form_key, editable=False)
    campaign = models.ForeignKey(
        "campaigns.Campaign",
        verbose_name=_("campaign"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    fields = models.JSONField(_("fields"), default=list)
    consent_text = models.TextField(_("consent checkbox text"), blank=True)
    consent_required = models.BooleanField(_("consent required to submit"), default=False)
    double_opt_in = models.BooleanField(_("double opt-in by email"), default=False)
    thank_you_message = models.TextField(_("thank-you message"), blank=True)
    redirect_url = models.URLField(_("redirect after submitting"), blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("capture form")
        verbose_name_plural = _("capture forms")
        indexes = [models.Index(fields=["tenant", "-created_at"], name="captureform_tenant_idx")]

    def __str__(self) -> str:
        return self.name


class FormSubmission(TenantModel):
    form = models.ForeignKey(CaptureForm, on_delete=models.CASCADE, related_name="submissions")
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="form_submissions")
    data = models.JSONField(default=dict)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    referrer = models.CharField(max_length=1000, blank=True)
    page_url = models.CharField(max_length=1000, blank=True)
    utm = models.JSONField(default=dict, blank=True)
    submitted_at = models.DateTimeField(default=timezone.now)
    confirmed_at = models.DateTimeField(null=True, blank=True)  # double opt-in

    class Meta:
        verbose_name = _("form submission")
        verbose_name_plural = _("form submissions")
        indexes = [
            models.Index(fields=["tenant", "form", "-submitted_at"], name="submission_form_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.form_id} → {self.lead_id}"
