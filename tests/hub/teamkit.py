"""The team of the end-to-end hub tests: a loopback fake Fireworks, the hub with the byok
service (hubkit.RunningHub), and "Team fine-tune" added by ana once the service has made her org
admin; plus request helpers that keep every body they saw, for the leak checks."""
from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import httpx

import byok_nb
from byok_nb.testing import FakeOpenAIProvider

from .conftest import run_hub
from .hubkit import ADMIN, RunningHub

ORG = PROJECT = "default"
PLANTED = "fw_" + "PlantedHubTeamKey" + "Z9k3" * 4     # distinctive: any leak is unmistakable
SLUG, NAME = "team-fine-tune", "Team fine-tune"


def echo(request) -> str:
    """The fake's reply: the last user message, so a test sees its own words come back."""
    return "echo: " + str(request.json["messages"][-1]["content"])


@dataclass
class Team:
    hub: RunningHub
    fake: FakeOpenAIProvider
    registry_url: str
    master_key: str
    seen: list[str] = field(default_factory=list)   # every page and response body a test saw

    def registry(self):
        return byok_nb.open_registry(self.registry_url, master_key=self.master_key)

    def get(self, path: str, token: str | None, **kw) -> httpx.Response:
        return self._keep(httpx.get(self.hub.service_url + path, headers=_bearer(token), timeout=60, **kw))

    def post(self, path: str, token: str | None, body, **kw) -> httpx.Response:
        return self._keep(httpx.post(self.hub.service_url + path, headers=_bearer(token), json=body,
                                     timeout=60, **kw))

    def _keep(self, r: httpx.Response) -> httpx.Response:
        self.seen.append(f"{r.status_code} {r.headers}\n{r.text}")
        return r

    def run(self, user: str, code: str) -> dict:
        """Run ``code`` in ``user``'s server (spawned when needed); it prints one JSON line."""
        self.hub.spawn(user)
        out = self.hub.run_code(user, textwrap.dedent(code))
        self.seen.append(out)
        return json.loads(out.strip().splitlines()[-1])


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def start_team(base: Path, registry_url: str, master_key: str):
    """A fake Fireworks, the hub with the service, and ana's model added once the service has
    made her org admin. Yields a :class:`Team`; the hub's stop checks no process is left."""
    with FakeOpenAIProvider("fireworks", api_key=PLANTED, reply=echo) as fake:
        hub = RunningHub(base, registry_url=registry_url, master_key=master_key, org=ORG, project=PROJECT,
                         env={"BYOK_NB_FIREWORKS_BASE_URL": fake.base_url})
        for running in run_hub(hub):
            team = Team(hub=running, fake=fake, registry_url=registry_url, master_key=master_key)
            with team.registry() as reg:
                reg.session(ORG, ADMIN).add_model(provider="fireworks", api_key=PLANTED, slug=SLUG,
                                                  provider_model_id="accounts/acme/models/ft-hub",
                                                  display_name=NAME, test=False)
            yield team
