"""The merge-field renderer of email templates: tenant-written text, so it is not
the Django template engine. It knows one construct,

    {{ lead.family_name|default:"ご担当者" }}

a dotted path looked up in a dict of plain strings (merge_context builds it: lead,
company, owner, tenant, links), then filters from a fixed list. There are no tags,
no attribute access, no calls, no indexing: a path names a key of a dict or nothing.
A missing or empty value gives the template's default (or nothing). In HTML bodies
values are escaped; `{{` without a valid field is a syntax error when the template
is saved, never output as is.
"""

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape

from django.utils.translation import gettext as _

MAX_TEMPLATE_CHARS = 200_000

_FIELD = re.compile(r"{{(.*?)}}", re.DOTALL)
_PATH = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*(?:\.[a-z][a-z0-9]*(?:_[a-z0-9]+)*){0,2}$")
_FILTER = re.compile(r'^([a-z_]+)(?::"([^"\\]{0,200})")?$')
FILTERS = {
    "default": lambda value, arg: value if value else arg,
    "upper": lambda value, arg: value.upper(),
    "lower": lambda value, arg: value.lower(),
}
FILTERS_WITH_ARGUMENT = frozenset({"default"})


class TemplateSyntaxError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Field:
    path: tuple[str, ...]
    filters: tuple[tuple[str, str], ...]


def _split_filters(source: str) -> list[str]:
    # "|" inside a quoted argument is text, not a filter separator.
    parts, current, quoted = [], [], False
    for char in source:
        if char == '"':
            quoted = not quoted
        if char == "|" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _parse_field(source: str) -> Field:
    parts = [part.strip() for part in _split_filters(source.strip())]
    path = parts[0]
    if not _PATH.match(path):
        raise TemplateSyntaxError(_("Not a merge field: {{ %(field)s }}.") % {"field": path})
    filters = []
    for part in parts[1:]:
        match = _FILTER.match(part)
        if not match or match.group(1) not in FILTERS:
            raise TemplateSyntaxError(_("Not a filter: %(filter)s.") % {"filter": part})
        name, argument = match.group(1), match.group(2)
        if (argument is not None) != (name in FILTERS_WITH_ARGUMENT):
            raise TemplateSyntaxError(_("Not a filter: %(filter)s.") % {"filter": part})
        filters.append((name, argument or ""))
    return Field(path=tuple(path.split(".")), filters=tuple(filters))


def parse(source: str) -> list[str | Field]:
    """Text and fields, in order; raises TemplateSyntaxError."""
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateSyntaxError(_("The template is too long."))
    pieces: list[str | Field] = []
    position = 0
    for match in _FIELD.finditer(source):
        pieces.append(source[position : match.start()])
        pieces.append(_parse_field(match.group(1)))
        position = match.end()
    pieces.append(source[position:])
    for piece in pieces:
        if isinstance(piece, str) and any(mark in piece for mark in ("{{", "}}", "{%", "%}")):
            raise TemplateSyntaxError(_("Unclosed or stray braces: use {{ field }} only."))
    return [piece for piece in pieces if piece != ""]


def _lookup(context: Mapping, path: tuple[str, ...]) -> str:
    value: object = context
    for key in path:
        # Only plain dicts are walked, only str values are output: nothing reaches an
        # object's attributes or methods, whatever the context holds.
        if type(value) is not dict:
            return ""
        value = value.get(key)
    return value if type(value) is str else ""


@functools.lru_cache(maxsize=128)
def _parsed(source: str) -> tuple[str | Field, ...]:
    # A dispatch batch renders the same few templates for hundreds of leads.
    return tuple(parse(source))


def render(source: str, context: Mapping, *, html: bool = False) -> str:
    """Render a template against a dict of dicts of strings."""
    out = []
    for piece in _parsed(source):
        if isinstance(piece, str):
            out.append(piece)
            continue
        value = _lookup(context, piece.path)
        for name, argument in piece.filters:
            value = FILTERS[name](value, argument)
        out.append(escape(value) if html else value)
    return "".join(out)


LEAD_FIELDS = (
    "email",
    "family_name",
    "given_name",
    "family_name_kana",
    "given_name_kana",
    "job_title",
    "department",
    "phone",
)
COMPANY_FIELDS = ("name", "domain", "industry")


def merge_context(lead, *, tenant, sender=None, links: Mapping[str, str] | None = None) -> dict:
    """The only data a template sees: dicts of plain strings copied from the lead, its
    company and owner, the tenant and the sender, plus the mail's links. Custom fields
    come as lead.custom.<key> (text values only)."""

    def text(value) -> str:
        return value if isinstance(value, str) else ("" if value is None else str(value))

    lead_values = {name: text(getattr(lead, name, "")) for name in LEAD_FIELDS}
    custom = lead.custom_fields if isinstance(lead.custom_fields, dict) else {}
    lead_values["custom"] = {
        key: text(value)
        for key, value in custom.items()
        if isinstance(key, str) and isinstance(value, str | int | float)
    }
    company = lead.company if lead.company_id else None
    owner = lead.owner if lead.owner_id else None
    return {
        "lead": lead_values,
        "company": {name: text(getattr(company, name, "")) for name in COMPANY_FIELDS},
        "owner": {
            "name": text(owner.get_full_name()) if owner else "",
            "email": text(owner.email) if owner else "",
        },
        "tenant": {"name": text(tenant.name)},
        "sender": {
            "name": text(sender.from_name) if sender else "",
            "email": text(sender.from_email) if sender else "",
            "address": text(sender.postal_address) if sender else "",
        },
        "links": {key: text(value) for key, value in (links or {}).items()},
    }
