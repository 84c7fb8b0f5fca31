"""Many leads at once with lead_upsert's rules, in a fixed number of statements.

* companies_resolve: the company matching of leads.services.companies (corporate number,
  then domain never of a free-mail provider, then normalised name; create when a name is
  given; fill a matched company's empty fields) for a whole list of rows at once: one
  indexed lookup per key kind, rows taken in order so a company created for one row is
  found by the next, one INSERT for the new companies, one UPDATE for the filled ones.
  The import (every database) and the leads batch use it.
* leads_upsert_bulk: lead_upsert for up to a thousand items (the leads batch API, and
  the import on databases other than PostgreSQL): per-item validation and results, then
  one lookup of the existing leads (locked), one INSERT of the new ones, one UPDATE of
  the changed ones, and one statement each for transitions, tags and outbox events —
  instead of about eight queries per item. The per-lead rules are the same functions
  lead_upsert runs (lead_fields_clean, needs_company, upsert_changes).

An email given twice in one call is applied in order like separate calls would: its
first item in the first round, the next in a second round (where the lead exists).
"""

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts import events
from accounts.selectors import tenant_staff
from accounts.services import Origin
from accounts.tenancy import tenant_scope
from leads.models import Company, Lead, LeadTag, LifecycleStage, LifecycleTransition
from leads.normalize import (
    FREE_MAIL_DOMAINS,
    NormalizationError,
    company_domain_from_email,
    fold,
    normalize_company_name,
    normalize_corporate_number,
    normalize_domain,
)
from leads.scoring.services import rescore_after_commit
from leads.services.custom_fields import custom_values_clean, definitions_for_tenant
from leads.services.leads import (
    OWNER_UNREACHABLE,
    POLICIES,
    LeadInput,
    _event_payload,
    email_clean,
    lead_fields_clean,
    needs_company,
    upsert_changes,
)
from leads.services.tags import tag_names_clean, tags_get_or_create

MAX_ITEMS = 1000
LOOKUP_CHUNK = 5000  # values per IN (...) where arrays are not available (SQLite)


class ConcurrentChange(RuntimeError):
    """Someone else created the same lead or company while this ran; run it again."""


# --- Companies ----------------------------------------------------------------------------


@dataclass(slots=True)
class CompanyInput:
    """One row's company keys, already normalised (see company_input)."""

    name: str = ""
    corporate_number: str = ""
    domain: str = ""
    industry: str = ""
    prefecture: str = ""


def company_input(company: dict[str, str], email: str = "") -> CompanyInput:
    """A LeadInput's company keys as company_match_or_create normalises them; raises
    ValidationError on a bad 法人番号."""
    try:
        number = normalize_corporate_number(company.get("corporate_number") or "")
    except NormalizationError as exc:
        raise ValidationError({"corporate_number": [str(exc)]}) from exc
    domain = normalize_domain(company.get("domain") or "")
    if domain in FREE_MAIL_DOMAINS:
        domain = ""
    return CompanyInput(
        name=fold(company.get("name") or ""),
        corporate_number=number,
        domain=domain or company_domain_from_email((email or "").lower()),
        industry=company.get("industry") or "",
        prefecture=company.get("prefecture") or "",
    )


@dataclass
class CompanyResolution:
    ids: list[int | None]
    created: int = 0
    matched: int = 0
    filled: int = 0


_FILLABLE = ("corporate_number", "domain", "industry", "prefecture")


def _lookup(tenant_id: int, column: str, values: set[str]) -> dict[str, int]:
    """value → the oldest company with it (one indexed lookup for all values)."""
    values.discard("")
    if not values:
        return {}
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(Company._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"""SELECT DISTINCT ON ({column}) {column}, id FROM {table}
                    WHERE tenant_id = %s AND {column} = ANY(%s) ORDER BY {column}, id""",
                [tenant_id, list(values)],
            )
            return dict(cursor.fetchall())
    found: dict[str, int] = {}
    ordered = sorted(values)
    for start in range(0, len(ordered), LOOKUP_CHUNK):
        chunk = ordered[start : start + LOOKUP_CHUNK]
        rows = Company.objects.filter(**{f"{column}__in": chunk}).order_by("-id")
        found.update(rows.values_list(column, "id"))  # the oldest id is written last
    return found


