"""The team deployment on PostgreSQL (marker ``postgres``): the same hub and service as
test_h5_team_hub.py with ``BYOK_NB_DATABASE_URL`` a PostgreSQL database — a member's server
chats through connect() and the OpenAI SDK, and a removed member's token stops at once."""
from __future__ import annotations

import pgkit
import pytest

import byok_nb

from .hubkit import MEMBER, OTHER
from .teamkit import ORG, PLANTED, SLUG, start_team

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def team(proxy_available, tmp_path_factory):
    try:
        pgkit.check_server()
        url = pgkit.create_database("byok_nb_hub")
    except pgkit.PostgresUnavailable as exc:
        pgkit.unavailable(exc)
    try:
        yield from start_team(tmp_path_factory.mktemp("team_hub_pg"), url, byok_nb.generate_master_key())
    finally:
        pgkit.drop_database(url)


def test_h3_h5_postgres_member_server_chats_with_connect_and_the_openai_sdk(team):
    seen = team.run(MEMBER, """
        import json, os
        import byok_nb
        from openai import OpenAI

        s = byok_nb.connect()
        reply = s.chat("team-fine-tune", "hello on postgres")
        sdk = OpenAI(base_url=os.environ["BYOK_NB_SERVICE_URL"] + "v1", api_key=os.environ["JUPYTERHUB_API_TOKEN"])
        answer = sdk.chat.completions.create(model="team-fine-tune", messages=[{"role": "user", "content": "sdk"}])
        print(json.dumps({"user": s.user, "connect": reply.text, "sdk": answer.choices[0].message.content,
                          "store_env": [k for k in os.environ if k in ("BYOK_NB_MASTER_KEY", "BYOK_NB_DATABASE_URL")]}))
    """)
    assert seen == {"user": MEMBER, "connect": "echo: hello on postgres", "sdk": "echo: sdk", "store_env": []}
    assert team.fake.last.headers["authorization"] == "Bearer " + PLANTED


def test_h1_postgres_removed_member_token_stops_at_once(team):
    token = team.hub.new_token(OTHER, "cy-pg")
    assert team.get("v1/models", token).status_code == 200
    assert SLUG in {m["id"] for m in team.get("v1/models", token).json()["data"]}
    with team.registry() as reg:
        reg.remove_member(ORG, OTHER)
    assert team.get("v1/models", token).status_code == 401
    assert team.get("v1/models", token).status_code == 401    # a second visit does not re-admit
