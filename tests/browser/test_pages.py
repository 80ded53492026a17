"""U-2, U-4, U-6, U-10 and the polish of issue 12 in a real browser: custom model rows open on click
and Enter, the Workflows page, the product header, one message for a non-member, analytics headers,
labels never cut off, the reactivation message, and axe-core on every page."""
from __future__ import annotations

import re

import pytest

expect = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is missing").expect

from axekit import axe_violations, describe  # noqa: E402
from conftest import LONG_NAME  # noqa: E402

LOAD = 60_000
DEV_WORDS = ("BYOK_NB", "JUPYTERHUB", "Voila", "voila", "byok-nb serve", "tracebacks", "strip_sources",
             "127.0.0.1")


def _open_app(page, app):
    page.goto(app.url, timeout=LOAD)
    expect(page.get_by_role("row", name="Team fine-tune")).to_be_visible(timeout=LOAD)


def _cut_off_buttons(page) -> list[str]:
    """Visible buttons whose label does not fit (the browser cuts it with an ellipsis)."""
    return page.eval_on_selector_all(
        ".byok-app button", """els => els.filter(b => b.offsetParent !== null)
            .filter(b => b.scrollWidth > b.clientWidth + 1).map(b => b.textContent.trim())""")


def _nav(page, name: str):
    page.locator(".byok-nav").get_by_role("button", name=name, exact=True).click()


# -- item 7: rows ----------------------------------------------------------------------------------
def test_u2_u10_custom_model_row_opens_its_detail_page_on_click_and_on_enter(voila_pages, page):
    _open_app(page, voila_pages)
    table = page.locator(".byok-models-table table.byok-models-table-html")     # F-5 waits for it
    # Custom models first; no separate strip of buttons repeating the names.
    refs = table.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.ref)")
    kinds = table.locator("tbody tr").evaluate_all("rows => rows.map(r => r.className)")
    first_platform = next(i for i, k in enumerate(kinds) if "byok-row-platform" in k)
    assert all("byok-row-custom" in k for k in kinds[:first_platform]), kinds[:5]
    assert not any("byok-row-custom" in k for k in kinds[first_platform:])
    assert {"team-fine-tune", "long-name-ft", "no-tools-ft"} <= set(refs[:first_platform])
    assert "retired-ft" not in refs
    expect(page.locator(".byok-custom-models")).to_have_count(0)
    expect(page.get_by_role("button", name="Team fine-tune")).to_have_count(0)

    # Click.
    page.get_by_role("row", name="Team fine-tune").click()
    detail = page.locator(".byok-detail")
    expect(detail).to_be_visible()
    expect(detail).to_contain_text("accounts/acme/models/ft-v1")
    detail.locator("button.byok-back").click()

    # Keyboard: Tab reaches the row (it is focusable), Enter opens it.
    row = page.get_by_role("row", name="No Tools FT")
    expect(row).to_be_visible()
    expect(row).to_have_attribute("tabindex", "0")
    row.focus()
    expect(row).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(".byok-detail")).to_contain_text("accounts/acme/models/no-tools")
    page.locator("button.byok-back").click()

    # Platform rows do not open anything.
    platform_row = table.locator("tr.byok-row-platform").first
    expect(platform_row).not_to_have_attribute("tabindex", "0")
    platform_row.click()
    expect(page.locator(".byok-detail")).to_have_count(0)


def test_u2_long_names_are_ellipsized_with_the_full_name_on_hover(voila_pages, page):
    _open_app(page, voila_pages)
    row = page.get_by_role("row", name=LONG_NAME)          # the accessible name holds the whole name
    cell = row.locator("td").first
    expect(cell).to_have_attribute("title", LONG_NAME)
    fits = cell.evaluate("td => ({cut: td.scrollWidth > td.clientWidth, "
                         "overflow: getComputedStyle(td).textOverflow})")
    assert fits == {"cut": True, "overflow": "ellipsis"}
    box = cell.bounding_box()
    assert box is not None and box["width"] < 420      # the column does not stretch with the name
    row.click()
    expect(page.locator(".byok-detail")).to_contain_text(LONG_NAME)


