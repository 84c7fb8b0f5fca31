"""Lead writes: create, update, upsert by email, stage changes, delete.

Rules every path follows (API, hosted forms, imports, batch):

* Email is normalised (width, case, syntax) and unique per tenant; a lead without
  an email (a business card) is allowed.
* Names keep the Japanese order (family, given) and are NFKC-folded; kana readings
  are stored in katakana (hiragana and half-width kana are converted).
* Phone numbers are stored as E.164 (Japanese numbers may omit +81).
* The company is attached automatically: by 法人番号, else by email domain (not
  free-mail), else by normalised company name (leads.services.companies).
* Custom fields are validated against the tenant's definitions; errors name the
  field as `custom.<key>`. Tags are created on first use.
* Every stage change, including the first one at creation (from ''), is a
  LifecycleTransition (from, to, when, actor, channel, reason) and emits
  `lead.lifecycle_changed`; creation emits `lead.created`, changes `lead.updated`
  (payload `{"v": 1, "lead_id", "email", "fields": [changed names]}`).
"""

import dataclasses
import re
from typing import Any, Literal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from accounts import events
from accounts.selectors import tenant_staff
from accounts.services import Origin, audit_record
from accounts.sql import insert_columns
from accounts.tenancy import tenant_scope
from leads.models import (
    Channel,
    Company,
    CustomFieldDefinition,
    Lead,
    LifecycleStage,
    LifecycleTransition,
    Prefecture,
)
from leads.normalize import NormalizationError, fold, normalize_email, normalize_phone
from leads.scoring.services import rescore_after_commit
from leads.services.companies import (
    NOT_LOOKED_UP,
    company_match_keys,
    company_match_or_create,
    company_match_sql,
)
from leads.services.custom_fields import custom_values_clean, definitions_for_tenant
from leads.services.tags import lead_tags_add, lead_tags_set, tag_names_clean

Policy = Literal["skip", "fill_empty", "overwrite"]
POLICIES = ("skip", "fill_empty", "overwrite")

NAME_FIELDS = ("family_name", "given_name")
KANA_FIELDS = ("family_name_kana", "given_name_kana")
TEXT_FIELDS = ("job_title", "department")
LEAD_VALUE_FIELDS = (*NAME_FIELDS, *KANA_FIELDS, "phone", *TEXT_FIELDS)
#: Input keys that describe the lead's company, and the Company field each fills.
COMPANY_INPUTS = {
    "company_name": "name",
    "corporate_number": "corporate_number",
    "company_domain": "domain",
    "industry": "industry",
    "prefecture": "prefecture",
}
UPSERT_FIELDS = frozenset(
    {*LEAD_VALUE_FIELDS, *COMPANY_INPUTS, "owner_id", "lifecycle_stage", "custom", "tags"}
)
#: lead_create / lead_update also take an explicit company and source campaign.
EDIT_FIELDS = UPSERT_FIELDS | {"company_id", "source_campaign_id"}

# --- Normalising single values ------------------------------------------------------------

_HIRAGANA = re.compile(r"[\u3041-\u3096\u309d\u309e]")
_KANA_ONLY = re.compile(r"^[\u30a0-\u30ff\u3000 ]*$")


def to_katakana(value: str) -> str:
    """NFKC-folded, hiragana shifted to katakana: 'やまだ' and 'ﾔﾏﾀﾞ' → 'ヤマダ'."""
    return _HIRAGANA.sub(lambda m: chr(ord(m.group(0)) + 0x60), fold(value))


