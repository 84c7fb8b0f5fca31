from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PipelineConfig(AppConfig):
    name = "pipeline"
    verbose_name = _("Pipeline")

    def ready(self) -> None:
        from accounts import events
        from accounts.webhooks.catalogue import register_event_type
        from pipeline import hooks, services

        # An MQL is an MQL, scored or set by hand: both reach the queue (idempotently).
        events.on_event("lead.mql_reached")(services.on_mql_event)
        events.on_event("lead.lifecycle_changed")(services.on_mql_event)
        events.on_event("lead.merged")(services.on_mql_event)
        # A nurture step asking for a sales task (campaigns emits, pipeline owns tasks).
        events.on_event("nurture.task_requested")(services.on_task_requested)
        # Campaign pages show sales' feedback without importing pipeline.
        events.on_hook("campaign.detail_blocks")(hooks.campaign_feedback_block)
        # A lead's tasks on its timeline (leads' extension point, and how they look).
        from leads.selectors import register_timeline_source
        from pipeline import timeline

        register_timeline_source("task", _("Task created"), timeline.tasks_made)
        register_timeline_source("task_done", _("Task done"), timeline.tasks_done)
        events.on_hook("lead.timeline_items")(timeline.timeline_items)

        for name, label in [
            ("handoff.created", _("MQL handed to inside sales")),
            ("handoff.accepted", _("Handoff accepted")),
            ("handoff.rejected", _("Handoff rejected")),
            ("handoff.qualified", _("Handoff qualified (SQL)")),
            ("handoff.reassigned", _("Handoff reassigned")),
            ("handoff.withdrawn", _("Handoff withdrawn (the lead moved on)")),
            ("sla.breached", _("Handoff SLA breached")),
        ]:
            register_event_type(name, label)
