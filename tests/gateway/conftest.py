"""Fixtures of the gateway tests: a gateway started over the ``acme`` registry (stopped after the
test) and API tokens for a member and an admin."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from .gatewaykit import RunningGateway


@pytest.fixture
def start_gateway():
    started: list[RunningGateway] = []

    def start(registry: Any, **options: Any) -> RunningGateway:
        gw = RunningGateway(registry, **options).start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


@dataclass
class Tokens:
    member: str     # cy, contributor on project "search"
    admin: str      # ana, org admin


@pytest.fixture
def tokens(acme) -> Tokens:
    return Tokens(member=acme.admin.create_api_token("cy", "cy-laptop"),
                  admin=acme.admin.create_api_token("ana", "ana-ci"))
