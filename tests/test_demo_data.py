"""The demo data a new user starts with: on PostgreSQL (as the tests run) and on the
SQLite database `./ryorin start` uses when nothing is configured."""

import pytest
from django.core.management import call_command

from accounts.models import Tenant
from accounts.tenancy import tenant_scope
from campaigns.models import Campaign, CampaignMembership
from leads.models import Activity, CaptureForm, Lead
from tests.test_settings import run_manage


@pytest.mark.django_db
def test_demo_data_loads_once(capsys):
    call_command("demo_data")
    call_command("demo_data")  # idempotent
    tenant = Tenant.objects.get(slug="ryorin-shoji")
    with tenant_scope(tenant.id):
        assert Lead.objects.count() == 60
        assert Campaign.objects.count() == 4
        assert CampaignMembership.objects.count() == 60
        assert Activity.objects.count() > 60
        assert CaptureForm.objects.count() == 1
        assert Lead.objects.filter(company__isnull=False).count() == 60
    assert "Demo data ready." in capsys.readouterr().out


def test_demo_data_loads_on_sqlite_for_a_new_user(tmp_path):
    env = {"SQLITE_PATH": str(tmp_path / "demo.sqlite3")}
    migrate = run_manage("migrate", "--no-input", "-v0", env=env)
    assert migrate.returncode == 0, migrate.stderr
    loaded = run_manage("demo_data", env=env)
    assert loaded.returncode == 0, loaded.stderr
    assert "Demo leads: 60 leads, 4 campaigns" in loaded.stdout