_PREFECTURE_NAMES_JA = [
    "北海道", "青森", "岩手", "宮城", "秋田", "山形", "福島", "茨城", "栃木", "群馬",
    "埼玉", "千葉", "東京", "神奈川", "新潟", "富山", "石川", "福井", "山梨", "長野",
    "岐阜", "静岡", "愛知", "三重", "滋賀", "京都", "大阪", "兵庫", "奈良", "和歌山",
    "鳥取", "島根", "岡山", "広島", "山口", "徳島", "香川", "愛媛", "高知", "福岡",
    "佐賀", "長崎", "熊本", "大分", "宮崎", "鹿児島", "沖縄",
]  # fmt: skip
_PREFECTURE_LOOKUP: dict[str, str] = {}
for _code, _label in Prefecture.choices:
    _ja = _PREFECTURE_NAMES_JA[int(_code) - 1]
    for _name in (_code, str(int(_code)), _ja, _ja + "都", _ja + "府", _ja + "県"):
        _PREFECTURE_LOOKUP[_name] = _code
    _PREFECTURE_LOOKUP[Prefecture(_code).name.lower()] = _code
    _PREFECTURE_LOOKUP[Prefecture(_code).name.lower() + " prefecture"] = _code


def prefecture_code(raw: str, *, allow_address: bool = False) -> str:
    """'東京都', '東京', 'Tokyo', '13' → '13'; '' when blank; ValueError when unknown.
    With allow_address, an address that starts with a prefecture ('神奈川県横浜市…',
    as spreadsheets often hold) gives that prefecture."""
    value = fold(str(raw or "")).casefold().replace(" ", "")
    if not value:
        return ""
    code = _PREFECTURE_LOOKUP.get(value) or _PREFECTURE_LOOKUP.get(value.removesuffix("-ken"))
    if code is None and allow_address:
        code = next(
            (
                c
                for name, c in _PREFECTURE_LOOKUP.items()
                if len(name) >= 3 and not name.isascii() and value.startswith(name)
            ),
            None,
        )
    if code is None:
        raise ValueError(_("Not a Japanese prefecture."))
    return code


def email_clean(raw: str | None) -> str:
    """Normalised email or ''; ValidationError on the `email` field."""
    if raw is not None and not isinstance(raw, str):
        raise ValidationError({"email": [_("Enter a valid email address.")]})
    try:
        email = normalize_email(raw or "")
    except NormalizationError as exc:
        raise ValidationError({"email": [_("Enter a valid email address.")]}) from exc
    if len(email) > Lead._meta.get_field("email").max_length:
        raise ValidationError({"email": [_("The email address is too long.")]})
    return email


# --- Cleaning a lead's fields (pure Python: imports and batches call it per row) --------


@dataclasses.dataclass
class LeadInput:
    """A lead's fields after validation, in stored form. Only keys given are present."""

    values: dict[str, Any]  # Lead model fields (names, kana, phone, owner_id, company_id, …)
    company: dict[str, str]  # company_match_or_create keys (name, corporate_number, domain…)
    stage: str | None = None
    custom: dict[str, Any] | None = None  # None values mean "clear this key"
    tags: list[str] | None = None


def lead_fields_clean(
    fields: dict[str, Any],
    *,
    definitions: dict[str, CustomFieldDefinition],
    allowed: frozenset[str] = UPSERT_FIELDS,
) -> tuple[LeadInput, dict[str, list[str]]]:
    """Validate and normalise `fields`: (LeadInput, errors by field name). No queries
    (owner and company ids are checked by the services that take them)."""
    errors: dict[str, list[str]] = {}
    clean = LeadInput(values={}, company={})
    for key, raw in fields.items():
        if key not in allowed:
            errors[key] = [_("Unknown field.")]
            continue
        try:
            _clean_one(key, raw, clean, definitions, errors)
        except ValueError as exc:
            errors[key] = [str(exc)]
    return clean, errors


def _text(raw: Any, key: str) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str | int):
        raise ValueError(_("Enter text."))
    value = fold(str(raw))
    model_field = Lead._meta.get_field(key) if key in LEAD_VALUE_FIELDS else None
    limit = model_field.max_length if model_field else 255
    if len(value) > limit:
        raise ValueError(_("At most %(n)d characters.") % {"n": limit})
    return value


