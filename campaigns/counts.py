"""Stored campaign figures (CampaignCounts): members by status and leads generated.

Counting a campaign's members on every list page cost 880 ms for a page of campaigns
with 200,000 members each. Instead, triggers append the change of every statement
that writes memberships or leads (one row per campaign touched, never an UPDATE of a
shared row, so concurrent form submissions to one campaign never wait on each other),
the figures are the SUM of a campaign's rows, and `counts_fold()` (every minute)
folds each campaign's rows into one. The triggers run in the writing transaction, so
the figures are exact for whoever reads them.

PostgreSQL only: on SQLite (development) campaigns.selectors counts live.
"""

from django.db import connection, connections

from accounts.tenancy import unscoped
from campaigns.models import Campaign, CampaignCounts, CampaignMembership
from leads.models import Lead

COUNTS = CampaignCounts._meta.db_table
MEMBERS = CampaignMembership._meta.db_table
LEADS = Lead._meta.db_table
CAMPAIGNS = Campaign._meta.db_table
STATUSES = ("invited", "registered", "attended", "responded", "no_show")
COLUMNS = (*STATUSES, "leads_generated")


def _by_status(sign: str = "") -> str:
    return ", ".join(f"{sign}count(*) FILTER (WHERE status = '{s}') AS {s}" for s in STATUSES)


# A counted lead: it names a source campaign and was not merged into another.
COUNTED = "source_campaign_id IS NOT NULL AND merged_into_id IS NULL"

INSTALL_SQL = f"""
CREATE OR REPLACE FUNCTION campaign_counts_members() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO {COUNTS} (tenant_id, campaign_id, {", ".join(COLUMNS)})
        SELECT tenant_id, campaign_id, {_by_status()}, 0
        FROM new_rows GROUP BY tenant_id, campaign_id;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO {COUNTS} (tenant_id, campaign_id, {", ".join(COLUMNS)})
        SELECT tenant_id, campaign_id, {_by_status("-")}, 0
        FROM old_rows GROUP BY tenant_id, campaign_id;
    ELSE
        INSERT INTO {COUNTS} (tenant_id, campaign_id, {", ".join(COLUMNS)})
        SELECT * FROM (
            SELECT tenant_id, campaign_id,
                   {
    ", ".join(f"coalesce(sum(d) FILTER (WHERE status = '{s}'), 0)::int AS {s}" for s in STATUSES)
},
                   0 AS leads_generated
            FROM (SELECT tenant_id, campaign_id, status, 1 AS d FROM new_rows
                  UNION ALL
                  SELECT tenant_id, campaign_id, status, -1 AS d FROM old_rows) AS change
            GROUP BY tenant_id, campaign_id
        ) AS delta
        WHERE {" OR ".join(f"delta.{s} <> 0" for s in STATUSES)};
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION campaign_counts_leads() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO {COUNTS} (tenant_id, campaign_id, leads_generated)
        SELECT tenant_id, source_campaign_id, count(*) FROM new_rows
        WHERE {COUNTED} GROUP BY tenant_id, source_campaign_id;
    ELSE
        INSERT INTO {COUNTS} (tenant_id, campaign_id, leads_generated)
        SELECT tenant_id, source_campaign_id, -count(*) FROM old_rows
        WHERE {COUNTED} GROUP BY tenant_id, source_campaign_id;
    END IF;
    RETURN NULL;
END $$;

-- Updates of leads are frequent (every edit, every score later); only the rare one
-- that changes what is counted writes a row, decided per row by the WHEN clause.
CREATE OR REPLACE FUNCTION campaign_counts_lead_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.source_campaign_id IS NOT NULL AND OLD.merged_into_id IS NULL THEN
        INSERT INTO {COUNTS} (tenant_id, campaign_id, leads_generated)
        VALUES (OLD.tenant_id, OLD.source_campaign_id, -1);
    END IF;
    IF NEW.source_campaign_id IS NOT NULL AND NEW.merged_into_id IS NULL THEN
        INSERT INTO {COUNTS} (tenant_id, campaign_id, leads_generated)
        VALUES (NEW.tenant_id, NEW.source_campaign_id, 1);
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS campaign_counts_members_insert ON {MEMBERS};
CREATE TRIGGER campaign_counts_members_insert AFTER INSERT ON {MEMBERS}
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION campaign_counts_members();
DROP TRIGGER IF EXISTS campaign_counts_members_update ON {MEMBERS};
CREATE TRIGGER campaign_counts_members_update AFTER UPDATE ON {MEMBERS}
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION campaign_counts_members();
DROP TRIGGER IF EXISTS campaign_counts_members_delete ON {MEMBERS};
CREATE TRIGGER campaign_counts_members_delete AFTER DELETE ON {MEMBERS}
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION campaign_counts_members();

DROP TRIGGER IF EXISTS campaign_counts_leads_insert ON {LEADS};
CREATE TRIGGER campaign_counts_leads_insert AFTER INSERT ON {LEADS}
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION campaign_counts_leads();
DROP TRIGGER IF EXISTS campaign_counts_leads_delete ON {LEADS};
CREATE TRIGGER campaign_counts_leads_delete AFTER DELETE ON {LEADS}
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION campaign_counts_leads();
DROP TRIGGER IF EXISTS campaign_counts_leads_update ON {LEADS};
CREATE TRIGGER campaign_counts_leads_update
    AFTER UPDATE OF source_campaign_id, merged_into_id ON {LEADS}
    FOR EACH ROW
    WHEN (OLD.source_campaign_id IS DISTINCT FROM NEW.source_campaign_id
          OR OLD.merged_into_id IS DISTINCT FROM NEW.merged_into_id)
    EXECUTE FUNCTION campaign_counts_lead_changed();
"""

