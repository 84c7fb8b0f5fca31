"""Tags: created on first use, attached to leads set-based."""

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from accounts.services import Origin, audit_record
from accounts.tenancy import tenant_scope
from leads.models import LeadTag, Tag
from leads.normalize import fold

MAX_TAG_LENGTH = Tag._meta.get_field("name").max_length


def tag_names_clean(names: Iterable[str] | str | None) -> list[str]:
    """Width-folded, de-duplicated tag names; a string is split on commas.
    Raises ValidationError on the `tags` field."""
    if names is None:
        return []
    if isinstance(names, str):
        names = names.split(",")
    cleaned: list[str] = []
    for name in names:
        if not isinstance(name, str):
            raise ValidationError({"tags": [_("Tags are a list of names.")]})
        value = fold(name)
        if not value:
            continue
        if len(value) > MAX_TAG_LENGTH:
            raise ValidationError(
                {"tags": [_("A tag has at most %(n)d characters.") % {"n": MAX_TAG_LENGTH}]}
            )
        cleaned.append(value)
    return list(dict.fromkeys(cleaned))


def tags_get_or_create(*, tenant_id: int, names: list[str]) -> list[Tag]:
    """The tags called `names`, creating the missing ones (race-safe: ON CONFLICT)."""
    if not names:
        return []
    with tenant_scope(tenant_id):
        Tag.objects.bulk_create(
            [Tag(tenant_id=tenant_id, name=name) for name in names], ignore_conflicts=True
        )
        by_name = {tag.name: tag for tag in Tag.objects.filter(name__in=names)}
    return [by_name[name] for name in names]


def lead_tags_add(*, tenant_id: int, lead_ids: list[int], names: list[str]) -> int:
    """Tag many leads at once (bulk action, upsert): one statement; returns the number
    of names applied."""
    tags = tags_get_or_create(tenant_id=tenant_id, names=tag_names_clean(names))
    if not tags or not lead_ids:
        return 0
    with tenant_scope(tenant_id):
        LeadTag.objects.bulk_create(
            [
                LeadTag(tenant_id=tenant_id, lead_id=lead_id, tag_id=tag.id)
                for lead_id in lead_ids
                for tag in tags
            ],
            ignore_conflicts=True,
        )
    return len(tags)


def lead_tags_remove(*, tenant_id: int, lead_ids: list[int], names: list[str]) -> int:
    """Untag many leads; returns the number of links removed."""
    with tenant_scope(tenant_id):
        deleted, _by_model = LeadTag.objects.filter(
            lead_id__in=lead_ids, tag__name__in=tag_names_clean(names)
        ).delete()
    return deleted


def lead_tags_set(*, tenant_id: int, lead_id: int, names: list[str]) -> list[Tag]:
    """Make the lead's tags exactly `names`."""
    tags = tags_get_or_create(tenant_id=tenant_id, names=tag_names_clean(names))
    with tenant_scope(tenant_id):
        LeadTag.objects.filter(lead_id=lead_id).exclude(tag__in=tags).delete()
        LeadTag.objects.bulk_create(
            [LeadTag(tenant_id=tenant_id, lead_id=lead_id, tag_id=tag.id) for tag in tags],
            ignore_conflicts=True,
        )
    return tags


def tag_create(*, tenant_id: int, name: str, origin: Origin) -> Tag:
    names = tag_names_clean([name])
    if not names:
        raise ValidationError({"name": [_("This field is required.")]})
    with tenant_scope(tenant_id):
        if Tag.objects.filter(name=names[0]).exists():
            raise ValidationError({"name": [_("A tag with this name exists.")]})
        return tags_get_or_create(tenant_id=tenant_id, names=names)[0]


def tag_rename(*, tag: Tag, name: str, origin: Origin) -> Tag:
    names = tag_names_clean([name])
    if not names:
        raise ValidationError({"name": [_("This field is required.")]})
    with tenant_scope(tag.tenant_id):
        if Tag.objects.filter(name=names[0]).exclude(pk=tag.pk).exists():
            raise ValidationError({"name": [_("A tag with this name exists.")]})
        tag.name = names[0]
        tag.save(update_fields=["name"])
    return tag


def tag_delete(*, tag: Tag, origin: Origin) -> None:
    """Removes the tag from every lead."""
    with tenant_scope(tag.tenant_id):
        audit_record(tenant_id=tag.tenant_id, origin=origin, action="tag.deleted", target=tag)
        tag.delete()
