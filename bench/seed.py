"""Seed data of the API benchmark: several tenants, so row-level security has rows of
other tenants to filter out, each with members, API keys and an audit history.

The benchmark owns its database (see bench.api_stack.bench_database_url): every run
empties the accounts tables and seeds them again, so each run starts from the same
state whatever the writes of the previous run did.
"""

from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.hashers import make_password
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import APIKey, AuditLog, Membership, Role, Tenant, User
from accounts.services import SYSTEM, api_key_create
from accounts.tenancy import tenant_scope

MEMBER_ROLES = [Role.MARKETING, Role.INSIDE_SALES, Role.FIELD_SALES, Role.READ_ONLY, Role.ADMIN]


@dataclass(frozen=True)
class Seeded:
    tenant_id: int
    tenant_slug: str
    api_key: str  # raw write key (role admin) of the measured tenant
    session_cookie: str  # session of the measured tenant's owner
    writable_member_ids: list[int]  # non-owner members whose role the write flips


def _truncate() -> None:
    tables = ["accounts_tenant", "accounts_user", "django_session"]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


def _session_for(user: User) -> str:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def analyze() -> None:
    """Fresh planner statistics, as a database that has been running would have."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


@transaction.atomic
def seed(*, tenants: int = 20, members: int = 50, keys: int = 3, audit: int = 200) -> Seeded:
    """Empty the accounts tables and seed `tenants` tenants; the first one is measured."""
    _truncate()
    now = timezone.now()
    tenant_rows = Tenant.objects.bulk_create(
        Tenant(slug=f"bench-{t:02d}", name=f"ベンチ株式会社 {t:02d}") for t in range(tenants)
    )
    password = make_password(None)  # unusable: these people log in through the seeded session
    users = User.objects.bulk_create(
        User(
            email=f"member{t:02d}-{i:03d}@bench.example",
            full_name=f"ベンチ 太郎 {t:02d}-{i:03d}",
            password=password,
        )
        for t in range(tenants)
        for i in range(members)
    )
    for t, tenant in enumerate(tenant_rows):
        tenant_users = users[t * members : (t + 1) * members]
        with tenant_scope(tenant.id):
            Membership.objects.bulk_create(
                Membership(
                    tenant=tenant,
                    user=user,
                    role=Role.OWNER if i == 0 else MEMBER_ROLES[i % len(MEMBER_ROLES)],
                    created_at=now - timedelta(minutes=i),
                )
                for i, user in enumerate(tenant_users)
            )
            AuditLog.objects.bulk_create(
                AuditLog(
                    tenant=tenant,
                    actor=tenant_users[i % members],
                    action="membership.role_changed",
                    target_type="accounts.membership",
                    target_id=str(i),
                    metadata={"from": Role.MARKETING, "to": Role.INSIDE_SALES},
                    created_at=now - timedelta(hours=i),
                )
                for i in range(audit)
            )
        for k in range(keys):
            issued = api_key_create(
                tenant_id=tenant.id,
                name=f"bench key {k}",
                scope=APIKey.Scope.WRITE,
                role=Role.ADMIN,
                origin=SYSTEM,
            )
            if t == 0 and k == 0:
                raw_key = issued.raw_key
    target = tenant_rows[0]
    with tenant_scope(target.id):
        writable = list(
            Membership.objects.exclude(role=Role.OWNER).order_by("id").values_list("id", flat=True)
        )
    return Seeded(
        tenant_id=target.id,
        tenant_slug=target.slug,
        api_key=raw_key,
        session_cookie=_session_for(users[0]),
        writable_member_ids=writable,
    )
