"""Celery tasks of accounts, run eagerly in-process (tests/test_celery_worker.py runs
them through a real worker): tenant scope, idempotency, the beat schedule."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import Invitation, Role
from accounts.services import SYSTEM, invitation_create, invitation_revoke
from accounts.tasks import expire_invitations, send_invitation_email, tenant_probe, tenant_task
from accounts.tenancy import current_tenant_id, tenant_scope, unscoped
from config.celery import app

pytestmark = pytest.mark.django_db


@tenant_task(bind=True, name="accounts.tests.bound_tenant_task")
def bound_tenant_task(self, tenant_id: int) -> tuple[str, int]:
    return self.name, current_tenant_id()


@tenant_task
def bare_tenant_task(tenant_id: int) -> int:
    return current_tenant_id()


def test_every_beat_entry_names_a_registered_task():
    app.loader.import_default_modules()  # what the worker does at start: autodiscovery
    schedule = app.conf.beat_schedule
    assert schedule
    unknown = {name: e["task"] for name, e in schedule.items() if e["task"] not in app.tasks}
    assert unknown == {}


def test_tenant_task_runs_in_the_tenant_scope(world_a, world_b):
    result = tenant_probe.delay(world_b.tenant.id).get()
    assert result == {
        "worker": None,
        "tenant_id": world_b.tenant.id,
        "db_tenant_id": str(world_b.tenant.id),
        "db_role": "ryorin_app",
        "visible_member_tenants": [world_b.tenant.id],
        "db_visible_member_tenants": [world_b.tenant.id],
    }


def test_tenant_task_bare_and_bound_forms(world_a):
    assert bare_tenant_task.delay(world_a.tenant.id).get() == world_a.tenant.id
    assert bound_tenant_task.delay(world_a.tenant.id).get() == (
        "accounts.tests.bound_tenant_task",
        world_a.tenant.id,
    )


@pytest.mark.parametrize("bad", ["1", None, True, 1.0])
def test_tenant_task_refuses_anything_but_an_int_tenant_id(world_a, bad):
    with pytest.raises(TypeError):
        tenant_probe.delay(bad).get()


def _invite(world, email: str) -> Invitation:
    return invitation_create(
        tenant_id=world.tenant.id, email=email, role=Role.MARKETING, origin=SYSTEM
    ).invitation


def _age(invitation: Invitation, days: int = 1) -> None:
    with unscoped(reason="test: age an invitation"):
        Invitation.objects.filter(pk=invitation.pk).update(
            expires_at=timezone.now() - timedelta(days=days)
        )


def _revoked_at(invitation: Invitation):
    with tenant_scope(invitation.tenant_id):
        return Invitation.objects.get(pk=invitation.pk).revoked_at


def test_expire_invitations_across_two_tenants(world_a, world_b):
    expired_a, expired_b = _invite(world_a, "old-a@example.com"), _invite(world_b, "old-b@ex.com")
    fresh_a, fresh_b = _invite(world_a, "new-a@example.com"), _invite(world_b, "new-b@ex.com")
    _age(expired_a)
    _age(expired_b)
    revoked_earlier = _invite(world_b, "revoked@example.com")
    with tenant_scope(world_b.tenant.id):
        invitation_revoke(invitation=revoked_earlier, origin=SYSTEM)
    first_revocation = _revoked_at(revoked_earlier)
    _age(revoked_earlier)

    assert expire_invitations.delay().get() == 2
    assert _revoked_at(expired_a) is not None
    assert _revoked_at(expired_b) is not None
    assert _revoked_at(fresh_a) is None
    assert _revoked_at(fresh_b) is None
    assert _revoked_at(revoked_earlier) == first_revocation
    # Idempotent: a second run finds nothing more to do and moves no timestamp.
    stamped = _revoked_at(expired_a)
    assert expire_invitations.delay().get() == 0
    assert _revoked_at(expired_a) == stamped


def test_send_invitation_email_sends_once(world_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        issued = invitation_create(
            tenant_id=world_a.tenant.id, email="once@example.com", role=Role.ADMIN, origin=SYSTEM
        )
    assert len(callbacks) == 1  # queued after commit, not during the transaction
    assert len(mail.outbox) == 1
    assert issued.token in mail.outbox[0].body
    with tenant_scope(world_a.tenant.id):
        sent_at = Invitation.objects.get(pk=issued.invitation.pk).sent_at
    assert sent_at is not None

    args = (world_a.tenant.id, issued.invitation.id, issued.token)
    assert send_invitation_email.delay(*args).get() is False
    assert send_invitation_email.delay(*args).get() is False
    assert len(mail.outbox) == 1
    with tenant_scope(world_a.tenant.id):
        assert Invitation.objects.get(pk=issued.invitation.pk).sent_at == sent_at


def test_send_invitation_email_skips_other_tenants_and_revoked(world_a, world_b):
    issued = invitation_create(
        tenant_id=world_a.tenant.id, email="skip@example.com", role=Role.ADMIN, origin=SYSTEM
    )  # on_commit never fires inside the test's transaction: nothing sent yet
    # Queued for the wrong tenant, the invitation is invisible: nothing is sent.
    wrong = (world_b.tenant.id, issued.invitation.id, issued.token)
    assert send_invitation_email.delay(*wrong).get() is False
    with tenant_scope(world_a.tenant.id):
        invitation_revoke(invitation=issued.invitation, origin=SYSTEM)
    right = (world_a.tenant.id, issued.invitation.id, issued.token)
    assert send_invitation_email.delay(*right).get() is False
    assert mail.outbox == []