# -- item 11: Workflows page ----------------------------------------------------------------------
def test_u4_w2_w5_workflows_page_picker_groups_hidden_reasons_and_assign(voila_pages_contributor, page,
                                                                          screenshots):
    _open_app(page, voila_pages_contributor)
    _nav(page, "Workflows")
    wf = page.locator(".byok-workflows-page")
    expect(wf).to_be_visible()
    expect(wf.get_by_label("Project")).to_be_visible()
    expect(wf.get_by_label("Workflow")).to_contain_text("search / triage")
    reply = wf.get_by_role("row", name="reply")
    expect(reply).to_contain_text("Supports tool use (the field has tool bindings)")
    expect(reply).to_contain_text("not assigned")
    reply.focus()
    page.keyboard.press("Enter")                                 # a field row opens its picker
    picker = wf.locator(".byok-picker")
    expect(picker).to_contain_text("Model for field reply")
    expect(picker.locator(".byok-picker-group-platform")).to_have_text("Platform")
    expect(picker.locator(".byok-picker-group-custom")).to_have_text("Custom")
    custom = picker.locator(".byok-picker-custom")
    expect(custom.get_by_label("Team fine-tune")).to_be_visible()
    expect(custom).not_to_contain_text("No Tools FT")            # hidden: no tool use
    hidden = picker.locator(".byok-picker-hidden")
    hidden.locator("summary").click()
    expect(hidden).to_contain_text("No Tools FT")
    expect(hidden).to_contain_text("needs Supports tool use (the field has tool bindings)")
    custom.get_by_label("Team fine-tune").check()
    page.locator(".byok-app").screenshot(path=str(screenshots / "workflows_page.png"))
    picker.get_by_role("button", name="Assign", exact=True).click()
    expect(page.get_by_role("status").filter(has_text="Assigned 'team-fine-tune'")).to_be_visible()
    expect(wf.get_by_role("row", name="reply")).to_contain_text("team-fine-tune")


# -- item 12: polish -----------------------------------------------------------------------------
def test_u6_product_header_and_signed_in_user_without_developer_text(voila_pages, page):
    _open_app(page, voila_pages)
    header = page.locator(".byok-header")
    expect(header.get_by_role("heading", name="Custom Models (BYOK)")).to_be_visible()
    expect(header.locator(".byok-whoami")).to_have_text(re.compile(r"Signed in as ana · acme · Org Admin"))
    for name in ("Models", "Workflows", "Analytics"):
        _nav(page, name)
        page.wait_for_timeout(300)
        text = page.locator("body").inner_text()
        for word in DEV_WORDS:
            assert word not in text, (name, word)


def test_u6_non_member_sees_one_clear_message(voila_outsider, page):
    page.goto(voila_outsider.url, timeout=LOAD)
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("not a member of the organization 'acme'", timeout=LOAD)
    text = page.locator("body").inner_text()
    assert text.count("not a member") == 1, text
    # No role label above the message: the header names the user and the org only.
    expect(page.locator(".byok-whoami")).to_have_text("Signed in as zed · acme")
    assert "Member" not in text and "Contributor" not in text
    expect(page.locator(".byok-nav")).to_have_count(0)
    expect(page.locator(".byok-models-table")).to_have_count(0)
    assert "Traceback" not in page.content()


def test_u5_analytics_tables_have_human_headers_with_units(voila_pages, page):
    _open_app(page, voila_pages)
    _nav(page, "Analytics")
    table = page.locator(".byok-cost-table table")
    expect(table).to_be_visible(timeout=LOAD)
    headers = table.locator("th").all_inner_texts()
    assert {"Model", "Calls", "Input tokens", "Output tokens", "Cost (USD)", "Calls without a price"} <= set(headers)
    assert not any("_" in h for h in headers), headers
    page.locator(".byok-report-by").get_by_role("button", name="Day", exact=True).click()
    expect(table.locator("th").first).to_have_text("Day (UTC)")
    expect(table).to_contain_text("2026-11-30")
    expect(page.locator(".byok-chart-cost-per-day img")).to_be_visible(timeout=LOAD)
    expect(page.get_by_role("img", name=re.compile("Cost per day by model"))).to_be_visible()


