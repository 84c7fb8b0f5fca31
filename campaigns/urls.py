"""Staff web UI routes of campaigns, mounted by config.urls under /t/<tenant>/ in the
"campaigns" namespace; every view is an accounts.web.tenant_view."""

from django.urls import path

from campaigns import views
from campaigns.nurture import bulk as nurture_bulk
from campaigns.nurture import segment_views
from campaigns.nurture import web as nurture
from campaigns.nurture import web_mail as nurture_mail

tenant_urlpatterns = [
    path("campaigns/", views.index, name="index"),
    path("campaigns/new/", views.create, name="create"),
    path("campaigns/add-leads/", views.bulk_add, name="bulk_add"),
    path("campaigns/<int:pk>/", views.detail, name="detail"),
    path("campaigns/<int:pk>/edit/", views.edit, name="edit"),
    path("campaigns/<int:pk>/cost/", views.add_cost, name="add_cost"),
    path("campaigns/members/<int:pk>/status/", views.member_status, name="member_status"),
    path("campaigns/members/<int:pk>/remove/", views.member_remove, name="member_remove"),
    # Nurturing (campaigns.nurture.web, web_mail).
    path("nurture/", nurture.sequence_index, name="nurture_sequences"),
    path("nurture/new/", nurture.sequence_create, name="nurture_sequence_create"),
    path("nurture/<int:pk>/", nurture.sequence_detail, name="nurture_sequence"),
    path("nurture/<int:pk>/edit/", nurture.sequence_edit, name="nurture_sequence_edit"),
    path("nurture/<int:pk>/status/", nurture.sequence_status, name="nurture_sequence_status"),
    path("nurture/<int:pk>/enrolments/", nurture.enrolment_index, name="nurture_enrolments"),
    path("nurture/<int:pk>/enrol/", nurture.enrol, name="nurture_enrol"),
    path("nurture/<int:pk>/lead-picker/", nurture.lead_picker, name="nurture_lead_picker"),
    path(
        "nurture/enrolments/<int:pk>/state/",
        nurture.enrolment_state,
        name="nurture_enrolment_state",
    ),
    path("nurture/templates/", nurture_mail.template_index, name="nurture_templates"),
    path("nurture/templates/new/", nurture_mail.template_create, name="nurture_template_create"),
    path("nurture/templates/<int:pk>/", nurture_mail.template_edit, name="nurture_template"),
    path(
        "nurture/templates/preview/",
        nurture_mail.template_preview,
        name="nurture_template_preview",
    ),
    path(
        "nurture/templates/<int:pk>/test-send/",
        nurture_mail.template_test_send,
        name="nurture_template_test_send",
    ),
    path("nurture/senders/", nurture_mail.sender_index, name="nurture_senders"),
    path("nurture/senders/<int:pk>/", nurture_mail.sender_edit, name="nurture_sender"),
    path("nurture/settings/", nurture_mail.sending_settings, name="nurture_settings"),
]

# Saved segments (campaigns.nurture.segment_views).
tenant_urlpatterns += [
    path("nurture/segments/", segment_views.segment_list, name="segments"),
    path("nurture/segments/new/", segment_views.segment_new, name="segment_new"),
    path("nurture/segments/<int:pk>/", segment_views.segment_edit, name="segment_edit"),
    path("nurture/segments/<int:pk>/delete/", segment_views.segment_delete, name="segment_delete"),
]

# The leads list's "enrol in sequence" bulk action (campaigns.nurture.bulk).
tenant_urlpatterns += [
    path("nurture/enrol-leads/", nurture_bulk.bulk_enrol, name="nurture_bulk_enrol"),
]
