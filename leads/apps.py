from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class LeadsConfig(AppConfig):
    name = "leads"

    def ready(self) -> None:
        from accounts.webhooks.catalogue import register_event_type

        # The outbox events leads emits, subscribable by webhooks.
        for name, label in [
            ("lead.created", _("Lead created")),
            ("lead.updated", _("Lead updated")),
            ("lead.lifecycle_changed", _("Lifecycle stage changed")),
            ("lead.deleted", _("Lead deleted")),
            ("lead.merged", _("Leads merged")),
            ("lead.consent_changed", _("Consent changed")),
            ("lead.mql_reached", _("Lead reached MQL")),
            ("form.submitted", _("Form submitted")),
            ("import.completed", _("Import completed")),
        ]:
            register_event_type(name, label)