def _clean_one(key: str, raw: Any, clean: LeadInput, definitions, errors) -> None:
    if key in NAME_FIELDS or key in TEXT_FIELDS:
        clean.values[key] = _text(raw, key)
    elif key in KANA_FIELDS:
        value = to_katakana(_text(raw, key))
        if not _KANA_ONLY.match(value):
            raise ValueError(_("Enter the reading in kana."))
        clean.values[key] = value
    elif key == "phone":
        try:
            clean.values["phone"] = normalize_phone(_text(raw, key))
        except NormalizationError as exc:
            raise ValueError(_("Enter a valid phone number.")) from exc
    elif key == "prefecture":
        clean.company["prefecture"] = prefecture_code(raw)
    elif key in COMPANY_INPUTS:
        clean.company[COMPANY_INPUTS[key]] = _text(raw, key)
    elif key in ("owner_id", "company_id", "source_campaign_id"):
        if raw in (None, ""):
            clean.values[key] = None
        elif isinstance(raw, bool) or not str(raw).isdigit():
            raise ValueError(_("Enter an id."))
        else:
            clean.values[key] = int(raw)
    elif key == "lifecycle_stage":
        if raw not in LifecycleStage.values:
            raise ValueError(_("Not a lifecycle stage."))
        clean.stage = raw
    elif key == "custom":
        values, custom_errors = custom_values_clean(raw, definitions, check_required=False)
        errors.update(custom_errors)
        clean.custom = values
    elif key == "tags":
        try:
            clean.tags = tag_names_clean(raw)
        except ValidationError as exc:
            errors.update(exc.message_dict)


#: Refusing an owner who cannot work in the tenant (the leads batch says it too).
OWNER_UNREACHABLE = gettext_noop(
    "This person does not work in this tenant: choose a member, or agency staff serving it."
)


def _raise(errors: dict[str, list[str]]) -> None:
    if errors:
        raise ValidationError(errors)


def _check_references(
    tenant_id: int,
    values: dict[str, Any],
    *,
    campaign_found: bool | None = None,
    owner_id_before: int | None = None,
) -> None:
    """Owner, company and source campaign ids must be the tenant's (404-like: the
    error does not say whether the id exists elsewhere); the owner someone who works
    in the tenant (accounts.selectors.tenant_staff: a member, or agency staff serving
    it). campaign_found: the campaign was looked up already (lead_upsert's lookup
    statement). owner_id_before: the lead's owner, kept without a check (an owner who
    has left keeps their leads until someone reassigns them)."""
    errors: dict[str, list[str]] = {}
    owner_id = values.get("owner_id")
    if (
        owner_id is not None
        and owner_id != owner_id_before
        and not tenant_staff(tenant_id, user_ids=[owner_id])
    ):
        errors["owner_id"] = [_(OWNER_UNREACHABLE)]
    company_id = values.get("company_id")
    if company_id is not None and not Company.objects.filter(pk=company_id).exists():
        errors["company_id"] = [_("No company with this id.")]
    campaign_id = values.get("source_campaign_id")
    if campaign_id is not None:
        if campaign_found is None:
            campaign_found = _campaign_model().objects.filter(pk=campaign_id).exists()
        if not campaign_found:
            errors["source_campaign_id"] = [_("No campaign with this id.")]
    _raise(errors)


def _campaign_model():
    # leads may not import campaigns (DESIGN.md): the foreign key knows the model.
    return Lead._meta.get_field("source_campaign").related_model


def _event_payload(lead: Lead, changed: list[str]) -> dict:
    return {"v": 1, "lead_id": lead.id, "email": lead.email, "fields": sorted(changed)}


# --- Create ------------------------------------------------------------------------------


