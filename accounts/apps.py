from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


def apply_row_level_security(sender: AppConfig, using: str = "default", **kwargs) -> None:
    """After every migrate: every tenant table gets forced RLS and its policies."""
    from accounts.rls import ensure_row_level_security

    ensure_row_level_security(using)


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = _("Accounts and tenants")

    def ready(self) -> None:
        from accounts import auth_audit, checks  # noqa: F401  (checks registers itself)

        auth_audit.connect()

        from accounts import events
        from accounts.webhooks.delivery import deliveries_for_event

        # Every event of the outbox reaches the tenant's webhooks (DESIGN.md).
        events.on_event("*")(deliveries_for_event)

        # Connected for this app only: post_migrate fires once per app, after all
        # migrations have run, so every tenant table exists by then.
        post_migrate.connect(
            apply_row_level_security, sender=self, dispatch_uid="accounts.apply_rls"
        )
