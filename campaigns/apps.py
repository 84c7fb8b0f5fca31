from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = _("Campaigns")

    def ready(self) -> None:
        from accounts import events
        from campaigns import hooks

        events.on_hook("campaign.leads_responded")(hooks.leads_responded)
        events.on_hook("campaign.leads_merged")(hooks.leads_merged)

        from accounts.management.commands.demo_data import demo_data_loaders
        from campaigns.demo import load as load_demo

        if load_demo not in demo_data_loaders:
            demo_data_loaders.append(load_demo)