def _insert(
    *,
    tenant_id: int,
    email: str,
    clean: LeadInput,
    channel: str,
    origin: Origin,
    definitions: dict[str, CustomFieldDefinition],
    company: Company | None = NOT_LOOKED_UP,
) -> Lead | None:
    """Insert a new lead with its first transition, tags and events. None when a lead
    with this email exists after all (a concurrent insert won): nothing of the lead is
    written then, and the caller's transaction stays usable. `company`: the match that
    lead_upsert's lookup found (company_match_or_create's `matched`)."""
    custom = {k: v for k, v in (clean.custom or {}).items() if v is not None}
    _cleaned, required_errors = custom_values_clean(
        {}, definitions, check_required=True, existing=custom
    )
    _raise(required_errors)
    values = dict(clean.values)
    if "company_id" not in values and (clean.company or email):
        company = company_match_or_create(
            tenant_id=tenant_id, email=email, matched=company, **_company_kwargs(clean)
        )
        values["company_id"] = company.id if company else None
    stage = clean.stage or LifecycleStage.LEAD
    now = timezone.now()
    lead = Lead(
        tenant_id=tenant_id,
        email=email,
        lifecycle_stage=stage,
        source_channel=channel,
        custom_fields=custom,
        created_at=now,
        updated_at=now,
        **values,
    )
    transition = LifecycleTransition(
        tenant_id=tenant_id,
        from_stage="",
        to_stage=stage,
        occurred_at=now,
        actor=origin.actor,
        channel=channel,
        reason=_("Created"),
    )
    if not _save_new(lead, transition):
        return None
    if clean.tags:
        lead_tags_add(tenant_id=tenant_id, lead_ids=[lead.id], names=clean.tags)
    given = [*values, *(["custom_fields"] if custom else []), *(["tags"] if clean.tags else [])]
    events.emit("lead.created", tenant_id=tenant_id, payload=_event_payload(lead, given))
    events.emit(
        "lead.lifecycle_changed",
        tenant_id=tenant_id,
        payload={"v": 1, "lead_id": lead.id, "from": "", "to": stage, "channel": channel},
    )
    rescore_after_commit(tenant_id, [lead.id])
    return lead


def _save_new(lead: Lead, transition: LifecycleTransition) -> bool:
    """INSERT the lead and its first transition; False (nothing written) when a lead
    of the tenant has the email already. PostgreSQL: one statement, the email conflict
    answered by ON CONFLICT DO NOTHING instead of a savepoint around the INSERT."""
    if connection.vendor != "postgresql":
        try:
            with transaction.atomic():
                lead.save(force_insert=True)
        except IntegrityError:
            if lead.email and Lead.objects.filter(email=lead.email).exists():
                return False
            raise
        transition.lead = lead
        transition.save(force_insert=True)
        return True
    lead_columns, lead_values = insert_columns(lead)
    transition.lead_id = 0  # a placeholder: the column is filled from the new lead below
    transition_columns, transition_values = insert_columns(transition)
    lead_column = transition_columns.index(connection.ops.quote_name("lead_id"))
    selected = ["%s"] * len(transition_columns)
    selected[lead_column] = "new_lead.id"
    del transition_values[lead_column]
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH new_lead AS ("
            f" INSERT INTO {Lead._meta.db_table} ({', '.join(lead_columns)})"
            f" VALUES ({', '.join(['%s'] * len(lead_columns))})"
            # The arbiter is the partial unique index of (tenant, email); leads without
            # an email never conflict.
            " ON CONFLICT (tenant_id, email) WHERE NOT (email = '') DO NOTHING"
            " RETURNING id"
            f"), new_transition AS ("
            f" INSERT INTO {LifecycleTransition._meta.db_table} ({', '.join(transition_columns)})"
            f" SELECT {', '.join(selected)} FROM new_lead RETURNING id"
            ") SELECT new_lead.id, (SELECT id FROM new_transition) FROM new_lead",
            [*lead_values, *transition_values],
        )
        row = cursor.fetchone()
    if row is None:
        return False
    lead.id, transition.id = row
    transition.lead = lead
    for obj in (lead, transition):
        obj._state.adding, obj._state.db = False, connection.alias
    return True


def _company_kwargs(clean: LeadInput) -> dict[str, Any]:
    company = dict(clean.company)
    defaults = {key: company.pop(key) for key in ("industry", "prefecture") if key in company}
    return {**company, "defaults": defaults}


