"""From a file's cells to staged lead rows: the per-row validation of an import.

`RowCleaner` is built once per job from the mapping; its `clean(cells)` is the hot loop
(100,000 rows per run), so each mapped column carries a pre-bound cleaner and a slot
in a flat list, and caches catch the values that repeat down a column (company names,
prefectures). Preview and the job use the same cleaner, so the preview shows exactly
the problems the run would report.
"""

import datetime
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field

from django.utils.translation import gettext as _

from leads import normalize
from leads.imports import mapping as m
from leads.models import CustomFieldDefinition, Lead
from leads.normalize import NormalizationError

# Slots of a staged row (the staging table's columns, in order).
EMAIL, FAMILY, GIVEN, FAMILY_KANA, GIVEN_KANA, PHONE, JOB, DEPT = range(8)
COMPANY, CORPORATE_NUMBER, DOMAIN, PREFECTURE, INDUSTRY = range(8, 13)
CUSTOM, TAGS, OCCURRED_AT = 13, 14, 15
SLOTS = 16
TEXT_SLOTS = range(0, 13)

_SLOT_OF = {
    "lead.email": EMAIL,
    "lead.family_name": FAMILY,
    "lead.given_name": GIVEN,
    "lead.family_name_kana": FAMILY_KANA,
    "lead.given_name_kana": GIVEN_KANA,
    "lead.phone": PHONE,
    "lead.job_title": JOB,
    "lead.department": DEPT,
    "lead.company_name": COMPANY,
    "lead.corporate_number": CORPORATE_NUMBER,
    "lead.company_domain": DOMAIN,
    "lead.prefecture": PREFECTURE,
    "lead.industry": INDUSTRY,
}


def _max_length(model, name: str) -> int:
    return model._meta.get_field(name).max_length


_LIMITS = {
    FAMILY: _max_length(Lead, "family_name"),
    GIVEN: _max_length(Lead, "given_name"),
    FAMILY_KANA: _max_length(Lead, "family_name_kana"),
    GIVEN_KANA: _max_length(Lead, "given_name_kana"),
    JOB: _max_length(Lead, "job_title"),
    DEPT: _max_length(Lead, "department"),
    COMPANY: 255,
    INDUSTRY: 100,
}


@dataclass(slots=True)
class Problem:
    row_number: int
    column: str
    value: str
    reason: str


@dataclass
class Column:
    index: int
    name: str
    target: str
    cleaner: Callable[[str], object]
    required: bool = False


def _memo(clean: Callable[[str], object], size: int = 20_000) -> Callable[[str], object]:
    """Cache a pure cleaner per column: department, title, prefecture and company cells
    repeat down a list, and NFKC folding them once each saves most of the row's cost."""
    cache: dict[str, object] = {}

    def cached(raw: str) -> object:
        value = cache.get(raw)
        if value is None:
            value = clean(raw)
            if len(cache) < size:
                cache[raw] = value
        return value

    return cached


def _text(limit: int) -> Callable[[str], str]:
    def clean(raw: str) -> str:
        value = m.clean_text(raw)
        if len(value) > limit:
            raise NormalizationError(
                _("longer than %(limit)d characters (%(length)d)")
                % {"limit": limit, "length": len(value)}
            )
        return value

    return clean


def _split_name(raw: str) -> tuple[str, str]:
    # Japanese order, family name first: 「山田 太郎」. Without a space the whole name is
    # kept as the family name rather than guessed apart.
    value = m.clean_text(raw)
    family, _sep, given = value.partition(" ")
    return family, given.strip()


def _split_kana(raw: str) -> tuple[str, str]:
    # Readings are stored in katakana, as lead_fields_clean stores them ('やまだ' → 'ヤマダ').
    from leads.services.leads import to_katakana

    family, given = _split_name(raw)
    return to_katakana(family), to_katakana(given)


def _kana(limit: int) -> Callable[[str], str]:
    from leads.services.leads import to_katakana

    text = _text(limit)
    return lambda raw: to_katakana(text(raw))


def _custom(definition: CustomFieldDefinition) -> Callable[[str], object]:
    from leads.services.custom_fields import custom_value_clean

    def clean(raw: str) -> object:
        value: object = raw
        if definition.type == CustomFieldDefinition.Type.DATE:
            value = m.parse_date(raw).date()  # Excel serials and Japanese date forms
        try:
            return custom_value_clean(definition, value)
        except ValueError as exc:
            raise NormalizationError(str(exc)) from exc

    return clean


