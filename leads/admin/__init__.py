"""Leads in the platform admin (every tenant's rows: the admin site runs each view in
the named escape, see accounts.admin_site).

Writes go through leads.services inside the scope of the row's tenant, so the admin
keeps the services' rules (normalised unique email, company matching, recorded stage
changes, audited deletes) and row-level security checks each write as it would for
the tenant's own staff. The event stream and the histories (activities, lifecycle
transitions, consent events) are append-only, so read-only here.

`people` registers leads, companies, tags, custom fields, the suppression list and the
histories; `work` capture forms, imports and scoring.
"""

from leads.admin.people import (
    ActivityAdmin,
    CompanyAdmin,
    ConsentEventAdmin,
    CustomFieldDefinitionAdmin,
    LeadAdmin,
    LifecycleTransitionAdmin,
    SuppressionAdmin,
    TagAdmin,
)
from leads.admin.work import (
    CaptureFormAdmin,
    CompanyScoreAdmin,
    FormSubmissionAdmin,
    ImportJobAdmin,
    ImportRowErrorAdmin,
    LeadScoreAdmin,
    ScoringModelAdmin,
)

__all__ = [
    "ActivityAdmin",
    "CaptureFormAdmin",
    "CompanyAdmin",
    "CompanyScoreAdmin",
    "ConsentEventAdmin",
    "CustomFieldDefinitionAdmin",
    "FormSubmissionAdmin",
    "ImportJobAdmin",
    "ImportRowErrorAdmin",
    "LeadAdmin",
    "LeadScoreAdmin",
    "LifecycleTransitionAdmin",
    "ScoringModelAdmin",
    "SuppressionAdmin",
    "TagAdmin",
]