def lead_create(
    *,
    tenant_id: int,
    email: str = "",
    fields: dict[str, Any] | None = None,
    channel: str = Channel.API,
    origin: Origin,
) -> Lead:
    """A new lead; a lead with the same email in the tenant is a validation error on
    `email` (use lead_upsert to update it instead)."""
    with tenant_scope(tenant_id):
        definitions = definitions_for_tenant(tenant_id)
        email = email_clean(email)
        clean, errors = lead_fields_clean(
            fields or {}, definitions=definitions, allowed=EDIT_FIELDS
        )
        _raise(errors)
        _check_references(tenant_id, clean.values)
        if email and Lead.objects.filter(email=email).exists():
            raise ValidationError({"email": [_("A lead with this email exists.")]})
        lead = _insert(
            tenant_id=tenant_id,
            email=email,
            clean=clean,
            channel=channel,
            origin=origin,
            definitions=definitions,
        )
        if lead is None:
            raise ValidationError({"email": [_("A lead with this email exists.")]})
        return lead


# --- Upsert ------------------------------------------------------------------------------


@dataclasses.dataclass
class LeadUpsert:
    lead: Lead
    created: bool


def lead_upsert(
    *,
    tenant_id: int,
    email: str,
    fields: dict[str, Any] | None = None,
    channel: str,
    origin: Origin,
    source_campaign_id: int | None = None,
    policy: Policy = "fill_empty",
    definitions: dict[str, CustomFieldDefinition] | None = None,
    savepoint: bool = True,
) -> LeadUpsert:
    """Create the lead with this email, or update the one that has it.

    policy for an existing lead: "skip" leaves it untouched; "fill_empty" sets only
    fields that are empty (tags are added, custom keys without a value are set, the
    stage is left alone); "overwrite" replaces with every non-empty value given (and
    changes the stage, recorded). Empty inputs never clear anything here. The source
    campaign is first-touch: set only when the lead has none. Without an email a new
    lead is always created. Concurrent upserts of one email make one lead (the loser
    of the insert race updates the winner's row).

    Every ValidationError is raised before anything is written, so a caller already in
    the tenant's scope that rolls back on errors may pass savepoint=False (the public
    form view): the upsert then joins its transaction without a savepoint of its own.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}")
    with tenant_scope(tenant_id, savepoint=savepoint):
        email = email_clean(email)
        given = dict(fields or {})
        # Without definitions, they come with the lookup below: custom values are
        # checked after it, every other field before it.
        custom_raw = given.pop("custom", _UNSET) if definitions is None else _UNSET
        clean, errors = lead_fields_clean(given, definitions=definitions or {})
        if errors and custom_raw is _UNSET:
            _raise(errors)
        if source_campaign_id is not None:
            clean.values["source_campaign_id"] = source_campaign_id
        found = _lookup(
            tenant_id=tenant_id,
            email=email,
            definitions=definitions,
            campaign_id=clean.values.get("source_campaign_id"),
            company_keys=_company_keys(clean, email),
        )
        definitions = found.definitions
        if custom_raw is not _UNSET:
            with_custom, custom_errors = lead_fields_clean(
                {"custom": custom_raw}, definitions=definitions
            )
            clean.custom = with_custom.custom
            errors.update(custom_errors)
        _raise(errors)
        _check_references(tenant_id, clean.values, campaign_found=found.campaign_found)
        lead = None
        if found.lead_id is not None:
            lead = Lead.objects.select_for_update().filter(email=email).first()
        if lead is None:
            lead = _insert(
                tenant_id=tenant_id,
                email=email,
                clean=clean,
                channel=channel,
                origin=origin,
                definitions=definitions,
                company=found.company,
            )
            if lead is not None:
                return LeadUpsert(lead=lead, created=True)
            # A concurrent upsert inserted the email since the lookup: update its lead.
            lead = Lead.objects.select_for_update().filter(email=email).first()
            if lead is None:
                raise IntegrityError(f"the lead of {email!r} was deleted during the upsert")
        _apply_upsert(
            lead, clean, policy=policy, channel=channel, origin=origin, company=found.company
        )
        return LeadUpsert(lead=lead, created=False)


@dataclasses.dataclass
class _Found:
    """What lead_upsert reads before it writes."""

    definitions: dict[str, CustomFieldDefinition]
    lead_id: int | None  # the tenant's lead with the email, if any
    campaign_found: bool | None  # None: no source campaign given
    company: Company | None  # company_match_sql's answer, or NOT_LOOKED_UP


def _company_keys(clean: LeadInput, email: str) -> tuple[str, str, str] | None:
    """The company match keys of the input, or None when no company is matched from
    it (an explicit company id, nothing to match on, or a bad 法人番号, which
    company_match_or_create reports if a company is needed)."""
    if "company_id" in clean.values or not (clean.company or email):
        return None
    keys = _company_kwargs(clean)
    del keys["defaults"]
    try:
        return company_match_keys(email=email, **keys)
    except ValidationError:
        return None


def _lookup(
    *,
    tenant_id: int,
    email: str,
    definitions: dict[str, CustomFieldDefinition] | None,
    campaign_id: int | None,
    company_keys: tuple[str, str, str] | None,
) -> _Found:
    """The tenant's custom field definitions (unless given), the lead holding the email,
    whether the source campaign is the tenant's and the company the input matches
    (company_match_sql): one statement on PostgreSQL, one query each elsewhere."""
    company_query = company_match_sql(tenant_id, company_keys) if company_keys else None
    found = _Found(
        definitions=definitions,
        lead_id=None,
        campaign_found=None,
        company=NOT_LOOKED_UP if company_keys is None else None,
    )
    if connection.vendor != "postgresql":
        if definitions is None:
            found.definitions = definitions_for_tenant(tenant_id)
        if email:
            found.lead_id = Lead.objects.filter(email=email).values_list("id", flat=True).first()
        if campaign_id is not None:
            found.campaign_found = _campaign_model().objects.filter(pk=campaign_id).exists()
        if company_query is not None:
            found.company = next(iter(Company.objects.raw(*company_query)), None)
        return found
    parts: list[str] = []
    params: list[Any] = []
    if definitions is None:
        parts.append(
            "(SELECT coalesce(json_agg(row_to_json(d) ORDER BY d.position, d.id), '[]')"
            f" FROM {CustomFieldDefinition._meta.db_table} d WHERE d.tenant_id = %s)"
        )
        params.append(tenant_id)
    if email:
        parts.append(f"(SELECT id FROM {Lead._meta.db_table} WHERE tenant_id = %s AND email = %s)")
        params += [tenant_id, email]
    if campaign_id is not None:
        parts.append(
            f"EXISTS (SELECT 1 FROM {_campaign_model()._meta.db_table}"
            " WHERE tenant_id = %s AND id = %s)"
        )
        params += [tenant_id, campaign_id]
    if company_query is not None:
        parts.append(f"(SELECT row_to_json(c) FROM ({company_query[0]}) c)")
        params += company_query[1]
    if not parts:
        return found
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(parts)}", params)
        row = list(cursor.fetchone())
    if definitions is None:
        rows = [_from_json(CustomFieldDefinition, item) for item in row.pop(0)]
        found.definitions = {definition.key: definition for definition in rows}
    if email:
        found.lead_id = row.pop(0)
    if campaign_id is not None:
        found.campaign_found = row.pop(0)
    if company_query is not None:
        company = row.pop(0)
        found.company = _from_json(Company, company) if company is not None else None
    return found


def _from_json(model: Any, row: dict[str, Any]) -> Any:
    """A model instance from its row as PostgreSQL's row_to_json gives it."""
    fields = model._meta.concrete_fields
    return model.from_db(
        connection.alias,
        [field.attname for field in fields],
        [field.to_python(row[field.column]) for field in fields],
    )


