"""Another notebook served the same way as the admin app (``BYOK_NB_HUB_NOTEBOOK``, set by
``configure(c, notebook=...)``): what the hub benchmark uses to serve its one-button yardstick
through the same service and prefix."""
from __future__ import annotations

import pytest
from traitlets.config import Config

from byok_nb import InvalidRequest
from byok_nb.hub import configure
from byok_nb.hub.settings import HubSettings
from byok_nb.hub.voila_child import VoilaChild
from byok_nb.server.admin_app import app_notebook

PREFIX = "/services/byok/"
HUB_ENV = {"JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:10101{PREFIX}", "JUPYTERHUB_SERVICE_PREFIX": PREFIX,
           "JUPYTERHUB_API_TOKEN": "service-token", "JUPYTERHUB_CLIENT_ID": "service-byok"}


def test_h2_configure_hands_the_service_the_notebook_only_when_asked(tmp_path):
    c = Config()
    configure(c)
    assert "BYOK_NB_HUB_NOTEBOOK" not in c.JupyterHub.services[0]["environment"]
    configure(c, notebook=tmp_path / "one.ipynb")
    assert c.JupyterHub.services[0]["environment"]["BYOK_NB_HUB_NOTEBOOK"] == str(tmp_path / "one.ipynb")


def test_h2_service_serves_the_named_notebook_else_the_admin_app(tmp_path):
    notebook = tmp_path / "one.ipynb"
    notebook.write_text("{}")
    default = VoilaChild(HubSettings.from_env(HUB_ENV))
    assert default.notebook == app_notebook()
    settings = HubSettings.from_env({**HUB_ENV, "BYOK_NB_HUB_NOTEBOOK": str(notebook)})
    child = VoilaChild(settings, notebook=settings.notebook or None)
    assert child.notebook == notebook
    assert str(notebook) in child.command() and str(app_notebook()) not in child.command()


def test_h2_a_missing_notebook_is_refused_at_start(tmp_path):
    with pytest.raises(InvalidRequest, match="BYOK_NB_HUB_NOTEBOOK"):
        HubSettings.from_env({**HUB_ENV, "BYOK_NB_HUB_NOTEBOOK": str(tmp_path / "missing.ipynb")})
