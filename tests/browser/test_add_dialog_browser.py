"""Issue 12 in a real browser: the Add Custom Model dialog and the detail page's Edit form, driven
through Chromium by their accessible names (U-10), against loopback fakes of every provider.

One test per behaviour (credentials cleared on a provider change, the outcome following the gate,
"Testing… N s", the changed-since-test notice, whitespace stripping, dropping and removing keys,
every problem at once in the page's labels, the kept draft, the live slug) and a pass of the whole
dialog per provider: fill by label, Test Connection, Save Model, the row appears.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import byok_nb
from byok_nb.server.admin_app import app_notebook
from byok_nb.testing import FakeOpenAIProvider
from byok_nb.testing.fake_providers import FakeBedrock
from byok_nb.testing.voila import VoilaServer, sandbox_env

expect = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is missing").expect

FW_KEY = "fw_" + "DialogBrowserKey" + "Z9k1" * 4
TG_KEY = "tg" + "DialogTogetherKey" + "M4p2" * 4
HF_KEY = "hf_" + "DialogHuggingKey" + "R5s3" * 4
OAI_KEY = "sk-" + "DialogOpenAIKey" + "T6u4" * 4
AWS_ID = "AKIADIALOGBROWSER001"
AWS_SECRET = "dialog/browser/secret/" + "V7w5" * 5
BEDROCK_KEY = "ABSK" + "DialogBedrockKey" + "X8y6" * 4
CHANGED = "Changed since the last test — Test Connection again to check"
EDIT_SAVE = re.compile(r"^(Save|Save Model|Save Changes)$")

# Every input of the dialog, by its seed label (U-10).
DIALOG_LABELS = (
    "Provider", "Provider Model ID", "Display Name", "Model Slug", "Max Tokens", "Supports JSON mode",
    "Supports vision / image inputs", "Supports tool use", "Supports extended reasoning",
    "Input cost/token (USD)", "Output cost/token (USD)",
)
PROVIDER_LABELS = {
    "Fireworks": ("API Key",), "Together AI": ("API Key",),
    "HuggingFace": ("API Token", "Inference Endpoint URL"),
    "OpenAI-compatible": ("Base URL", "API Key"),
    "Bedrock": ("Authentication Method", "AWS Region", "Access Key ID", "Secret Access Key"),
}


@dataclass
class Fakes:
    fireworks: FakeOpenAIProvider
    together: FakeOpenAIProvider
    hf: FakeOpenAIProvider
    open_vllm: FakeOpenAIProvider       # an endpoint that needs no key
    bedrock: FakeBedrock

    def all(self):
        return (self.fireworks, self.together, self.hf, self.open_vllm, self.bedrock)


@dataclass
class DialogApp:
    server: VoilaServer
    fakes: Fakes
    home: Path

    @property
    def url(self) -> str:
        return self.server.url

    def registry_bytes(self) -> bytes:
        return b"".join(p.read_bytes() for p in sorted(self.home.glob("registry.db*")))


def _seed(registry, fakes: Fakes) -> None:
    registry.create_org("acme")
    registry.add_member("acme", "ana", role="org_admin")
    admin = registry.session(org="acme", user="ana")
    admin.add_model(provider="openai_compatible", base_url=fakes.open_vllm.base_url, api_key=OAI_KEY,
                    provider_model_id="qwen", display_name="Keyed proxy", slug="keyed-proxy", test=False)
    admin.add_model(provider="openai_compatible", base_url=fakes.open_vllm.base_url,
                    provider_model_id="qwen", display_name="Open proxy", slug="open-proxy", test=False)


@pytest.fixture(scope="module")
def dialog_app(chromium, tmp_path_factory):
    base = tmp_path_factory.mktemp("dialog_app")
    home = base / "home"
    home.mkdir()
    master_key = byok_nb.generate_master_key()
    fakes = Fakes(fireworks=FakeOpenAIProvider("fireworks", api_key=FW_KEY),
                  together=FakeOpenAIProvider("together", api_key=TG_KEY),
                  hf=FakeOpenAIProvider("hf_tgi", api_key=HF_KEY),
                  open_vllm=FakeOpenAIProvider("openai", api_key=None),
                  bedrock=FakeBedrock(credentials={AWS_ID: AWS_SECRET}, api_keys=[BEDROCK_KEY]))
    for fake in fakes.all():
        fake.start()
    try:
        with byok_nb.open_registry(f"sqlite:///{home / 'registry.db'}", master_key=master_key) as registry:
            _seed(registry, fakes)
        env = sandbox_env(home, BYOK_NB_MASTER_KEY=master_key, BYOK_NB_USER="ana", BYOK_NB_ORG="acme",
                          BYOK_NB_FIREWORKS_BASE_URL=fakes.fireworks.base_url,
                          BYOK_NB_TOGETHER_BASE_URL=fakes.together.base_url,
                          BYOK_NB_BEDROCK_ENDPOINT_URL=fakes.bedrock.url)
        with VoilaServer(app_notebook(), env=env, log_path=base / "voila.log") as server:
            yield DialogApp(server=server, fakes=fakes, home=home)
    finally:
        for fake in fakes.all():
            fake.stop()


# -- helpers: everything by accessible name ---------------------------------------------------------
def open_dialog(app, page):
    # "commit": Voila streams the page while the kernel runs the app; on a loaded machine the
    # load event can take longer than the default timeout, the button is what matters.
    page.goto(app.url, wait_until="commit", timeout=120_000)
    add = page.get_by_role("button", name="Add Custom Model", exact=True)
    expect(add).to_be_visible(timeout=120_000)
    add.click()
    dialog = page.locator(".byok-add-dialog")
    expect(dialog).to_be_visible()
    return dialog


def field(dialog, label: str):
    return dialog.get_by_label(label, exact=True)


def choose_provider(dialog, label: str) -> None:
    field(dialog, "Provider").select_option(label=label)
    # The provider's own inputs appear (the kernel answered the change).
    first = PROVIDER_LABELS[label][0]
    expect(field(dialog, first)).to_be_visible()


def button(scope, name: str):
    return scope.get_by_role("button", name=name, exact=True)


def alerts(dialog):
    return dialog.get_by_role("alert")


def fill_common(dialog, model_id: str, display_name: str) -> None:
    field(dialog, "Provider Model ID").fill(model_id)
    field(dialog, "Display Name").fill(display_name)


def test_passes(dialog, fake=None) -> None:
    """Click Test Connection and wait for "Connection test passed.". With ``fake``, first wait
    until the fake got the new request: an earlier pass may still be on screen (an ungated change
    keeps it, with the changed-since-test notice)."""
    before = requests_to(fake) if fake is not None else 0
    button(dialog, "Test Connection").click()
    if fake is not None:
        deadline = time.monotonic() + 60
        while requests_to(fake) == before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert requests_to(fake) > before, "the test request never reached the provider"
    expect(dialog.get_by_role("status").filter(has_text="Connection test passed.")).to_be_visible(timeout=60_000)
    expect(button(dialog, "Test Connection")).to_be_enabled(timeout=60_000)


test_passes.__test__ = False   # a helper, not a test


def open_detail(page, display_name: str):
    """Open a custom model's detail page: its row (U-10) or, where rows are not yet clickable,
    its open button."""
    detail = page.locator(".byok-detail")
    row = page.get_by_role("row", name=re.compile(re.escape(display_name)))
    if row.count():
        row.first.click()
        try:
            detail.wait_for(state="visible", timeout=5_000)
            return detail
        except Exception:  # noqa: BLE001 — a table row that does not open yet: use its button
            pass
    page.get_by_role("button", name=display_name, exact=True).first.click()
    expect(detail).to_be_visible()
    return detail


def requests_to(fake) -> int:
    return sum(1 for r in fake.requests if r.method == "POST")


# -- U-10: every input and button by its name; messages in status / alert ---------------------------
def test_u10_dialog_inputs_and_buttons_are_reachable_by_name(dialog_app, page):
    dialog = open_dialog(dialog_app, page)
    for label in DIALOG_LABELS:
        expect(field(dialog, label)).to_have_count(1)
        expect(field(dialog, label)).to_be_visible()
    for provider, labels in PROVIDER_LABELS.items():
        choose_provider(dialog, provider)
        for label in labels:
            expect(field(dialog, label)).to_be_visible()
    field(dialog, "Authentication Method").select_option(label="Bedrock API Key (Bearer Token)")
    expect(field(dialog, "Bedrock API Key")).to_be_visible()
    expect(field(dialog, "Access Key ID")).to_be_hidden()
    choose_provider(dialog, "OpenAI-compatible")
    expect(field(dialog, "Reuse saved credentials")).to_be_visible()     # the seeded keyed proxy
    field(dialog, "Supports extended reasoning").check()
    expect(field(dialog, "Reasoning parameter name")).to_be_visible()
    for name in ("Test Connection", "Save Model", "Cancel"):
        expect(button(dialog, name)).to_have_count(1)
    button(dialog, "Test Connection").click()
    expect(dialog.locator(".byok-error-provider-model-id").get_by_role("alert")).to_have_text(
        "Provider Model ID is required")

    button(dialog, "Cancel").click()
    detail = open_detail(page, "Keyed proxy")
    for name in ("Edit", "Test", "Delete"):
        expect(button(detail, name)).to_have_count(1)
    button(detail, "Delete").click()
    expect(button(detail, "Confirm Delete")).to_be_visible()
    expect(button(detail, "Delete")).to_have_count(1)       # "Confirm Delete" is not "Delete"
    detail.locator(".byok-cancel-delete").click()
    button(detail, "Edit").click()
    for label in ("Display Name", "Provider Model ID", "Base URL", "API Key", "Max Tokens",
                  "Supports JSON mode", "Supports vision / image inputs", "Supports tool use",
                  "Supports extended reasoning", "Input cost/token (USD)", "Output cost/token (USD)",
                  "Remove stored key"):
        expect(field(detail, label)).to_be_visible()
    expect(detail.get_by_role("button", name=EDIT_SAVE)).to_have_count(1)


# -- item 1: a Provider / Authentication Method change clears every credential input --------------
def test_issue12_provider_change_clears_the_typed_key(dialog_app, page):
    together_before = requests_to(dialog_app.fakes.together)
    dialog = open_dialog(dialog_app, page)
    choose_provider(dialog, "Fireworks")
    field(dialog, "API Key").fill(FW_KEY)
    choose_provider(dialog, "Together AI")
    expect(field(dialog, "API Key")).to_have_value("")
    fill_common(dialog, "meta-llama/Llama-3.3-70B-Instruct-Turbo", "Switched provider")
    button(dialog, "Test Connection").click()
    expect(alerts(dialog).filter(has_text="API Key is required").first).to_be_visible()
    assert requests_to(dialog_app.fakes.together) == together_before     # the Fireworks key never went out

    choose_provider(dialog, "Bedrock")
    field(dialog, "AWS Region").fill("us-west-2")
    field(dialog, "Access Key ID").fill(AWS_ID)
    field(dialog, "Secret Access Key").fill(AWS_SECRET)
    field(dialog, "Authentication Method").select_option(label="Bedrock API Key (Bearer Token)")
    expect(field(dialog, "Bedrock API Key")).to_have_value("")
    expect(field(dialog, "AWS Region")).to_have_value("")
    field(dialog, "Authentication Method").select_option(label="IAM Key Pair (Access Key + Secret Key)")
    expect(field(dialog, "Access Key ID")).to_have_value("")
    expect(field(dialog, "Secret Access Key")).to_have_value("")


# -- item 2: the outcome follows the gate; "Testing… N s"; no second click --------------------------
def test_issue12_passed_message_follows_the_gate_and_testing_shows_progress(dialog_app, page):
    fake = dialog_app.fakes.fireworks
    dialog = open_dialog(dialog_app, page)
    choose_provider(dialog, "Fireworks")
    field(dialog, "API Key").fill(FW_KEY)
    fill_common(dialog, "accounts/acme/models/gate", "Gate model")
    save = button(dialog, "Save Model")
    test_passes(dialog)
    expect(save).to_be_enabled()
    field(dialog, "Max Tokens").fill("2048")
    field(dialog, "Max Tokens").press("Tab")
    expect(dialog).not_to_contain_text("Connection test passed.")
    expect(save).to_be_disabled()
    test_passes(dialog, fake)
    field(dialog, "Supports vision / image inputs").check()
    expect(dialog).not_to_contain_text("Connection test passed.")
    expect(save).to_be_disabled()

    before = requests_to(fake)
    fake.delay = 3.0
    try:
        test = button(dialog, "Test Connection")
        test.click()
        expect(dialog.get_by_role("status").filter(has_text=re.compile(r"Testing… \d+ s"))).to_be_visible()
        expect(test).to_be_disabled()
        expect(dialog).not_to_contain_text("Connection test passed.")
        expect(dialog.get_by_role("status").filter(has_text=re.compile(r"Testing… [1-9]\d* s"))).to_be_visible()
        test.click(force=True, timeout=2_000)                      # a second click meanwhile
        expect(dialog.get_by_role("status").filter(has_text="Connection test passed.")).to_be_visible(timeout=60_000)
    finally:
        fake.delay = 0.0
    expect(save).to_be_enabled()
    expect(button(dialog, "Test Connection")).to_be_enabled()
    assert requests_to(fake) == before + 1


# -- item 3: an ungated change after a pass is announced ---------------------------------------------
def test_issue12_key_changed_after_a_pass_is_announced(dialog_app, page, screenshots):
    dialog = open_dialog(dialog_app, page)
    choose_provider(dialog, "Fireworks")
    field(dialog, "API Key").fill(FW_KEY)
    fill_common(dialog, "accounts/acme/models/notice", "Notice model")
    test_passes(dialog)
    expect(dialog).not_to_contain_text(CHANGED)
    field(dialog, "API Key").fill("fw_another_key_typed_after_the_test")
    notice = dialog.get_by_role("status").filter(has_text=CHANGED)
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("API Key")
    expect(button(dialog, "Save Model")).to_be_enabled()           # the seed keeps Save enabled
    dialog.screenshot(path=str(screenshots / "add_dialog_changed_since_test.png"))
    field(dialog, "API Key").fill(FW_KEY)
    test_passes(dialog, dialog_app.fakes.fireworks)
    expect(dialog).not_to_contain_text(CHANGED)
    field(dialog, "Provider Model ID").fill("accounts/acme/models/notice-2")
    expect(dialog.get_by_role("status").filter(has_text=CHANGED)).to_contain_text("Provider Model ID")


# -- item 4: pasted whitespace stripped; anything else named ----------------------------------------
def test_issue12_pasted_key_with_spaces_is_stripped(dialog_app, page):
    fake = dialog_app.fakes.fireworks
    dialog = open_dialog(dialog_app, page)
    choose_provider(dialog, "Fireworks")
    field(dialog, "API Key").fill(f"  {FW_KEY} \n")
    fill_common(dialog, "accounts/acme/models/spaces", "Spaces model")
    test_passes(dialog)
    assert fake.requests[-1].headers["authorization"] == "Bearer " + FW_KEY
    field(dialog, "API Key").fill(FW_KEY[:10] + " " + FW_KEY[10:])
    button(dialog, "Test Connection").click()
    error = alerts(dialog).filter(has_text="API Key has a space or line break inside")
    expect(error.first).to_be_visible()
    assert FW_KEY[10:] not in page.content()


# -- item 5: a typed key dropped by clearing it; a stored optional key removed in Edit --------------
def test_issue12_cleared_key_is_not_sent_and_stored_key_can_be_removed(dialog_app, page):
    vllm = dialog_app.fakes.open_vllm
    dialog = open_dialog(dialog_app, page)
    choose_provider(dialog, "OpenAI-compatible")
    field(dialog, "Base URL").fill(vllm.base_url)
    field(dialog, "API Key").fill("sk-typed-then-cleared-0001")
    field(dialog, "API Key").fill("")
    fill_common(dialog, "qwen", "Cleared key model")
    test_passes(dialog)
    assert "authorization" not in vllm.requests[-1].headers
    field(dialog, "API Key").fill("sk-typed-then-dropped-0002")
    test_passes(dialog, vllm)
    assert vllm.requests[-1].headers["authorization"] == "Bearer sk-typed-then-dropped-0002"
    button(dialog, "Clear typed key").click()
    expect(button(dialog, "Clear typed key")).to_be_hidden()
    test_passes(dialog, vllm)
    assert "authorization" not in vllm.requests[-1].headers
    button(dialog, "Cancel").click()

    detail = open_detail(page, "Keyed proxy")
    expect(detail.locator(".byok-secret-masked")).to_contain_text("****" + OAI_KEY[-4:])
    button(detail, "Edit").click()
    field(detail, "Remove stored key").check()
    detail.get_by_role("button", name=EDIT_SAVE).click()
    expect(detail.locator(".byok-secret-masked")).to_contain_text("(none stored)")
    before = requests_to(vllm)
    button(detail, "Test").click()
    expect(detail.get_by_role("status").filter(has_text="Connection test passed.")).to_be_visible(timeout=60_000)
    assert requests_to(vllm) == before + 1
    assert "authorization" not in vllm.requests[-1].headers
    assert OAI_KEY.encode() not in dialog_app.registry_bytes()


# -- item 6: every problem at once, by label; no false "keep existing" -------------------------------
def test_issue12_every_problem_at_once_next_to_its_field(dialog_app, page, screenshots):
    dialog = open_dialog(dialog_app, page)
    choose_provider(dialog, "Bedrock")
    field(dialog, "Input cost/token (USD)").fill("abc")
    button(dialog, "Test Connection").click()
    for text in ("Provider Model ID is required", "AWS Region is required", "Access Key ID is required",
                 "Secret Access Key is required", "Input cost/token (USD) must be"):
        expect(alerts(dialog).filter(has_text=text).first).to_be_visible()
    expect(dialog.locator(".byok-test-message").get_by_role("alert")).to_contain_text("Please fix the marked fields")
    html = page.content()
    for keyword in ("provider_model_id", "aws_access_key_id", "aws_region is", "input_cost_per_token must"):
        assert keyword not in html
    # Each message sits with its own field.
    expect(dialog.locator(".byok-error-aws-region")).to_contain_text("AWS Region is required")
    expect(dialog.locator(".byok-error-provider-model-id")).to_contain_text("Provider Model ID is required")
    dialog.screenshot(path=str(screenshots / "add_dialog_every_problem.png"))
    button(dialog, "Cancel").click()

    detail = open_detail(page, "Open proxy")
    button(detail, "Edit").click()
    expect(field(detail, "API Key")).not_to_have_attribute("placeholder", "Leave blank to keep existing")


# -- item 8: the draft survives a second Add Custom Model click; Cancel discards ---------------------
def test_issue12_second_add_click_keeps_the_draft(dialog_app, page):
    dialog = open_dialog(dialog_app, page)
    choose_provider(dialog, "Together AI")
    fill_common(dialog, "meta-llama/Llama-3.3-70B-Instruct-Turbo", "Half filled")
    button(page, "Add Custom Model").click()
    expect(page.locator(".byok-add-dialog")).to_have_count(1)
    expect(field(dialog, "Display Name")).to_have_value("Half filled")
    expect(field(dialog, "Provider")).to_have_value("Together AI")   # ipywidgets: option value = label
    button(dialog, "Cancel").click()
    expect(page.locator(".byok-add-dialog")).to_have_count(0)
    button(page, "Add Custom Model").click()
    expect(field(page.locator(".byok-add-dialog"), "Display Name")).to_have_value("")


# -- item 9: the slug, live ----------------------------------------------------------------------------
def test_issue12_slug_is_checked_live(dialog_app, page):
    dialog = open_dialog(dialog_app, page)
    choose_provider(dialog, "Fireworks")
    field(dialog, "Display Name").fill("Ünïcode Modèl")
    expect(field(dialog, "Model Slug")).to_have_value("unicode-model")
    bad = "Q" * 200
    field(dialog, "Model Slug").fill(bad)
    slug_error = dialog.locator(".byok-error-slug")
    expect(slug_error).to_contain_text("200 characters")
    assert bad not in page.content().replace(f'value="{bad}"', "")
    field(dialog, "Model Slug").fill("anthropic/claude-3.5-haiku")
    expect(slug_error).to_contain_text("platform model id")
    field(dialog, "Model Slug").fill("keyed-proxy")
    expect(slug_error).to_contain_text("taken by an active custom model")
    field(dialog, "Model Slug").fill("")
    expect(field(dialog, "Model Slug")).to_have_value("unicode-model")
    expect(slug_error).to_have_text("")


# -- a pass of the whole dialog per provider ------------------------------------------------------------
PASSES = {
    "fireworks": ("Fireworks", None, "accounts/acme/models/pass", "Pass Fireworks"),
    "together": ("Together AI", None, "meta-llama/Llama-3.3-70B-Instruct-Turbo", "Pass Together"),
    "bedrock_iam": ("Bedrock", "IAM Key Pair (Access Key + Secret Key)",
                    "anthropic.claude-3-haiku-20240307-v1:0", "Pass Bedrock IAM"),
    "bedrock_api_key": ("Bedrock", "Bedrock API Key (Bearer Token)",
                        "anthropic.claude-3-haiku-20240307-v1:0", "Pass Bedrock key"),
    "huggingface": ("HuggingFace", None, "tgi", "Pass HuggingFace"),
    "openai_compatible": ("OpenAI-compatible", None, "qwen", "Pass OpenAI-compatible"),
}


@pytest.mark.parametrize("kind", list(PASSES))
def test_u1_whole_dialog_per_provider(dialog_app, page, kind):
    provider, method, model_id, display = PASSES[kind]
    fakes = dialog_app.fakes
    dialog = open_dialog(dialog_app, page)
    choose_provider(dialog, provider)
    if method:
        field(dialog, "Authentication Method").select_option(label=method)
    if kind == "fireworks":
        field(dialog, "API Key").fill(FW_KEY)
    elif kind == "together":
        field(dialog, "API Key").fill(TG_KEY)
    elif kind == "bedrock_iam":
        field(dialog, "AWS Region").fill("us-west-2")
        field(dialog, "Access Key ID").fill(AWS_ID)
        field(dialog, "Secret Access Key").fill(AWS_SECRET)
    elif kind == "bedrock_api_key":
        field(dialog, "AWS Region").fill("us-west-2")
        field(dialog, "Bedrock API Key").fill(BEDROCK_KEY)
    elif kind == "huggingface":
        field(dialog, "API Token").fill(HF_KEY)
        field(dialog, "Inference Endpoint URL").fill(fakes.hf.url)
    else:
        field(dialog, "Base URL").fill(fakes.open_vllm.base_url)
    fill_common(dialog, model_id, display)
    field(dialog, "Max Tokens").fill("1024")
    field(dialog, "Max Tokens").press("Tab")
    test_passes(dialog)
    button(dialog, "Save Model").click()
    expect(page.locator(".byok-add-dialog")).to_have_count(0)
    table = page.locator(".byok-models-table")
    expect(table).to_contain_text(display)
    html = page.content()
    for secret in (FW_KEY, TG_KEY, HF_KEY, AWS_SECRET, BEDROCK_KEY):
        assert secret not in html