def needs_company(lead: Lead | None, clean: LeadInput, policy: str, email: str) -> bool:
    """Whether an upsert matches a company for this lead: a new lead always (by the
    company keys given, else by its email's domain) unless an explicit company_id is
    given; an existing one when keys are given and the policy lets its company change."""
    if lead is None:
        return "company_id" not in clean.values and bool(clean.company or email)
    return (
        policy != "skip"
        and bool(clean.company)
        and (policy == "overwrite" or lead.company_id is None)
    )


def upsert_changes(
    lead: Lead, clean: LeadInput, *, policy: str, company_id: Any = None
) -> list[str]:
    """Apply `clean` to an existing lead in memory by policy; the changed field names
    (custom keys as `custom.<key>`). `company_id` is the matched company when
    needs_company() said so. No query: lead_upsert and the bulk upsert share it."""
    if policy == "skip":
        return []
    overwrite = policy == "overwrite"
    changed: list[str] = []
    for field, value in clean.values.items():
        if field == "source_campaign_id":
            if value is not None and lead.source_campaign_id is None:
                lead.source_campaign_id = value
                changed.append(field)
            continue
        if value in ("", None) or getattr(lead, field) == value:
            continue
        if overwrite or getattr(lead, field) in ("", None):
            setattr(lead, field, value)
            changed.append(field)
    if company_id is not None and company_id != lead.company_id:
        lead.company_id = company_id
        changed.append("company_id")
    if clean.custom:
        custom = dict(lead.custom_fields or {})
        for key, value in clean.custom.items():
            if value is None or custom.get(key) == value:
                continue
            if overwrite or custom.get(key) in (None, "", []):
                custom[key] = value
                changed.append(f"custom.{key}")
        lead.custom_fields = custom
    return changed


