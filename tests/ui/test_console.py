"""The admin console in a real headless browser (Debian's chromium driven by Playwright) against the
real gateway with real traffic in its ledger: sign-in, every page, and the policy editor's whole
lifecycle against the admin API. Screenshots go to artifacts/screenshots/ (kept by CI)."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import openai
import pytest

from gateway.api.admin.reports import router as reports_router
from gateway.api.admin.ui import router as console_router
from tests.reports.ledger_fixtures import make_rows
from tests.reports.test_report import insert

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("TIERGATE_CHROMIUM", "/usr/bin/chromium")
ADMIN = {"authorization": "Bearer admin-secret"}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"no chromium at {CHROMIUM}"),
]

BALANCED = {
    "name": "balanced",
    "baseline": "gpt-4o",
    "bands": [
        {"from": 0.0, "to": 0.3, "deployment": "local-small"},
        {"from": 0.3, "to": 0.6, "deployment": "gpt-4o-mini"},
        {"from": 0.6, "to": 1.0, "deployment": "gpt-4o"},
    ],
    "fallbacks": {"local-small": ["gpt-4o-mini"], "gpt-4o-mini": ["gpt-4o"]},
}


def with_console(gw):
    """Mount the console and reports routers unless the app factory already does."""
    paths = {getattr(route, "path", "") for route in gw.app.routes}
    if "/admin/reports/cost" not in paths:
        gw.app.include_router(reports_router)
    if "/admin/ui/" not in paths:
        gw.app.include_router(console_router)
    return gw


def admin(gw, method, path, **kwargs):
    response = httpx.request(method, f"{gw.base_url}/admin{path}", headers=ADMIN, timeout=30, **kwargs)
    assert response.status_code < 400, response.text
    return response.json()


@pytest.fixture
def gateway_with_traffic(make_gateway):
    gw = with_console(make_gateway())
    admin(gw, "POST", "/policies", json={"document": BALANCED, "comment": "first"})
    admin(gw, "POST", "/policies/balanced/activate", json={"version": 1})
    admin(gw, "PUT", "/assignments", json={"team": "*", "policy": "balanced"})
    prompts = [
        "What is 2+2?",
        "Summarise the plot of Hamlet in two sentences.",
        "hi",
        "Translate 'cat' to French.",
    ]
    for team, project in (("search", "ranking"), ("support", "bot"), ("ads", None)):
        client = openai.OpenAI(
            base_url=gw.openai_base_url, api_key=gw.create_key(team=team, project=project), max_retries=0
        )
        for prompt in prompts:
            client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": prompt}], max_tokens=32
            )
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Explain TCP."}])
    gw.flush_ledger()
    # Six days of synthetic history before it, so the charts have a trend to draw.
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    insert(
        gw.settings.database_url, make_rows(800, seed=9, hours=144, start=now - timedelta(days=6, hours=1))
    )
    return gw


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: msg.type == "error" and errors.append(f"{msg.text} {msg.location}"))
        page.errors = errors
        yield page
        browser.close()


def test_console_pages_and_policy_editor(gateway_with_traffic, page):
    from playwright.sync_api import expect

    gw = gateway_with_traffic
    page.goto(f"{gw.base_url}/admin/ui")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()
    expect(page.locator("#logout")).to_be_hidden()
    page.screenshot(path=SHOTS / "01-login.png")

    page.fill("#admin-key", "wrong-key")
    page.click("#login-form button")
    expect(page.locator("#login-error")).to_contain_text("not accepted")

    page.fill("#admin-key", "admin-secret")
    page.fill("#actor", "alice")
    page.click("#login-form button")
    expect(page.locator("#page-overview")).to_be_visible()
    expect(page.locator("#kpis")).to_contain_text("815")  # 3 teams x 5 requests + 800 from history
    expect(page.locator("#chart-cost svg polyline")).to_have_count(2)
    expect(page.locator("#chart-tiers svg rect").first).to_be_visible()
    expect(page.locator("#top-teams")).to_contain_text("search")
    expect(page.locator("#top-projects")).to_contain_text("ranking")
    expect(page.locator("#chart-cache svg circle").first).to_be_visible()
    with page.expect_download() as download:
        page.click("#focus-link")
    focus_csv = Path(download.value.path()).read_text()
    assert focus_csv.startswith("BilledCost,") and "input_uncached" in focus_csv
    with page.expect_download() as download:
        page.click("#csv-link")
    assert Path(download.value.path()).read_text().startswith("team,day,requests")
    page.select_option("#step", "hour")
    expect(page.locator("#chart-savings svg rect").first).to_be_visible()
    page.screenshot(path=SHOTS / "02-overview.png", full_page=True)

    # Policy editor: open, break it, validate, fix, save a version, simulate, activate, roll back.
    page.click("#nav a[data-page=policies]")
    expect(page.locator("#policy-list")).to_contain_text("balanced")
    page.locator("#policy-list button", has_text="Edit").first.click()
    expect(page.locator("#editor-title")).to_contain_text("balanced v1 (active)")
    page.fill(
        "#policy-editor", '{"name": "balanced", "bands": [{"from": 0, "to": 0.5, "deployment": "gpt-4o"}]}'
    )
    page.click("#btn-validate")
    expect(page.locator("#policy-status")).to_contain_text("gap in bands")
    page.fill("#policy-editor", "{not json")
    page.click("#btn-validate")
    expect(page.locator("#policy-status")).to_contain_text("not hold valid JSON")

    cheap = {**BALANCED, "bands": [{"from": 0, "to": 1, "deployment": "gpt-4o-mini"}], "fallbacks": {}}
    import json

    page.fill("#policy-editor", json.dumps(cheap, indent=2))
    page.click("#btn-validate")
    expect(page.locator("#policy-status")).to_contain_text('Valid policy "balanced"')
    page.fill("#policy-comment", "everything on mini")
    page.click("#btn-save")
    expect(page.locator("#policy-status")).to_contain_text("Saved balanced v2")
    page.click("#btn-simulate")
    expect(page.locator("#policy-status")).to_contain_text("Simulated over the last")
    expect(page.locator("#simulation")).to_contain_text("economy 100")
    page.fill("#activate-version", "2")
    page.click("#btn-diff")
    expect(page.locator("#policy-diff")).to_contain_text("-  deployment: local-small")
    expect(page.locator("#policy-diff")).to_contain_text("+++ balanced v2")
    page.screenshot(path=SHOTS / "03-policy-simulate-diff.png", full_page=True)

    page.fill("#activate-version", "2")
    page.click("#btn-activate")
    expect(page.locator("#policy-status")).to_contain_text("Activated balanced v2")
    assert admin(gw, "GET", "/policies/balanced")["version"] == 2
    page.click("#btn-rollback")
    expect(page.locator("#policy-status")).to_contain_text("Rolled balanced back to v1")
    assert admin(gw, "GET", "/policies/balanced")["version"] == 1
    expect(page.locator("#audit-log")).to_contain_text("rollback")
    audit = admin(gw, "GET", "/audit")["data"]
    assert [(e["action"], e["actor"]) for e in audit[:3]] == [
        ("rollback", "alice"),
        ("activate", "alice"),
        ("create", "alice"),
    ]
    page.screenshot(path=SHOTS / "04-policies.png", full_page=True)

    # Keys and budgets: spend by team, create a key with budgets, see it listed, revoke it.
    page.click("#nav a[data-page=keys]")
    expect(page.locator("#team-spend")).to_contain_text("support")
    page.fill("#key-team", "finance")
    page.fill("#key-project", "forecast")
    page.fill("#key-daily", "5")
    page.fill("#key-monthly", "100.50")
    page.fill("#key-rpm", "60")
    page.click("#key-form button")
    expect(page.locator("#key-created")).to_contain_text("New key for finance: tg-")
    new_key = page.locator("#key-created").inner_text().split(": ")[1].split(" ")[0]
    row = page.locator("#key-list tr", has_text="finance")
    expect(row).to_contain_text("$0 of $100.5 (0.00%)")
    ok = openai.OpenAI(base_url=gw.openai_base_url, api_key=new_key, max_retries=0)
    raw = ok.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    gw.flush_ledger()
    page.check("#show-revoked")  # re-renders the page
    cost = raw.headers["x-tiergate-cost-usd"]
    [budgeted] = admin(gw, "GET", "/reports/key-spend")["data"]
    assert budgeted["spend_today_usd"] == budgeted["spend_month_usd"] == cost
    shown = f"{float(cost):.4f}".rstrip("0").rstrip(".")  # the console shows up to 4 decimals
    expect(page.locator("#key-list tr", has_text="finance")).to_contain_text(f"${shown} of $5")
    page.screenshot(path=SHOTS / "05-keys.png", full_page=True)
    page.uncheck("#show-revoked")
    page.on("dialog", lambda dialog: dialog.accept())
    row.locator("button", has_text="Revoke").click()
    expect(page.locator("#key-list tr", has_text="finance")).to_have_count(0)
    assert all(k["team"] != "finance" for k in admin(gw, "GET", "/keys")["data"])

    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()
    expect(page.locator("#page-keys")).to_be_hidden()
    # The only console errors allowed: the browser's notes on the wrong key's 401 and the invalid
    # policy's 400 (both provoked above).
    expected = (
        "status of 401",
        "status of 400 (Bad Request) {'url': '" + gw.base_url + "/admin/policies/validate'",
    )
    assert all(
        e.startswith("Failed to load resource") and any(x in e for x in expected) for e in page.errors
    ), page.errors


def test_console_files_and_headers(make_gateway):
    gw = with_console(make_gateway())
    index = httpx.get(f"{gw.base_url}/admin/ui/")
    assert index.status_code == 200 and "Tiergate admin" in index.text
    assert "script-src 'self'" in index.headers["content-security-policy"]
    assert (
        httpx.get(f"{gw.base_url}/admin/ui/static/app.js")
        .headers["content-type"]
        .startswith("text/javascript")
    )
    missing = httpx.get(f"{gw.base_url}/admin/ui/static/settings.py")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert httpx.get(f"{gw.base_url}/admin/ui/static/..%2F__init__.py").status_code == 404
