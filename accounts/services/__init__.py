"""Every write in accounts that matters: one function per use case, transactional,
audited where it touches security. Callers import from `accounts.services`; the
modules split the use cases by subject."""

from accounts.services.api_keys import (
    API_KEY_LAST_USED_RESOLUTION,
    API_KEY_PREFIX,
    IssuedAPIKey,
    api_key_authenticate,
    api_key_cache_forget,
    api_key_cache_forget_tenant,
    api_key_create,
    api_key_revoke,
    split_raw_api_key,
)
from accounts.services.audit import SYSTEM, Origin, audit_record, sha256_hex
from accounts.services.invitations import (
    INVITATION_LIFETIME,
    IssuedInvitation,
    invitation_accept,
    invitation_accept_new_user,
    invitation_create,
    invitation_get_by_token,
    invitation_revoke,
)
from accounts.services.members import (
    OWNERS_ONLY_MESSAGE,
    agency_assignment_grant,
    agency_assignment_revoke,
    is_admin_role,
    membership_change_role,
    membership_remove,
    require_role_grantable,
    role_grantable,
)
from accounts.services.tenants import (
    tenant_create,
    tenant_set_active,
    tenant_update,
    user_update,
)

__all__ = [
    "API_KEY_LAST_USED_RESOLUTION",
    "API_KEY_PREFIX",
    "INVITATION_LIFETIME",
    "OWNERS_ONLY_MESSAGE",
    "SYSTEM",
    "IssuedAPIKey",
    "IssuedInvitation",
    "Origin",
    "agency_assignment_grant",
    "agency_assignment_revoke",
    "api_key_authenticate",
    "api_key_cache_forget",
    "api_key_cache_forget_tenant",
    "api_key_create",
    "api_key_revoke",
    "audit_record",
    "invitation_accept",
    "invitation_accept_new_user",
    "invitation_create",
    "invitation_get_by_token",
    "invitation_revoke",
    "is_admin_role",
    "membership_change_role",
    "membership_remove",
    "require_role_grantable",
    "role_grantable",
    "sha256_hex",
    "split_raw_api_key",
    "tenant_create",
    "tenant_set_active",
    "tenant_update",
    "user_update",
]
