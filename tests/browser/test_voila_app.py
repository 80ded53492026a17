"""U-1, U-2, U-3, C-3, C-7 in a real browser: add a Fireworks model through the Voila admin app,
then look for the planted key everywhere it must not be."""
from __future__ import annotations

from pathlib import Path

import pytest

expect = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is missing").expect

ROOT = Path(__file__).resolve().parents[2]
MODEL_ID = "accounts/acme/models/llama-3-1-8b-instruct-v4"
DISPLAY_NAME = "Llama 3.1 8B (browser v4)"
SLUG = "llama-3-1-8b-browser-v4"


def _input(page, field: str):
    """The input element of a form field (its widget has CSS class byok-<field>)."""
    return page.locator(f".byok-add-dialog .byok-{field} input, .byok-add-dialog .byok-{field} select").first


def test_u1_u2_u3_c3_c7_add_fireworks_model_in_the_browser(voila_app, page, tmp_path):
    # (The README's screenshots are taken by test_pages.py, on a registry with more to show.)
    screenshots = tmp_path
    planted = voila_app.planted_key

    # U-2: the Models page renders its table.
    page.goto(voila_app.url, timeout=60_000)
    expect(page.locator(".byok-models-table")).to_be_visible(timeout=60_000)
    expect(page.locator(".byok-models-table")).to_contain_text("Platform")

    # U-1: Add Custom Model, Fireworks, the fields; Save is gated on a passing test (T-6).
    page.locator("button.byok-add-model").click()
    dialog = page.locator(".byok-add-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Add Custom Model")
    _input(page, "provider").select_option(label="Fireworks")
    key_input = page.locator(".byok-add-dialog .byok-api-key input")
    expect(key_input).to_have_attribute("type", "password")
    key_input.fill(planted)
    _input(page, "provider-model-id").fill(MODEL_ID)
    _input(page, "display-name").fill(DISPLAY_NAME)
    expect(_input(page, "slug")).to_have_value(SLUG)          # M-3 auto-fill from the display name
    save = page.locator("button.byok-save-model")
    expect(save).to_be_disabled()

    page.locator("button.byok-test-connection").click()
    expect(dialog.locator(".byok-test-message")).to_have_text("Connection test passed.")
    expect(save).to_be_enabled()
    assert voila_app.fake.last.headers["authorization"] == "Bearer " + planted   # the real key went out
    dialog.screenshot(path=str(screenshots / "add_custom_model_dialog.png"))

    save.click()
    expect(dialog).to_have_count(0)                            # the dialog closes on save
    table = page.locator(".byok-models-table")
    expect(table).to_contain_text(DISPLAY_NAME)                # W-3: listed at once
    expect(table).to_contain_text(SLUG)
    expect(page.locator(".byok-status")).to_contain_text(f"Saved model '{SLUG}'.")
    page.locator(".byok-app").screenshot(path=str(screenshots / "models_page.png"))

    # U-3 / C-3: the detail page shows only the masked secret.
    page.get_by_role("row", name=DISPLAY_NAME).click()          # U-2: the row opens it
    detail = page.locator(".byok-detail")
    expect(detail).to_be_visible()
    expect(detail.locator(".byok-secret-masked")).to_contain_text("****" + planted[-4:])
    expect(detail).to_contain_text(MODEL_ID)
    detail.screenshot(path=str(screenshots / "model_detail_page.png"))

    # C-3 / C-7: the planted key is nowhere it must not be.
    html = page.content()
    assert "****" + planted[-4:] in html
    assert planted not in html
    input_values = page.eval_on_selector_all("input, textarea", "els => els.map(e => e.value)")
    assert not any(planted in value for value in input_values), "a Password input kept the key (C-7)"
    assert planted not in voila_app.server.log_text()
    assert planted.encode() not in voila_app.registry_bytes()
    assert voila_app.registry_bytes(), "the registry should be on disk in BYOK_NB_HOME"
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert planted not in notebook.read_text(), notebook


def test_e1_voila_hides_sources(voila_app, page):
    """``strip_sources``: the page carries the app's output, not its code."""
    page.goto(voila_app.url, timeout=60_000)
    expect(page.locator(".byok-models-table")).to_be_visible(timeout=60_000)
    html = page.content()
    assert "app_session()" not in html and "from byok_nb" not in html


def test_u6_contributor_sees_the_pages_without_management_controls(voila_app_contributor, page):
    page.goto(voila_app_contributor.url, timeout=60_000)
    table = page.locator(".byok-models-table")
    expect(table).to_be_visible(timeout=60_000)
    expect(table).to_contain_text("Team fine-tune")
    expect(page.locator(".byok-whoami")).to_contain_text("cy")
    expect(page.locator("button.byok-add-model")).to_have_count(0)
    page.get_by_role("row", name="Team fine-tune").click()
    detail = page.locator(".byok-detail")
    expect(detail.locator(".byok-secret-masked")).to_contain_text("****" + voila_app_contributor.planted_key[-4:])
    for control in ("byok-edit", "byok-test", "byok-delete"):
        expect(detail.locator(f"button.{control}")).to_have_count(0)
    html = page.content()
    assert voila_app_contributor.planted_key not in html
    assert "Traceback" not in html
