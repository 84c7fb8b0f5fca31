"""Companies (法人): matching a lead to its organisation, and company edits.

Match order (strongest first): the corporate number (法人番号); then the domain
(the one given, or the email's — never a free-mail provider's); then the normalised
name key (legal-form words, width, case and punctuation folded). Imports follow the
same order set-based.
"""

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.services import Origin, audit_record
from accounts.tenancy import tenant_scope
from leads.models import Company
from leads.normalize import (
    FREE_MAIL_DOMAINS,
    NormalizationError,
    company_domain_from_email,
    fold,
    normalize_company_name,
    normalize_corporate_number,
    normalize_domain,
)

COMPANY_FIELDS = (
    "name",
    "corporate_number",
    "domain",
    "industry",
    "size_band",
    "revenue_band",
    "prefecture",
    "address",
)


def _clean_corporate_number(raw: str) -> str:
    try:
        return normalize_corporate_number(raw or "")
    except NormalizationError as exc:
        raise ValidationError({"corporate_number": [str(exc)]}) from exc


def _clean_domain(raw: str) -> str:
    domain = normalize_domain(raw or "")
    return "" if domain in FREE_MAIL_DOMAINS else domain


def company_match_keys(
    *, name: str = "", corporate_number: str = "", domain: str = "", email: str = ""
) -> tuple[str, str, str]:
    """The keys a company is matched on, strongest first: (法人番号, domain, name key).
    The domain is the one given, else the email's (never a free-mail provider's).
    Raises ValidationError on a bad 法人番号."""
    number = _clean_corporate_number(corporate_number)
    domain = _clean_domain(domain) or company_domain_from_email((email or "").lower())
    return number, domain, normalize_company_name(name or "")


def company_match_sql(tenant_id: int, keys: tuple[str, str, str]) -> tuple[str, list] | None:
    """The best match of `keys` (company_match_keys) as one SELECT of the company's row:
    the 法人番号's company, else the oldest of the domain's, else the oldest of the name
    key's. None when every key is empty. company_match runs it; lead_upsert embeds it
    in its lookup statement."""
    arms = [
        (column, value)
        for column, value in zip(("corporate_number", "domain", "name_key"), keys, strict=True)
        if value
    ]
    if not arms:
        return None
    values = [value for _column, value in arms]
    ranks = " ".join(f"WHEN {column} = %s THEN {rank}" for rank, (column, _v) in enumerate(arms))
    return (
        f"SELECT * FROM {Company._meta.db_table} WHERE tenant_id = %s"
        f" AND ({' OR '.join(f'{column} = %s' for column, _v in arms)})"
        f" ORDER BY CASE {ranks} ELSE {len(arms)} END, id LIMIT 1",
        [tenant_id, *values, *values],
    )


def _match(tenant_id: int, keys: tuple[str, str, str]) -> Company | None:
    query = company_match_sql(tenant_id, keys)
    return next(iter(Company.objects.raw(*query)), None) if query is not None else None


def company_match(
    *, tenant_id: int, name: str = "", corporate_number: str = "", domain: str = "", email: str = ""
) -> Company | None:
    """The existing company these keys point to, or None (one query)."""
    keys = company_match_keys(
        name=name, corporate_number=corporate_number, domain=domain, email=email
    )
    with tenant_scope(tenant_id, savepoint=False):  # one read
        return _match(tenant_id, keys)


#: company_match_or_create(matched=...) not given: it looks the company up itself.
NOT_LOOKED_UP: Any = object()


def company_match_or_create(
    *,
    tenant_id: int,
    name: str = "",
    corporate_number: str = "",
    domain: str = "",
    email: str = "",
    defaults: dict[str, Any] | None = None,
    matched: Company | None = NOT_LOOKED_UP,
) -> Company | None:
    """The lead's company: matched by corporate number, then domain (not free-mail),
    then normalised name; created when nothing matches and a name is known. Empty
    fields of a matched company are filled from what is given (never overwritten).
    None when there is nothing to match on. Raises ValidationError on a bad 法人番号
    (before writing anything).

    matched: the result of company_match_sql for the same keys, when the caller looked
    it up already (lead_upsert, in its one lookup statement)."""
    number, clean_domain, name_key = company_match_keys(
        name=name, corporate_number=corporate_number, domain=domain, email=email
    )
    name = fold(name or "")
    defaults = {key: value for key, value in (defaults or {}).items() if value}
    # No savepoint of our own: nothing is written before the last check can fail, and
    # each write that may conflict has its own.
    with tenant_scope(tenant_id, savepoint=False):
        company = matched
        if company is NOT_LOOKED_UP:
            company = _match(tenant_id, (number, clean_domain, name_key))
        if company is not None:
            _fill_empty(
                company, name=name, corporate_number=number, domain=clean_domain, **defaults
            )
            return company
        if not name:
            return None
        company = Company(
            tenant_id=tenant_id,
            name=name,
            name_key=name_key,
            corporate_number=number,
            domain=clean_domain,
            **defaults,
        )
        try:
            with transaction.atomic():
                company.save()
        except IntegrityError:
            # Another request created the same 法人番号 a moment ago: use theirs.
            return Company.objects.get(corporate_number=number)
        return company


def _fill_empty(company: Company, **values: Any) -> None:
    changed = []
    for field, value in values.items():
        if value and not getattr(company, field):
            setattr(company, field, value)
            changed.append(field)
    if "name" in changed:
        company.name_key = normalize_company_name(company.name)
        changed.append("name_key")
    if not changed:
        return
    company.updated_at = timezone.now()
    try:
        with transaction.atomic():
            company.save(update_fields=[*changed, "updated_at"])
    except IntegrityError:
        # The 法人番号 belongs to another company row: leave this one as it was.
        company.refresh_from_db()


def _company_clean(company: Company) -> None:
    company.name = fold(company.name)
    company.name_key = normalize_company_name(company.name)
    company.corporate_number = _clean_corporate_number(company.corporate_number)
    company.domain = normalize_domain(company.domain or "")
    company.full_clean(exclude=["tenant"], validate_constraints=False)
    if (
        company.corporate_number
        and Company.objects.filter(corporate_number=company.corporate_number)
        .exclude(pk=company.pk)
        .exists()
    ):
        raise ValidationError(
            {"corporate_number": [_("A company with this corporate number exists.")]}
        )


def company_create(*, tenant_id: int, origin: Origin, **fields: Any) -> Company:
    with tenant_scope(tenant_id):
        company = Company(tenant_id=tenant_id, **fields)
        _company_clean(company)
        company.save()
        return company


def company_update(*, company: Company, origin: Origin, **fields: Any) -> Company:
    with tenant_scope(company.tenant_id):
        for field, value in fields.items():
            setattr(company, field, value)
        _company_clean(company)
        company.updated_at = timezone.now()
        company.save()
        return company


def company_delete(*, company: Company, origin: Origin) -> None:
    """Its leads stay, without a company."""
    with tenant_scope(company.tenant_id):
        audit_record(
            tenant_id=company.tenant_id, origin=origin, action="company.deleted", target=company
        )
        company.delete()
