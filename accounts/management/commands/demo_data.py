"""Load demo data: an agency with two clients, a direct client, people in every role.

Idempotent: running it again changes nothing. Later apps add their own demo data
through the `demo_data_loaders` hook below.
"""

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import APIKey, Membership, Role, Tenant, User
from accounts.services import SYSTEM, agency_assignment_grant, api_key_create, tenant_create
from accounts.tenancy import tenant_scope

DEMO_PASSWORD = "ryorin-demo-2026"  # noqa: S105 (public on purpose: demo accounts only)

PEOPLE = [
    # email, name, language
    ("owner@demo.ryorin.jp", "山田 花子", "ja"),
    ("marketing@demo.ryorin.jp", "佐藤 健", "ja"),
    ("inside@demo.ryorin.jp", "鈴木 美咲", "ja"),
    ("field@demo.ryorin.jp", "高橋 翔", "ja"),
    ("viewer@demo.ryorin.jp", "Emma Clark", "en"),
    ("agency@demo.ryorin.jp", "田中 誠", "ja"),
    ("planner@demo.ryorin.jp", "伊藤 彩", "ja"),
]


class Command(BaseCommand):
    help = "Create demo tenants and users (idempotent)."

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        users = {}
        for email, name, language in PEOPLE:
            user, created = User.objects.get_or_create(
                email=email, defaults={"full_name": name, "language": language}
            )
            if created:
                user.set_password(DEMO_PASSWORD)
                user.save(update_fields=["password"])
            users[email.split("@")[0]] = user

        ryorin = self._tenant("両輪商事株式会社", "ryorin-shoji", users["owner"])
        for key, role in [
            ("marketing", Role.MARKETING),
            ("inside", Role.INSIDE_SALES),
            ("field", Role.FIELD_SALES),
            ("viewer", Role.READ_ONLY),
        ]:
            with tenant_scope(ryorin.id):
                Membership.objects.get_or_create(
                    tenant=ryorin, user=users[key], defaults={"role": role}
                )

        agency = self._tenant(
            "ネクストマーケティング合同会社",
            "next-marketing",
            users["agency"],
            kind=Tenant.Kind.AGENCY,
        )
        with tenant_scope(agency.id):
            Membership.objects.get_or_create(
                tenant=agency, user=users["planner"], defaults={"role": Role.MARKETING}
            )
        client_one = self._tenant(
            "さくらソフトウェア株式会社", "sakura-software", users["agency"], managed_by=agency
        )
        self._tenant("Blue Harbor Trading", "blue-harbor", users["agency"], managed_by=agency)
        agency_assignment_grant(
            client=client_one, user=users["planner"], role=Role.MARKETING, origin=SYSTEM
        )

        with tenant_scope(ryorin.id):
            has_key = APIKey.objects.filter(name="Demo integration").exists()
        raw_key = None
        if not has_key:
            raw_key = api_key_create(
                tenant_id=ryorin.id,
                name="Demo integration",
                scope=APIKey.Scope.WRITE,
                role=Role.MARKETING,
                origin=SYSTEM,
            ).raw_key

        for loader in demo_data_loaders:
            loader(self.stdout)

        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        self.stdout.write(f"  Log in as owner@demo.ryorin.jp / {DEMO_PASSWORD}")
        self.stdout.write(
            "  (also marketing@, inside@, field@, viewer@, agency@, planner@demo.ryorin.jp)"
        )
        if raw_key:
            self.stdout.write(f"  Demo API key for 両輪商事 (shown once): {raw_key}")

    def _tenant(self, name: str, slug: str, owner: User, **kwargs) -> Tenant:
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            tenant = tenant_create(name=name, slug=slug, owner=owner, origin=SYSTEM, **kwargs)
        return tenant


# Later apps append callables taking the output stream, to add their demo rows.
demo_data_loaders: list = []
