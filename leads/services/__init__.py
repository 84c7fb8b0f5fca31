"""Every write in leads that matters. Other apps (forms, imports, campaigns, pipeline)
call these instead of writing Lead, Company, Activity or consent rows themselves."""

from leads.services.activities import MAX_BATCH, activities_ingest, activity_record
from leads.services.companies import (
    company_create,
    company_delete,
    company_match,
    company_match_or_create,
    company_update,
)
from leads.services.consent import consent_record, suppression_add, suppression_remove
from leads.services.custom_fields import (
    custom_field_create,
    custom_field_delete,
    custom_field_update,
    custom_values_clean,
    definitions_for_tenant,
)
from leads.services.lead_bulk import companies_resolve, leads_upsert_bulk
from leads.services.leads import (
    POLICIES,
    UPSERT_FIELDS,
    LeadInput,
    LeadUpsert,
    email_clean,
    lead_change_stage,
    lead_create,
    lead_delete,
    lead_fields_clean,
    lead_update,
    lead_upsert,
    prefecture_code,
    to_katakana,
)
from leads.services.merge import lead_merge
from leads.services.tags import (
    lead_tags_add,
    lead_tags_remove,
    lead_tags_set,
    tag_create,
    tag_delete,
    tag_names_clean,
    tag_rename,
    tags_get_or_create,
)

__all__ = [
    "MAX_BATCH",
    "POLICIES",
    "UPSERT_FIELDS",
    "LeadInput",
    "LeadUpsert",
    "activities_ingest",
    "activity_record",
    "companies_resolve",
    "company_create",
    "company_delete",
    "company_match",
    "company_match_or_create",
    "company_update",
    "consent_record",
    "custom_field_create",
    "custom_field_delete",
    "custom_field_update",
    "custom_values_clean",
    "definitions_for_tenant",
    "email_clean",
    "lead_change_stage",
    "lead_create",
    "lead_delete",
    "lead_fields_clean",
    "lead_merge",
    "lead_tags_add",
    "lead_tags_remove",
    "lead_tags_set",
    "lead_update",
    "lead_upsert",
    "leads_upsert_bulk",
    "prefecture_code",
    "suppression_add",
    "suppression_remove",
    "tag_create",
    "tag_delete",
    "tag_names_clean",
    "tag_rename",
    "tags_get_or_create",
    "to_katakana",
]