def _apply_upsert(
    lead: Lead,
    clean: LeadInput,
    *,
    policy: str,
    channel: str,
    origin: Origin,
    company: Company | None = NOT_LOOKED_UP,
):
    if policy == "skip":
        return
    company_id = None
    if needs_company(lead, clean, policy, lead.email):
        company = company_match_or_create(
            tenant_id=lead.tenant_id, email=lead.email, matched=company, **_company_kwargs(clean)
        )
        company_id = company.id if company else None
    changed = upsert_changes(lead, clean, policy=policy, company_id=company_id)
    _save_changes(lead, changed, origin=origin)
    if clean.tags:
        lead_tags_add(tenant_id=lead.tenant_id, lead_ids=[lead.id], names=clean.tags)
    if policy == "overwrite" and clean.stage and clean.stage != lead.lifecycle_stage:
        lead_change_stage(lead=lead, to_stage=clean.stage, origin=origin, channel=channel)


def _save_changes(lead: Lead, changed: list[str], *, origin: Origin) -> None:
    if not changed:
        return
    lead.updated_at = timezone.now()
    columns = {"custom_fields" if name.startswith("custom.") else name for name in changed}
    lead.save(update_fields=[*columns, "updated_at"])
    events.emit("lead.updated", tenant_id=lead.tenant_id, payload=_event_payload(lead, changed))
    rescore_after_commit(lead.tenant_id, [lead.id])


# --- Update ------------------------------------------------------------------------------

_UNSET: Any = object()