def companies_resolve(
    *, tenant_id: int, inputs: list[CompanyInput | None], now=None
) -> CompanyResolution:
    """Each input's company id (None: nothing to match on and no name to create one).
    Runs inside the caller's tenant scope and transaction."""
    now = now or timezone.now()
    keys_cache: dict[str, str] = {}

    def key_of(name: str) -> str:
        key = keys_cache.get(name)
        if key is None:
            key = keys_cache[name] = normalize_company_name(name)
        return key

    keys = [key_of(i.name) if i is not None and i.name else "" for i in inputs]
    present = [i for i in inputs if i is not None]
    by_number = _lookup(tenant_id, "corporate_number", {i.corporate_number for i in present})
    by_domain = _lookup(tenant_id, "domain", {i.domain for i in present})
    by_key = _lookup(tenant_id, "name_key", set(keys))
    matched_ids = {*by_number.values(), *by_domain.values(), *by_key.values()}
    # Current values of the matched companies, to fill their empty fields.
    state: dict[int, dict[str, str]] = {
        row["id"]: row
        for row in Company.objects.filter(pk__in=list(matched_ids)).values("id", *_FILLABLE)
    }
    result = CompanyResolution(ids=[])
    new: list[dict[str, Any]] = []  # placeholder -(n+1) → the company to create
    filled: dict[int, dict[str, str]] = {}
    for item, key in zip(inputs, keys, strict=True):
        if item is None:
            result.ids.append(None)
            continue
        number, domain = item.corporate_number, item.domain
        found = (
            (number and by_number.get(number))
            or (domain and by_domain.get(domain))
            or (key and by_key.get(key))
            or None
        )
        if found is None and item.name:
            found = -(len(new) + 1)
            new.append(
                {"name": item.name[:255], "name_key": key[:255], "corporate_number": number,
                 "domain": domain, "industry": item.industry[:100],
                 "prefecture": item.prefecture}
            )  # fmt: skip
            for table, value in ((by_number, number), (by_domain, domain), (by_key, key)):
                if value:
                    table.setdefault(value, found)
        elif found is not None:
            if found > 0:
                result.matched += 1
            current = new[-found - 1] if found < 0 else state[found]
            given = {"corporate_number": number, "domain": domain,
                     "industry": item.industry[:100], "prefecture": item.prefecture}  # fmt: skip
            for name, value in given.items():
                if (
                    value
                    and not current[name]
                    and not (name == "corporate_number" and value in by_number)
                ):
                    current[name] = value
                    if found > 0:
                        filled.setdefault(found, {})[name] = value
            if number and number not in by_number and current["corporate_number"] == number:
                by_number[number] = found
            if domain and domain not in by_domain and current["domain"] == domain:
                by_domain[domain] = found
        result.ids.append(found)
    if new:
        try:
            with transaction.atomic():
                ids = _insert_companies(tenant_id, new, now)
        except IntegrityError as exc:
            raise ConcurrentChange(
                "A company with the same corporate number was created meanwhile; run again."
            ) from exc
        real = {-(n + 1): company_id for n, company_id in enumerate(ids)}
        result.ids = [real[c] if c is not None and c < 0 else c for c in result.ids]
        result.created = len(new)
    if filled:
        _fill_companies(filled, now)
        result.filled = len(filled)
    return result


