from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


def install_counts(sender: AppConfig, using: str = "default", **kwargs) -> None:
    """After every migrate: the triggers that keep CampaignCounts (campaigns.counts)."""
    from campaigns.counts import counts_install

    counts_install(using)


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = _("Campaigns")

    def ready(self) -> None:
        from accounts import events
        from campaigns import hooks

        events.on_hook("campaign.leads_responded")(hooks.leads_responded)
        events.on_hook("campaign.leads_merged")(hooks.leads_merged)
        events.on_event("lead.lifecycle_changed")(hooks.lead_lifecycle_changed)
        events.on_event("form.submitted")(hooks.form_submitted)
        events.on_event("campaign.members_added")(hooks.members_added)
        # Nurture enrolments and mails on a lead's timeline (leads' extension point).
        from campaigns.nurture import timeline
        from leads.selectors import register_timeline_source

        register_timeline_source(
            "enrolment", _("Enrolled in a sequence"), timeline.enrolments_started
        )
        register_timeline_source(
            "enrolment_end", _("Left or finished a sequence"), timeline.enrolments_ended
        )
        register_timeline_source("email", _("Nurture mail sent"), timeline.mails_sent)
        events.on_hook("lead.timeline_items")(timeline.timeline_items)
        # The leads list's "enrol in sequence" bulk action.
        from campaigns.nurture.bulk import list_bulk_actions

        events.on_hook("leads.list_bulk_actions")(list_bulk_actions)
        post_migrate.connect(install_counts, sender=self, dispatch_uid="campaigns.counts")

        from accounts.management.commands.demo_data import demo_data_loaders
        from campaigns.demo import load as load_demo

        if load_demo not in demo_data_loaders:
            demo_data_loaders.append(load_demo)
