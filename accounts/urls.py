"""Staff web UI routes of accounts. `urlpatterns` are about the person (sign-in, the
home redirect, invitation links); `tenant_urlpatterns` are mounted by config.urls under
/t/<tenant>/ in the "accounts" namespace, and every one of them is a tenant_view."""

from django.urls import path

from accounts import views

urlpatterns = [
    path("", views.home, name="home"),
    path("tenants/new/", views.tenant_create, name="tenant_create"),
    path("accounts/login/", views.login_view, name="login"),
    path("accounts/logout/", views.logout_view, name="logout"),
    path("accounts/password-reset/", views.password_reset_view, name="password_reset"),
    path(
        "accounts/password-reset/sent/",
        views.password_reset_done_view,
        name="password_reset_done",
    ),
    path(
        "accounts/reset/<uidb64>/<token>/",
        views.password_reset_confirm_view,
        name="password_reset_confirm",
    ),
    path(
        "accounts/reset/done/",
        views.password_reset_complete_view,
        name="password_reset_complete",
    ),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation_accept"),
]

tenant_urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("settings/members/", views.members, name="members"),
    path("settings/members/invite/", views.invitation_create, name="invitation_create"),
    path("settings/members/<int:pk>/role/", views.member_role_change, name="member_role_change"),
    path("settings/members/<int:pk>/remove/", views.member_remove, name="member_remove"),
    path(
        "settings/invitations/<int:pk>/revoke/",
        views.invitation_revoke,
        name="invitation_revoke",
    ),
    path("settings/agency-access/grant/", views.agency_access_grant, name="agency_access_grant"),
    path(
        "settings/agency-access/<int:pk>/revoke/",
        views.agency_access_revoke,
        name="agency_access_revoke",
    ),
    path("settings/api-keys/", views.api_keys, name="api_keys"),
    path("settings/api-keys/<int:pk>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("settings/audit-log/", views.audit_log, name="audit_log"),
    path("settings/webhooks/", views.webhooks, name="webhooks"),
    path("settings/webhooks/<int:pk>/", views.webhook_detail, name="webhook_detail"),
    path("settings/webhooks/<int:pk>/active/", views.webhook_set_active, name="webhook_set_active"),
    path(
        "settings/webhooks/<int:pk>/rotate-secret/",
        views.webhook_rotate_secret,
        name="webhook_rotate_secret",
    ),
    path("settings/webhooks/<int:pk>/test/", views.webhook_send_test, name="webhook_send_test"),
    path("settings/webhooks/<int:pk>/delete/", views.webhook_delete, name="webhook_delete"),
    path(
        "settings/webhook-deliveries/<int:pk>/replay/",
        views.webhook_delivery_replay,
        name="webhook_delivery_replay",
    ),
    path("settings/tenant/", views.tenant_settings, name="tenant_settings"),
]