def _insert_companies(tenant_id: int, new: list[dict[str, Any]], now) -> list[int]:
    """Insert the new companies in one statement; their ids in order."""
    if connection.vendor != "postgresql":
        companies = [
            Company(tenant_id=tenant_id, created_at=now, updated_at=now, **values) for values in new
        ]
        Company.objects.bulk_create(companies, batch_size=2000)
        return [company.pk for company in companies]
    # PostgreSQL: one INSERT from arrays (ordinality keeps the order of the ids).
    names = ("name", "name_key", "corporate_number", "domain", "industry", "prefecture")
    columns = {name: [values[name] for values in new] for name in names}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {connection.ops.quote_name(Company._meta.db_table)}
                    (tenant_id, name, name_key, corporate_number, domain, industry, size_band,
                     revenue_band, prefecture, address, created_at, updated_at)
                SELECT %(t)s, c.name, c.name_key, c.corporate_number, c.domain, c.industry,
                       '', '', c.prefecture, '', %(now)s, %(now)s
                FROM unnest(%(name)s::text[], %(name_key)s::text[],
                            %(corporate_number)s::text[], %(domain)s::text[],
                            %(industry)s::text[], %(prefecture)s::text[])
                     WITH ORDINALITY AS c(name, name_key, corporate_number, domain, industry,
                                          prefecture, n)
                ORDER BY c.n
                RETURNING id""",
            {"t": tenant_id, "now": now, **columns},
        )
        ids = [row[0] for row in cursor.fetchall()]
    # INSERT … SELECT … ORDER BY assigns serial ids in that order, so sorting the
    # returned ids gives them in input order whatever order RETURNING used.
    return sorted(ids)


def _fill_companies(filled: dict[int, dict[str, str]], now) -> None:
    by_fields: dict[tuple[str, ...], list[Company]] = defaultdict(list)
    for company_id, values in filled.items():
        by_fields[tuple(sorted(values))].append(Company(pk=company_id, updated_at=now, **values))
    for names, companies in by_fields.items():
        try:
            with transaction.atomic():
                Company.objects.bulk_update(companies, [*names, "updated_at"], batch_size=1000)
        except IntegrityError:
            # A 法人番号 taken meanwhile by another company: fill the rest without it,
            # as company_match_or_create leaves such a company as it was.
            rest = [n for n in names if n != "corporate_number"]
            if rest:
                Company.objects.bulk_update(companies, [*rest, "updated_at"], batch_size=1000)


# --- Leads --------------------------------------------------------------------------------


@dataclass
class BulkItem:
    index: int
    email: str
    clean: LeadInput
    company: CompanyInput | None
    extra: dict = field(default_factory=dict)  # caller's data carried to the outcome


@dataclass
class Outcome:
    """One applied item: the lead, whether it was created, what changed."""

    index: int
    lead_id: int
    created: bool
    changed: list[str]
    extra: dict


def _item_errors(item: Any) -> dict[str, list[str]] | None:
    if not isinstance(item, dict):
        return {"item": [_("Each item is an object.")]}
    wrong = {
        key: [_("Wrong type.")]
        for key, kind in (("custom", dict), ("tags", list))
        if key in item and not isinstance(item[key], kind)
    }
    return wrong or None


def _error(index: int, errors: dict) -> dict:
    return {"index": index, "status": "error", "errors": errors}


def leads_upsert_bulk(
    *,
    tenant_id: int,
    items: list[Any],
    channel: str,
    origin: Origin,
    source_campaign_id: int | None = None,
    policy: str = "fill_empty",
    definitions: dict | None = None,
) -> list[dict]:
    """lead_upsert for each item (a dict: `email` and the lead's fields), set-based.
    Returns one result per item, in order: {"index", "status": "created"|"updated",
    "id"} or {"index", "status": "error", "errors": {field: [messages]}}. A bad item
    is left out and the others are saved."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}")
    results: list[dict | None] = [None] * len(items)
    with tenant_scope(tenant_id):
        if definitions is None:
            definitions = definitions_for_tenant(tenant_id)
        campaign_error = _campaign_error(source_campaign_id)
        parsed: list[BulkItem] = []
        for index, raw in enumerate(items):
            errors = campaign_error or _item_errors(raw)
            if errors:
                results[index] = _error(index, errors)
                continue
            item = _parse(index, raw, definitions)
            if isinstance(item, dict):
                results[index] = _error(index, item)
                continue
            if source_campaign_id is not None:
                item.clean.values["source_campaign_id"] = source_campaign_id
            parsed.append(item)
        parsed = _check_owners(tenant_id, parsed, results)
        outcomes = leads_apply_bulk(
            tenant_id=tenant_id,
            items=parsed,
            channel=channel,
            origin=origin,
            policy=policy,
            definitions=definitions,
            results=results,
        )
        for outcome in outcomes:
            results[outcome.index] = {
                "index": outcome.index,
                "status": "created" if outcome.created else "updated",
                "id": outcome.lead_id,
            }
    return [r for r in results if r is not None]


def _campaign_error(campaign_id: int | None) -> dict | None:
    if campaign_id is None:
        return None
    campaign_model = Lead._meta.get_field("source_campaign").related_model
    if campaign_model.objects.filter(pk=campaign_id).exists():
        return None
    return {"source_campaign_id": [_("No campaign with this id.")]}


def _parse(index: int, raw: dict, definitions: dict) -> "BulkItem | dict":
    fields = {key: value for key, value in raw.items() if key != "email"}
    errors: dict[str, list[str]] = {}
    try:
        email = email_clean(raw.get("email") or "")
    except ValidationError as exc:
        errors.update(exc.message_dict)
        email = ""
    clean, field_errors = lead_fields_clean(fields, definitions=definitions)
    errors.update(field_errors)
    company = None
    if not errors and (clean.company or email):
        try:
            company = company_input(clean.company, email)
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if errors:
        return errors
    return BulkItem(index=index, email=email, clean=clean, company=company)


