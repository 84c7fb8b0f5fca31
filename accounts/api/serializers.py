"""Serializers of the accounts API. Output and input are separate where they differ;
input serializers only validate shapes, the services hold the rules."""

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from accounts.api.serializer_base import ModelSerializer
from accounts.models import (
    TIME_ZONE_CHOICES,
    AgencyAssignment,
    APIKey,
    AuditLog,
    Invitation,
    Membership,
    Role,
    Tenant,
    User,
)

# Roles a caller may hand out through the API; "owner" stays for memberships only.
GRANTABLE_ROLES = [(value, label) for value, label in Role.choices if value != Role.OWNER]


class UserSummarySerializer(ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "full_name"]
        read_only_fields = fields


# --- Caller ---------------------------------------------------------------------------


class TenantAccessSerializer(serializers.Serializer):
    """A tenant as the caller reaches it (used by /me/ and /tenants/)."""

    id = serializers.IntegerField()
    slug = serializers.SlugField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=Tenant.Kind.choices)
    role = serializers.ChoiceField(choices=Role.choices)
    via_agency = serializers.SlugField(allow_null=True, help_text=_("Slug of the agency."))


def access_data(tenant: Tenant, role: str, via_agency: Tenant | None) -> dict:
    return {
        "id": tenant.id,
        "slug": tenant.slug,
        "name": tenant.name,
        "kind": tenant.kind,
        "role": role,
        "via_agency": via_agency.slug if via_agency else None,
    }


class MeAPIKeySerializer(serializers.Serializer):
    name = serializers.CharField()
    prefix = serializers.CharField()
    scope = serializers.ChoiceField(choices=APIKey.Scope.choices)
    role = serializers.ChoiceField(choices=Role.choices)


class MeOutputSerializer(serializers.Serializer):
    """A person (session) or an API key; the other half is null."""

    email = serializers.EmailField(allow_null=True)
    full_name = serializers.CharField(allow_null=True)
    language = serializers.CharField(allow_null=True)
    tenants = TenantAccessSerializer(many=True)
    api_key = MeAPIKeySerializer(allow_null=True)


class MeInputSerializer(serializers.Serializer):
    full_name = serializers.CharField(max_length=150, allow_blank=True, required=False)
    language = serializers.ChoiceField(choices=settings.LANGUAGES, allow_blank=True, required=False)


class TenantCreateInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=50, required=False, allow_blank=True)
    time_zone = serializers.ChoiceField(
        choices=TIME_ZONE_CHOICES,
        required=False,
        help_text=_("Default: Asia/Tokyo for a Japanese tenant (country JP), UTC otherwise."),
    )
    language = serializers.ChoiceField(choices=settings.LANGUAGES, default="ja")
    country = serializers.CharField(max_length=2, min_length=2, default="JP")
    managed_by = serializers.SlugField(
        required=False,
        help_text=_("Slug of an agency you own or administer: the new client is managed by it."),
    )


# --- Tenant ---------------------------------------------------------------------------


class TenantSettingsOutputSerializer(ModelSerializer):
    managed_by = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)

    class Meta:
        model = Tenant
        fields = ["id", "name", "slug", "kind", "time_zone", "language", "country", "managed_by"]
        read_only_fields = fields


class TenantSettingsInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    time_zone = serializers.ChoiceField(choices=TIME_ZONE_CHOICES, required=False)
    language = serializers.ChoiceField(choices=settings.LANGUAGES, required=False)
    country = serializers.CharField(max_length=2, min_length=2, required=False)


# --- Members --------------------------------------------------------------------------


class MembershipOutputSerializer(ModelSerializer):
    user = UserSummarySerializer()

    class Meta:
        model = Membership
        fields = ["id", "user", "role", "created_at"]
        read_only_fields = fields


class MembershipInputSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


# --- Invitations ----------------------------------------------------------------------


class InvitationOutputSerializer(ModelSerializer):
    invited_by = serializers.SlugRelatedField(slug_field="email", read_only=True, allow_null=True)
    is_pending = serializers.BooleanField(read_only=True)

    class Meta:
        model = Invitation
        fields = [
            "id",
            "email",
            "role",
            "invited_by",
            "created_at",
            "expires_at",
            "sent_at",
            "accepted_at",
            "revoked_at",
            "is_pending",
        ]
        read_only_fields = fields


class InvitationInputSerializer(serializers.Serializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices)


# --- Agency assignments ---------------------------------------------------------------


class AgencyAssignmentOutputSerializer(ModelSerializer):
    user = UserSummarySerializer()
    agency = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    granted_by = serializers.SlugRelatedField(slug_field="email", read_only=True, allow_null=True)

    class Meta:
        model = AgencyAssignment
        fields = ["id", "user", "agency", "role", "granted_by", "created_at"]
        read_only_fields = fields


class AgencyAssignmentInputSerializer(serializers.Serializer):
    email = serializers.EmailField(help_text=_("Email of a member of the managing agency."))
    role = serializers.ChoiceField(choices=GRANTABLE_ROLES)


# --- API keys -------------------------------------------------------------------------


class APIKeyOutputSerializer(ModelSerializer):
    """Never carries the key or its hash."""

    created_by = serializers.SlugRelatedField(slug_field="email", read_only=True, allow_null=True)

    class Meta:
        model = APIKey
        fields = [
            "id",
            "name",
            "prefix",
            "scope",
            "role",
            "created_by",
            "created_at",
            "last_used_at",
            "revoked_at",
        ]
        read_only_fields = fields


class APIKeyCreatedSerializer(APIKeyOutputSerializer):
    key = serializers.CharField(
        read_only=True, help_text=_("The API key. Shown only in this response; store it now.")
    )

    class Meta(APIKeyOutputSerializer.Meta):
        fields = [*APIKeyOutputSerializer.Meta.fields, "key"]
        read_only_fields = fields


class APIKeyInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    scope = serializers.ChoiceField(choices=APIKey.Scope.choices, default=APIKey.Scope.READ)
    role = serializers.ChoiceField(choices=GRANTABLE_ROLES, default=Role.READ_ONLY)


# --- Audit log ------------------------------------------------------------------------


class AuditLogOutputSerializer(ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="email", read_only=True, allow_null=True)
    api_key = serializers.SlugRelatedField(slug_field="prefix", read_only=True, allow_null=True)

    class Meta:
        model = AuditLog
        fields = [
            "id",
            "created_at",
            "action",
            "actor",
            "api_key",
            "target_type",
            "target_id",
            "target_repr",
            "metadata",
            "ip_address",
        ]
        read_only_fields = fields