@dataclass
class RowCleaner:
    """Cleans one row of cells into a staged row, or the problems that keep it out."""

    header: list[str]
    mapping: dict[str, str]
    custom_fields: list[CustomFieldDefinition]
    region: str = "JP"
    timezone: str = "Asia/Tokyo"
    columns: list[Column] = field(init=False)

    def __post_init__(self) -> None:
        definitions = {d.key: d for d in self.custom_fields}
        self.tz = zoneinfo.ZoneInfo(self.timezone or "UTC")
        self.company_keys: dict[str, str] = {}
        self._dates: dict[str, str] = {}
        self.columns = []
        index_of = {name: i for i, name in enumerate(self.header)}
        for name, target in self.mapping.items():
            if not target or name not in index_of:
                continue
            cleaner, required = self._cleaner(target, definitions)
            self.columns.append(Column(index_of[name], name, target, cleaner, required))
        self.has_email = any(c.target == "lead.email" for c in self.columns)
        # The hot loop's plan: per column (index, name, cleaner, where the value goes,
        # required), so a cell costs no attribute or dict lookups beyond its cleaner.
        self._plan = [
            (c.index, c.name, c.cleaner, _SLOT_OF.get(c.target, c.target), c.required)
            for c in self.columns
        ]

    def _cleaner(self, target: str, definitions: dict) -> tuple[Callable, bool]:
        if target == "lead.email":
            return m.clean_email, False  # unique per row: nothing to cache
        if target == "lead.phone":
            return m.phone_cleaner(self.region), False
        if target == "lead.corporate_number":
            return _memo(m.clean_corporate_number), False
        if target == "lead.company_domain":
            return _memo(m.clean_domain), False
        if target == "lead.prefecture":
            return _memo(m.clean_prefecture), False
        if target == "lead.full_name":
            return _memo(_split_name), False
        if target == "lead.full_name_kana":
            return _memo(_split_kana), False
        if target in ("lead.family_name_kana", "lead.given_name_kana"):
            return _memo(_kana(_LIMITS[_SLOT_OF[target]])), False
        if target == "lead.tags":
            from leads.services.tags import tag_names_clean

            return tag_names_clean, False
        if target == "activity.occurred_at":
            return self._occurred_at, False
        if target.startswith("custom."):
            definition = definitions[target.removeprefix("custom.")]
            return _custom(definition), definition.required
        slot = _SLOT_OF[target]
        return _memo(_text(_LIMITS.get(slot, 255))), False

    def clean(self, row_number: int, cells: list[str]) -> tuple[list | None, list[Problem]]:
        """(staged row, []) or (None, problems). A row with any problem is left out whole,
        so the error report lists exactly the rows that were not imported."""
        record: list = ["", "", "", "", "", "", "", "", "", "", "", "", "", None, None, None]
        problems: list[Problem] = []
        width = len(cells)
        for index, name, cleaner, slot, required in self._plan:
            raw = cells[index] if index < width else ""
            if not raw or raw.isspace():
                if required:
                    problems.append(Problem(row_number, name, "", _("required")))
                continue
            try:
                value = cleaner(raw)
            except NormalizationError as exc:
                problems.append(Problem(row_number, name, raw[:500], str(exc)[:500]))
                continue
            except Exception as exc:  # a cleaner's ValidationError (tags) or ValueError
                reason = "; ".join(getattr(exc, "messages", None) or [str(exc)])
                problems.append(Problem(row_number, name, raw[:500], reason[:500]))
                continue
            if slot.__class__ is int:
                record[slot] = value
            elif slot == "lead.full_name":
                record[FAMILY], record[GIVEN] = value
            elif slot == "lead.full_name_kana":
                record[FAMILY_KANA], record[GIVEN_KANA] = value
            elif slot == "activity.occurred_at":
                record[OCCURRED_AT] = value
            elif slot == "lead.tags":
                record[TAGS] = (record[TAGS] or []) + value
            elif value is not None:
                if record[CUSTOM] is None:
                    record[CUSTOM] = {}
                record[CUSTOM][slot.removeprefix("custom.")] = value
        if problems:
            return None, problems
        for slot in (FAMILY, GIVEN, FAMILY_KANA, GIVEN_KANA):
            limit = _LIMITS[slot]
            if len(record[slot]) > limit:
                return None, [
                    Problem(
                        row_number,
                        _("name"),
                        record[slot][:500],
                        _("longer than %(limit)d characters") % {"limit": limit},
                    )
                ]
        if not (record[EMAIL] or record[FAMILY] or record[GIVEN]):
            column = next((c.name for c in self.columns if c.target == "lead.email"), "")
            return None, [Problem(row_number, column, "", _("no email address and no name"))]
        if not record[DOMAIN] and record[EMAIL]:
            record[DOMAIN] = normalize.company_domain_from_email(record[EMAIL])
        return record, []

    def _occurred_at(self, raw: str) -> str:
        # A list's visit dates repeat (one to three show days): parse each once.
        value = self._dates.get(raw)
        if value is None:
            moment = m.parse_date(raw)
            moment = moment if moment.tzinfo else moment.replace(tzinfo=self.tz)
            value = self._dates[raw] = moment.isoformat()
        return value

    def company_key(self, name: str) -> str:
        key = self.company_keys.get(name)
        if key is None:
            key = self.company_keys[name] = normalize.normalize_company_name(name)
        return key


def merge_into(first: list, later: list) -> None:
    """The same person twice in one file: the first row wins, later rows fill its gaps."""
    for slot in TEXT_SLOTS:
        if not first[slot] and later[slot]:
            first[slot] = later[slot]
    if later[CUSTOM]:
        first[CUSTOM] = {**later[CUSTOM], **(first[CUSTOM] or {})}
    if later[TAGS]:
        first[TAGS] = list(dict.fromkeys((first[TAGS] or []) + later[TAGS]))
    if first[OCCURRED_AT] is None:
        first[OCCURRED_AT] = later[OCCURRED_AT]


def is_blank(cells: list) -> bool:
    return not any(cell and not str(cell).isspace() for cell in cells)


def today_in(tz_name: str) -> datetime.date:
    return datetime.datetime.now(zoneinfo.ZoneInfo(tz_name or "UTC")).date()