def _check_owners(tenant_id: int, items: list[BulkItem], results: list) -> list[BulkItem]:
    """Owners must work in the tenant (accounts.selectors.tenant_staff: members, or
    agency staff serving it), checked once for every owner id of the call."""
    wanted = {i.clean.values["owner_id"] for i in items if i.clean.values.get("owner_id")}
    if not wanted:
        return items
    reachable = {member.user.id for member in tenant_staff(tenant_id, user_ids=wanted)}
    kept = []
    for item in items:
        owner = item.clean.values.get("owner_id")
        if owner is not None and owner not in reachable:
            results[item.index] = _error(item.index, {"owner_id": [_(OWNER_UNREACHABLE)]})
        else:
            kept.append(item)
    return kept


def _rounds(items: list[BulkItem]) -> list[list[BulkItem]]:
    rounds: list[list[BulkItem]] = []
    seen: dict[str, int] = {}
    for item in items:
        number = seen.get(item.email, -1) + 1 if item.email else 0
        if item.email:
            seen[item.email] = number
        while len(rounds) <= number:
            rounds.append([])
        rounds[number].append(item)
    return rounds


def leads_apply_bulk(
    *,
    tenant_id: int,
    items: list[BulkItem],
    channel: str,
    origin: Origin,
    policy: str,
    definitions: dict,
    results: list,
    reason_created: str = "",
    emit_events: bool = True,
    stats: dict | None = None,
) -> list[Outcome]:
    """Apply parsed items (inside the caller's tenant scope); errors found on the way
    (a required custom field on a new lead) go to `results` by item index. `stats`
    collects companies_created and companies_matched. Imports pass emit_events=False:
    a job reports itself with one `import.completed` event."""
    stats = stats if stats is not None else {}
    outcomes: list[Outcome] = []
    for round_items in _rounds(items):
        for attempt in range(3):
            try:
                with transaction.atomic():
                    outcomes += _apply_round(
                        tenant_id, round_items, channel, origin, policy, definitions, results,
                        reason_created or _("Created"), emit_events, stats,
                    )  # fmt: skip
                break
            except _LostRace:
                # Another request inserted one of these emails after our lookup: the
                # savepoint is gone, look again (now it is an existing lead).
                if attempt == 2:
                    raise ConcurrentChange("Leads kept being created meanwhile.") from None
    return outcomes


class _LostRace(Exception):
    pass


