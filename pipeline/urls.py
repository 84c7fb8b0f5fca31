"""Staff web UI routes of pipeline, mounted by config.urls under /t/<tenant>/ in the
"pipeline" namespace; every view is an accounts.web.tenant_view."""

from django.urls import path

from pipeline import views

tenant_urlpatterns = [
    path("queue/", views.queue, name="queue"),
    path("queue/<int:pk>/", views.handoff_detail, name="handoff"),
    path("queue/<int:pk>/accept/", views.accept, name="accept"),
    path("queue/<int:pk>/reject/", views.reject, name="reject"),
    path("queue/<int:pk>/qualify/", views.qualify, name="qualify"),
    path("queue/<int:pk>/reassign/", views.reassign, name="reassign"),
    path("queue/settings/", views.settings_page, name="settings"),
    path("queue/settings/teams/new/", views.team_edit, name="team_new"),
    path("queue/settings/teams/<int:pk>/", views.team_edit, name="team_edit"),
    path("queue/settings/teams/<int:pk>/delete/", views.team_delete, name="team_delete"),
    path("queue/settings/rules/new/", views.rule_edit, name="rule_new"),
    path("queue/settings/rules/<int:pk>/", views.rule_edit, name="rule_edit"),
    path("queue/settings/rules/<int:pk>/delete/", views.rule_delete, name="rule_delete"),
    path("tasks/", views.tasks, name="tasks"),
    path("tasks/<int:pk>/done/", views.task_done, name="task_done"),
]
