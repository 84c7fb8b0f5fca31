"""Fixtures of the pipeline tests: an inside-sales team in tenant A."""

from dataclasses import dataclass

import pytest

from accounts.models import Role, User
from pipeline.models import Team
from pipeline.tests.factories import TeamFactory, TeamMemberFactory


@dataclass
class Sales:
    team: Team
    manager: User
    reps: list[User]


@pytest.fixture
def sales(world_a) -> Sales:
    manager = world_a.member(Role.INSIDE_SALES, user__full_name="部長 花子")
    reps = [world_a.member(Role.INSIDE_SALES, user__full_name=f"営業 {n}") for n in range(2)]
    team = TeamFactory(tenant=world_a.tenant, name="IS", manager=manager)
    for rep in reps:
        TeamMemberFactory(tenant=world_a.tenant, team=team, user=rep)
    return Sales(team=team, manager=manager, reps=reps)