def _apply_round(
    tenant_id: int,
    items: list[BulkItem],
    channel: str,
    origin: Origin,
    policy: str,
    definitions: dict,
    results: list,
    reason_created: str,
    emit_events: bool,
    stats: dict,
) -> list[Outcome]:
    now = timezone.now()
    emails = [i.email for i in items if i.email]
    existing: dict[str, Lead] = {}
    for start in range(0, len(emails), LOOKUP_CHUNK):
        chunk = emails[start : start + LOOKUP_CHUNK]
        for lead in Lead.objects.select_for_update().filter(email__in=chunk).order_by("pk"):
            existing[lead.email] = lead
    fresh: list[BulkItem] = []
    old: list[tuple[BulkItem, Lead]] = []
    for item in items:
        lead = existing.get(item.email) if item.email else None
        if lead is not None:
            old.append((item, lead))
            continue
        custom = {k: v for k, v in (item.clean.custom or {}).items() if v is not None}
        _cleaned, missing = custom_values_clean(
            {}, definitions, check_required=True, existing=custom
        )
        if missing:
            results[item.index] = _error(item.index, missing)
        else:
            fresh.append(item)
    # Companies, for the rows that match one (the lead_upsert rule), in item order.
    needing = [
        (item, lead)
        for item, lead in [*((i, None) for i in fresh), *old]
        if item.company is not None and needs_company(lead, item.clean, policy, item.email)
    ]
    resolution = companies_resolve(
        tenant_id=tenant_id, inputs=[item.company for item, _lead in needing], now=now
    )
    stats["companies_created"] = stats.get("companies_created", 0) + resolution.created
    stats["companies_matched"] = stats.get("companies_matched", 0) + resolution.matched
    company_of = {
        item.index: company_id
        for (item, _lead), company_id in zip(needing, resolution.ids, strict=True)
    }
    outcomes: list[Outcome] = []
    transitions: list[LifecycleTransition] = []
    created_payloads, stage_payloads, updated_payloads = [], [], []
    tag_links: dict[int, list[str]] = {}
    # New leads: one INSERT.
    leads: list[Lead] = []
    given_of: list[list[str]] = []
    for item in fresh:
        values = dict(item.clean.values)
        if "company_id" not in values and (item.clean.company or item.email):
            values["company_id"] = company_of.get(item.index)
        custom = {k: v for k, v in (item.clean.custom or {}).items() if v is not None}
        given_of.append(
            [
                *values,
                *(["custom_fields"] if custom else []),
                *(["tags"] if item.clean.tags else []),
            ]
        )
        leads.append(
            Lead(
                tenant_id=tenant_id,
                email=item.email,
                lifecycle_stage=item.clean.stage or LifecycleStage.LEAD,
                source_channel=channel,
                custom_fields=custom,
                created_at=now,
                updated_at=now,
                **values,
            )
        )
    try:
        with transaction.atomic():
            Lead.objects.bulk_create(leads, batch_size=1000)
    except IntegrityError as exc:
        raise _LostRace from exc
    for item, lead, given in zip(fresh, leads, given_of, strict=True):
        transitions.append(
            LifecycleTransition(
                tenant_id=tenant_id, lead_id=lead.pk, from_stage="", to_stage=lead.lifecycle_stage,
                occurred_at=now, actor=origin.actor, channel=channel, reason=reason_created,
            )
        )  # fmt: skip
        created_payloads.append(_event_payload(lead, given))
        stage_payloads.append(
            {"v": 1, "lead_id": lead.pk, "from": "", "to": lead.lifecycle_stage,
             "channel": channel}
        )  # fmt: skip
        if item.clean.tags:
            tag_links[lead.pk] = item.clean.tags
        outcomes.append(Outcome(item.index, lead.pk, True, given, item.extra))
    # Existing leads: the changes computed per lead, one UPDATE per set of columns.
    changed_leads: dict[tuple[str, ...], list[Lead]] = defaultdict(list)
    stage_changes: list[tuple[Lead, str]] = []
    for item, lead in old:
        changed = upsert_changes(
            lead, item.clean, policy=policy, company_id=company_of.get(item.index)
        )
        columns = {"custom_fields" if c.startswith("custom.") else c for c in changed}
        stage = item.clean.stage
        if policy == "overwrite" and stage and stage != lead.lifecycle_stage:
            # lead_change_stage's rule, recorded below with the other transitions.
            stage_changes.append((lead, lead.lifecycle_stage))
            lead.lifecycle_stage = stage
            columns.add("lifecycle_stage")
        if columns:
            lead.updated_at = now
            changed_leads[tuple(sorted(columns))].append(lead)
        if changed:
            updated_payloads.append(_event_payload(lead, changed))
        if policy != "skip" and item.clean.tags:
            tag_links[lead.pk] = item.clean.tags
        outcomes.append(Outcome(item.index, lead.pk, False, changed, item.extra))
    for columns, group in changed_leads.items():
        Lead.objects.bulk_update(group, [*columns, "updated_at"], batch_size=1000)
    stage_transitions = [
        LifecycleTransition(
            tenant_id=tenant_id, lead_id=lead.pk, from_stage=from_stage,
            to_stage=lead.lifecycle_stage, occurred_at=now, actor=origin.actor,
            channel=channel, reason="",
        )
        for lead, from_stage in stage_changes
    ]  # fmt: skip
    LifecycleTransition.objects.bulk_create([*transitions, *stage_transitions], batch_size=1000)
    for transition in stage_transitions:
        stage_payloads.append(
            {"v": 1, "lead_id": transition.lead_id, "from": transition.from_stage,
             "to": transition.to_stage, "channel": channel, "reason": "",
             "transition_id": transition.pk}
        )  # fmt: skip
    _tags_add(tenant_id, tag_links)
    rescore_after_commit(tenant_id, [o.lead_id for o in outcomes if o.created or o.changed])
    if not emit_events:
        return outcomes
    events.emit_many("lead.created", tenant_id=tenant_id, payloads=created_payloads)
    events.emit_many("lead.updated", tenant_id=tenant_id, payloads=updated_payloads)
    events.emit_many("lead.lifecycle_changed", tenant_id=tenant_id, payloads=stage_payloads)
    return outcomes


def _tags_add(tenant_id: int, links: dict[int, list[str]]) -> None:
    """Every lead's tags in two statements (tags created on first use)."""
    if not links:
        return
    names = list(dict.fromkeys(tag_names_clean([n for ns in links.values() for n in ns])))
    by_name = {tag.name: tag.pk for tag in tags_get_or_create(tenant_id=tenant_id, names=names)}
    LeadTag.objects.bulk_create(
        [
            LeadTag(tenant_id=tenant_id, lead_id=lead_id, tag_id=by_name[name])
            for lead_id, lead_names in links.items()
            for name in lead_names
        ],
        ignore_conflicts=True,
        batch_size=2000,
    )