def lead_update(
    *,
    lead: Lead,
    fields: dict[str, Any] | None = None,
    email: str | None = _UNSET,
    origin: Origin,
    channel: str = Channel.API,
    reason: str = "",
) -> Lead:
    """Set the given fields exactly (an empty value clears; a custom key set to null
    is removed; `tags` replaces the set; company_* keys re-match the company). The
    email stays unique; a stage change is recorded like lead_change_stage."""
    tenant_id = lead.tenant_id
    with tenant_scope(tenant_id):
        definitions = definitions_for_tenant(tenant_id)
        clean, errors = lead_fields_clean(
            fields or {}, definitions=definitions, allowed=EDIT_FIELDS
        )
        if email is not _UNSET:
            try:
                email = email_clean(email)
            except ValidationError as exc:
                errors.update(exc.message_dict)
        _raise(errors)
        _check_references(tenant_id, clean.values, owner_id_before=lead.owner_id)
        changed: list[str] = []
        if email is not _UNSET and email != lead.email:
            if email and Lead.objects.filter(email=email).exclude(pk=lead.pk).exists():
                raise ValidationError({"email": [_("A lead with this email exists.")]})
            lead.email = email
            changed.append("email")
        for field, value in clean.values.items():
            value = "" if value is None and field in LEAD_VALUE_FIELDS else value
            if getattr(lead, field) != value:
                setattr(lead, field, value)
                changed.append(field)
        if clean.company and "company_id" not in clean.values:
            company = company_match_or_create(
                tenant_id=tenant_id, email=lead.email, **_company_kwargs(clean)
            )
            new_id = company.id if company else None
            if new_id != lead.company_id:
                lead.company_id = new_id
                changed.append("company_id")
        if clean.custom is not None:
            custom = dict(lead.custom_fields or {})
            for key, value in clean.custom.items():
                if value is None:
                    if custom.pop(key, None) is not None:
                        changed.append(f"custom.{key}")
                elif custom.get(key) != value:
                    custom[key] = value
                    changed.append(f"custom.{key}")
            # A required field may not be cleared (older leads may still lack one).
            cleared_required = [
                f"custom.{key}"
                for key, value in clean.custom.items()
                if value is None and key in definitions and definitions[key].required
            ]
            if cleared_required:
                raise ValidationError(
                    {name: [_("This field is required.")] for name in cleared_required}
                )
            lead.custom_fields = custom
        try:
            with transaction.atomic():
                _save_changes(lead, changed, origin=origin)
        except IntegrityError as exc:
            raise ValidationError({"email": [_("A lead with this email exists.")]}) from exc
        if clean.tags is not None:
            lead_tags_set(tenant_id=tenant_id, lead_id=lead.id, names=clean.tags)
        if clean.stage and clean.stage != lead.lifecycle_stage:
            lead_change_stage(
                lead=lead, to_stage=clean.stage, origin=origin, channel=channel, reason=reason
            )
        return lead


# --- Stage -------------------------------------------------------------------------------


def lead_change_stage(
    *, lead: Lead, to_stage: str, origin: Origin, channel: str, reason: str = ""
) -> LifecycleTransition | None:
    """Move the lead to `to_stage` and record the transition (from, to, when, actor,
    channel, reason); emits `lead.lifecycle_changed`. None when already there. Any
    stage may follow any other (recycling and disqualifying go backwards)."""
    if to_stage not in LifecycleStage.values:
        raise ValidationError({"lifecycle_stage": [_("Not a lifecycle stage.")]})
    if len(reason) > LifecycleTransition._meta.get_field("reason").max_length:
        raise ValidationError({"reason": [_("The reason is too long.")]})
    with tenant_scope(lead.tenant_id):
        # The row lock orders concurrent changes, so each transition's "from" is true.
        current = Lead.objects.select_for_update().values_list("lifecycle_stage", flat=True)
        from_stage = current.get(pk=lead.pk)
        if from_stage == to_stage:
            lead.lifecycle_stage = to_stage
            return None
        now = timezone.now()
        Lead.objects.filter(pk=lead.pk).update(lifecycle_stage=to_stage, updated_at=now)
        lead.lifecycle_stage, lead.updated_at = to_stage, now
        transition = LifecycleTransition.objects.create(
            tenant_id=lead.tenant_id,
            lead=lead,
            from_stage=from_stage,
            to_stage=to_stage,
            occurred_at=now,
            actor=origin.actor,
            channel=channel,
            reason=reason,
        )
        events.emit(
            "lead.lifecycle_changed",
            tenant_id=lead.tenant_id,
            payload={
                "v": 1,
                "lead_id": lead.id,
                "from": from_stage,
                "to": to_stage,
                "channel": channel,
                "reason": reason,
                "transition_id": transition.id,
            },
        )
        return transition


# --- Delete ------------------------------------------------------------------------------


def lead_delete(*, lead: Lead, origin: Origin) -> None:
    """Deletes the lead with its activities and history (a person's erasure request);
    audited, and `lead.deleted` is emitted."""
    with tenant_scope(lead.tenant_id):
        audit_record(tenant_id=lead.tenant_id, origin=origin, action="lead.deleted", target=lead)
        events.emit(
            "lead.deleted",
            tenant_id=lead.tenant_id,
            payload={"v": 1, "lead_id": lead.id, "email": lead.email},
        )
        lead.delete()
