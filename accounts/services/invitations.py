"""Invitations by email into a tenant; the link carries a token whose hash is stored."""

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import (
    Invitation,
    Membership,
    Role,
    User,
)
from accounts.services.audit import Origin, audit_record, sha256_hex
from accounts.services.members import require_role_grantable
from accounts.tenancy import tenant_scope, unscoped

INVITATION_LIFETIME = timedelta(days=7)


# --- Invitations -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedInvitation:
    invitation: Invitation
    token: str


@transaction.atomic
def invitation_create(*, tenant_id: int, email: str, role: str, origin: Origin) -> IssuedInvitation:
    """Invite an email address into the tenant. The mail goes out after commit."""
    from accounts.tasks import send_invitation_email

    email = User.objects.normalize_email(email).strip().lower()
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}."})
    require_role_grantable(origin, role)
    token = secrets.token_urlsafe(32)
    with tenant_scope(tenant_id):
        if Membership.objects.filter(user__email=email).exists():
            raise ValidationError({"email": "This person is already a member."})
        Invitation.objects.filter(email=email, accepted_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        invitation = Invitation(
            tenant_id=tenant_id,
            email=email,
            role=role,
            hashed_token=sha256_hex(token),
            invited_by=origin.actor,
            expires_at=timezone.now() + INVITATION_LIFETIME,
        )
        invitation.full_clean(exclude=["tenant", "invited_by", "accepted_by"])
        invitation.save()
    audit_record(
        tenant_id=tenant_id,
        origin=origin,
        action="invitation.created",
        target=invitation,
        metadata={"email": email, "role": role},
    )
    transaction.on_commit(lambda: send_invitation_email.delay(tenant_id, invitation.id, token))
    return IssuedInvitation(invitation=invitation, token=token)


def invitation_get_by_token(token: str) -> Invitation | None:
    with unscoped(reason="an invitation link names its tenant through the token"):
        return (
            Invitation.objects.select_related("tenant")
            .filter(hashed_token=sha256_hex(token))
            .first()
        )


@transaction.atomic
def invitation_accept(*, token: str, user: User, origin: Origin) -> Membership:
    """Accept an invitation as `user`, whose email must be the invited one."""
    invitation = invitation_get_by_token(token)
    if invitation is None or not invitation.is_pending:
        raise ValidationError("This invitation is invalid, expired or already used.")
    if invitation.email != user.email.lower():
        raise PermissionDenied("This invitation was sent to another email address.")
    with tenant_scope(invitation.tenant_id):
        membership, _created = Membership.objects.get_or_create(
            tenant_id=invitation.tenant_id, user=user, defaults={"role": invitation.role}
        )
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
    audit_record(
        tenant_id=invitation.tenant_id,
        origin=origin,
        action="invitation.accepted",
        target=invitation,
        metadata={"email": user.email, "role": membership.role},
    )
    return membership


@transaction.atomic
def invitation_accept_new_user(
    *, token: str, full_name: str, password: str, origin: Origin
) -> Membership:
    """Sign up the invited person and accept in one transaction: the account is created
    only together with its membership, with the invited email (the link proves it)."""
    from dataclasses import replace

    from django.contrib.auth import password_validation

    invitation = invitation_get_by_token(token)
    if invitation is None or not invitation.is_pending:
        raise ValidationError("This invitation is invalid, expired or already used.")
    if User.objects.filter(email=invitation.email).exists():
        raise ValidationError("An account with this email address already exists.")
    user = User(email=invitation.email, full_name=full_name)
    password_validation.validate_password(password, user)
    user.set_password(password)
    user.full_clean()
    user.save()
    return invitation_accept(token=token, user=user, origin=replace(origin, actor=user))


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, origin: Origin) -> None:
    if invitation.revoked_at is None and invitation.accepted_at is None:
        invitation.revoked_at = timezone.now()
        with tenant_scope(invitation.tenant_id):
            invitation.save(update_fields=["revoked_at"])
        audit_record(
            tenant_id=invitation.tenant_id,
            origin=origin,
            action="invitation.revoked",
            target=invitation,
        )
