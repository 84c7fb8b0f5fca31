"""Django admin for platform administrators: users, tenants and what hangs off them.

Every view runs inside `unscoped(reason="platform admin")` (see accounts.admin_site),
so the changelists show every tenant's rows. Writes that carry a rule or belong in the
audit log go through accounts.services, each inside the scope of the tenant it
touches (row-level security then checks the write as it would for the tenant's own
staff):

- tenant create/update/(de)activate  → tenant_create, tenant_update, tenant_set_active
- membership role change / removal    → membership_change_role, membership_remove
- agency access grant/change/revoke   → agency_assignment_grant, agency_assignment_revoke
- API key revoke (action)             → api_key_revoke
- invitation create / revoke (action) → invitation_create, invitation_revoke
- webhook enable/disable, replay      → webhook_endpoint_set_active, webhook_delivery_replay

Where the admin edits rows directly, and why:

- Users: a platform table with no tenant and no rule beyond the model's; Django's auth
  forms hash passwords, and Django's own admin log records who changed what.
- Nothing else. Rows with no service for the change are read-only here: API keys are
  created by a tenant's admins (the raw key is shown once, to them), memberships are
  created by invitation, the audit log is append-only, tenants are deactivated rather
  than deleted.

A service refusing a change (ValidationError, e.g. demoting a tenant's last owner)
shows as an error message on the page; the view's transaction is rolled back.

The modules: `base` (shared pieces), `users`, `tenants`, `access` (memberships, agency
assignments, API keys, invitations) and `audit`. Importing them registers their
ModelAdmins with the platform admin site (admin autodiscovery imports this package).
"""

from accounts.admin.access import (
    AgencyAssignmentAdmin,
    APIKeyAdmin,
    InvitationAdmin,
    MembershipAdmin,
)
from accounts.admin.audit import AuditLogAdmin
from accounts.admin.tenants import TenantAdmin
from accounts.admin.users import UserAdmin
from accounts.admin.webhooks import WebhookDeliveryAdmin, WebhookEndpointAdmin

__all__ = [
    "APIKeyAdmin",
    "AgencyAssignmentAdmin",
    "AuditLogAdmin",
    "InvitationAdmin",
    "MembershipAdmin",
    "TenantAdmin",
    "UserAdmin",
    "WebhookDeliveryAdmin",
    "WebhookEndpointAdmin",
]
