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


def company_match(
    *, tenant_id: int, name: str = "", corporate_number: str = "", domain: str = "", email: str = ""
) -> Company | None:
    """The existing company these keys point to, or None (at most three queries)."""
    number = _clean_corporate_number(corporate_number)
    domain = _clean_domain(domain) or company_domain_from_email((email or "").lower())
    name_key = normalize_company_name(name or "")
    with tenant_scope(tenant_id):
        if number:
            company = Company.objects.filter(corporate_number=number).first()
            if company is not None:
                return company
        if domain:
            company = Company.objects.filter(domain=domain).order_by("id").first()
            if company is not None:
                return company
        if name_key:
            return Company.objects.filter(name_key=name_key).order_by("id").first()
    return None


def company_match_or_create(
    *,
    tenant_id: int,
    name: str = "",
    corporate_number: str = "",
    domain: str = "",
    email: str = "",
    defaults: dict[str, Any] | None = None,
) -> Company | None:
    """The lead's company: matched by corporate number, then domain (not free-mail),
    then normalised name; created when nothing matches and a name is known. Empty
    fields of a matched company are filled from what is given (never overwritten).
    None when there is nothing to match on. Raises ValidationError on a bad 法人番号."""
    number = _clean_corporate_number(corporate_number)
    clean_domain = _clean_domain(domain) or company_domain_from_email((email or "").lower())
    name = fold(name or "")
    defaults = {key: value for key, value in (defaults or {}).items() if value}
    with tenant_scope(tenant_id):
        company = company_match(
            tenant_id=tenant_id, name=name, corporate_number=number, domain=clean_domain
        )
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
            name_key=normalize_company_name(name),
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