UNINSTALL_SQL = f"""
DROP TRIGGER IF EXISTS campaign_counts_members_insert ON {MEMBERS};
DROP TRIGGER IF EXISTS campaign_counts_members_update ON {MEMBERS};
DROP TRIGGER IF EXISTS campaign_counts_members_delete ON {MEMBERS};
DROP TRIGGER IF EXISTS campaign_counts_leads_insert ON {LEADS};
DROP TRIGGER IF EXISTS campaign_counts_leads_delete ON {LEADS};
DROP TRIGGER IF EXISTS campaign_counts_leads_update ON {LEADS};
DROP FUNCTION IF EXISTS campaign_counts_members();
DROP FUNCTION IF EXISTS campaign_counts_leads();
DROP FUNCTION IF EXISTS campaign_counts_lead_changed();
"""

# One row per campaign: what every campaign with more than one row (or whose campaign
# is gone) had, summed. A concurrent fold skips the rows this one deleted (they are
# gone when it gets their lock), and rows written meanwhile wait for the next fold.
FOLD_SQL = f"""
WITH busy AS (
    SELECT campaign_id FROM {COUNTS} GROUP BY campaign_id
    HAVING count(*) > 1 OR NOT EXISTS (SELECT 1 FROM {CAMPAIGNS} c WHERE c.id = campaign_id)
), gone AS (
    DELETE FROM {COUNTS} counts USING busy WHERE counts.campaign_id = busy.campaign_id
    RETURNING counts.*
)
INSERT INTO {COUNTS} (tenant_id, campaign_id, {", ".join(COLUMNS)})
SELECT gone.tenant_id, gone.campaign_id, {", ".join(f"sum(gone.{c})" for c in COLUMNS)}
FROM gone JOIN {CAMPAIGNS} c ON c.id = gone.campaign_id
GROUP BY gone.tenant_id, gone.campaign_id
"""

REBUILD_SQL = f"""
WITH gone AS (DELETE FROM {COUNTS} WHERE %(tenant)s::bigint IS NULL OR tenant_id = %(tenant)s)
INSERT INTO {COUNTS} (tenant_id, campaign_id, {", ".join(COLUMNS)})
SELECT tenant_id, campaign_id, {", ".join(f"sum({c})" for c in COLUMNS)}
FROM (
    SELECT tenant_id, campaign_id, {_by_status()}, 0 AS leads_generated
    FROM {MEMBERS} m WHERE %(tenant)s::bigint IS NULL OR tenant_id = %(tenant)s
    GROUP BY tenant_id, campaign_id
    UNION ALL
    SELECT tenant_id, source_campaign_id, 0, 0, 0, 0, 0, count(*)
    FROM {LEADS} WHERE {COUNTED} AND (%(tenant)s::bigint IS NULL OR tenant_id = %(tenant)s)
    GROUP BY tenant_id, source_campaign_id
) AS live
GROUP BY tenant_id, campaign_id
"""


def counts_install(using: str = "default") -> bool:
    """After every migrate (like row-level security): create or replace the trigger
    functions and triggers, and count from scratch when the table is still empty but
    there is something to count (a database that had campaigns before the triggers).
    Idempotent. Returns whether it recounted."""
    conn = connections[using]
    if conn.vendor != "postgresql":
        return False
    with conn.cursor() as cursor:
        cursor.execute(INSTALL_SQL)
    with (
        unscoped(reason="campaign counts: first count after migrate", using=using),
        conn.cursor() as cursor,
    ):
        cursor.execute(
            f"""SELECT NOT EXISTS (SELECT 1 FROM {COUNTS})
                   AND (EXISTS (SELECT 1 FROM {MEMBERS})
                        OR EXISTS (SELECT 1 FROM {LEADS} WHERE {COUNTED}))"""
        )
        needed = cursor.fetchone()[0]
    if needed:
        counts_rebuild(using=using)
    return needed


def counts_uninstall(using: str = "default") -> None:
    conn = connections[using]
    if conn.vendor != "postgresql":
        return
    with conn.cursor() as cursor:
        cursor.execute(UNINSTALL_SQL)


def counts_fold() -> int:
    """Fold every campaign's rows into one (platform job, every minute); returns the
    number of rows written."""
    if connection.vendor != "postgresql":
        return 0
    with (
        unscoped(reason="campaign counts: fold the rows of every tenant's campaigns"),
        connection.cursor() as cursor,
    ):
        cursor.execute(FOLD_SQL)
        return cursor.rowcount


def counts_rebuild(tenant_id: int | None = None, *, using: str = "default") -> int:
    """Recount from the memberships and leads themselves (one tenant, or all): the
    repair tool, and how the figures start. Returns the rows written."""
    conn = connections[using]
    if conn.vendor != "postgresql":
        return 0
    with (
        unscoped(reason="campaign counts: recount from memberships and leads", using=using),
        conn.cursor() as cursor,
    ):
        cursor.execute(REBUILD_SQL, {"tenant": tenant_id})
        return cursor.rowcount