def test_u10_button_labels_are_never_cut_off(voila_pages, page):
    _open_app(page, voila_pages)
    assert _cut_off_buttons(page) == []
    page.get_by_role("row", name="Team fine-tune").click()
    expect(page.get_by_role("button", name="Probe capabilities")).to_be_visible()
    assert _cut_off_buttons(page) == []
    for name in ("Workflows", "Analytics"):
        _nav(page, name)
        page.wait_for_timeout(500)
        assert _cut_off_buttons(page) == [], name


def test_m12_re_adding_a_deleted_slug_says_it_was_reactivated(voila_pages, page):
    _open_app(page, voila_pages)
    page.locator("button.byok-add-model").click()
    dialog = page.locator(".byok-add-dialog")
    expect(dialog).to_be_visible()
    dialog.locator(".byok-provider select").select_option(label="Fireworks")
    dialog.locator(".byok-api-key input").fill(voila_pages.planted_key)
    dialog.locator(".byok-provider-model-id input").fill("accounts/acme/models/old-v2")
    dialog.locator(".byok-display-name input").fill("Retired FT")
    expect(dialog.locator(".byok-slug input")).to_have_value("retired-ft")
    dialog.locator("button.byok-test-connection").click()
    save = dialog.locator("button.byok-save-model")
    expect(save).to_be_enabled()
    save.click()
    status = page.locator(".byok-status").get_by_role("status")
    expect(status).to_contain_text("Reactivated model 'retired-ft'")
    expect(page.get_by_role("row", name="Retired FT")).to_be_visible()


# -- accessibility: axe-core ---------------------------------------------------------------------
def test_u10_axe_finds_no_serious_violation_on_the_four_pages(voila_pages, page, axe_js, screenshots):
    """Models page, Add dialog (each provider), detail page and Workflows page: no serious or
    critical WCAG 2.1 A/AA violation in the whole document (axe-core, injected from disk).
    Screenshots for the README are taken here."""
    _open_app(page, voila_pages)
    found = {}
    found["Models page"] = axe_violations(page, axe_js)
    page.locator(".byok-app").screenshot(path=str(screenshots / "models_page.png"))

    page.get_by_role("button", name="Add Custom Model", exact=True).click()
    dialog = page.locator(".byok-add-dialog")
    expect(dialog).to_be_visible()
    for provider in ("Together AI", "Bedrock", "HuggingFace", "OpenAI-compatible", "Fireworks"):
        dialog.locator(".byok-provider select").select_option(label=provider)
        found[f"Add dialog, {provider}"] = axe_violations(page, axe_js)
    dialog.locator(".byok-api-key input").fill(voila_pages.planted_key)
    dialog.locator(".byok-provider-model-id input").fill("accounts/acme/models/llama-3-1-8b-instruct-v4")
    dialog.locator(".byok-display-name input").fill("Llama 3.1 8B (internal v4)")
    dialog.locator("button.byok-test-connection").click()
    expect(dialog.locator(".byok-test-message")).to_contain_text("Connection test passed.")
    dialog.screenshot(path=str(screenshots / "add_custom_model_dialog.png"))
    dialog.get_by_role("button", name="Cancel", exact=True).click()
    expect(dialog).to_have_count(0)

    page.get_by_role("row", name="Team fine-tune").click()
    detail = page.locator(".byok-detail")
    expect(detail).to_be_visible()
    found["detail page"] = axe_violations(page, axe_js)
    page.locator(".byok-app").screenshot(path=str(screenshots / "model_detail_page.png"))
    detail.get_by_role("button", name="Edit", exact=True).click()
    expect(detail.locator(".byok-edit-area .byok-model-form")).to_be_visible()
    found["detail page, Edit"] = axe_violations(page, axe_js)
    detail.get_by_role("button", name="Edit", exact=True).click()      # Edit toggles the form

    _nav(page, "Workflows")
    wf = page.locator(".byok-workflows-page")
    wf.get_by_role("row", name="reply").click()
    expect(wf.locator(".byok-picker")).to_be_visible()
    found["Workflows page"] = axe_violations(page, axe_js)

    _nav(page, "Analytics")
    expect(page.locator(".byok-chart-cost-per-day img")).to_be_visible(timeout=LOAD)
    found["Analytics page"] = axe_violations(page, axe_js)

    problems = {where: describe(v) for where, v in found.items() if v}
    assert not problems, "\n\n".join(f"{where}:\n{text}" for where, text in problems.items())
