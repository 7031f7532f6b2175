"""The reports through the admin API (JSON, CSV, FOCUS, errors) and the CLI, on real traffic."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import httpx
import openai
import pytest
import yaml
from typer.testing import CliRunner

from gateway.api.admin.reports import router as reports_router
from gateway.ledger.report_cli import focus_export, report

ADMIN = {"authorization": "Bearer admin-secret"}


def get(gw, path, **params):
    return httpx.get(f"{gw.base_url}/admin/reports{path}", params=params, headers=ADMIN, timeout=30)


@pytest.fixture
def gw(make_gateway):
    gw = make_gateway()
    if "/admin/reports/cost" not in {getattr(r, "path", "") for r in gw.app.routes}:
        gw.app.include_router(reports_router)  # until the app factory mounts it
    for team, model in (("search", "gpt-4o"), ("search", "gpt-4o-mini"), ("ads", "local-small")):
        client = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(team=team), max_retries=0)
        for i in range(2):  # distinct prompts: these requests must reach the upstream, not the cache
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": f"Say hi #{i}"}]
            )
    gw.flush_ledger()
    return gw


def test_json_report_attributes_savings(gw):
    response = get(gw, "/cost", group_by="team,tier")
    assert response.status_code == 200
    body = response.json()
    groups = {(d["group"]["team"], d["group"]["tier"]): d for d in body["data"]}
    assert set(groups) == {("search", "frontier"), ("search", "economy"), ("ads", "selfhost")}
    frontier = groups[("search", "frontier")]
    assert frontier["savings_micros"] == 0 and frontier["requests"] == 2  # the baseline itself
    economy = groups[("search", "economy")]
    assert economy["savings_by_source_micros"]["routing"] == economy["savings_micros"] > 0
    selfhost = groups[("ads", "selfhost")]
    assert selfhost["savings_by_source_micros"]["self_hosting"] == selfhost["savings_micros"] > 0
    assert body["total"]["requests"] == 6 and body["total"]["latency_p50_ms"] > 0
    filtered = get(gw, "/cost", group_by="deployment", team="ads").json()
    assert [d["group"]["deployment"] for d in filtered["data"]] == ["local-small"]


def test_csv_report_and_focus_export(gw):
    response = get(gw, "/cost", group_by="day", format="csv")
    assert response.headers["content-type"].startswith("text/csv")
    [row] = list(csv.DictReader(io.StringIO(response.text)))
    assert row["day"] == datetime.now(UTC).date().isoformat() and row["requests"] == "6"
    assert row["savings_by_source_usd_routing"] and row["tokens_output"]
    focus = get(gw, "/focus", granularity="request")
    records = list(csv.DictReader(io.StringIO(focus.text)))
    assert {r["x_RequestId"] for r in records} and len({r["x_RequestId"] for r in records}) == 6
    assert {r["ProviderName"] for r in records} == {"openai", "self-hosted"}


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/cost", {"group_by": "colour"}, "group_by"),
        ("/cost", {"since": "2026-11-02", "until": "2026-11-01"}, "since"),
        ("/cost", {"since": "yesterday"}, "since"),
        ("/cost", {"format": "xml"}, "format"),
        ("/focus", {"granularity": "week"}, "granularity"),
        ("/focus", {"since": "2026-11-02", "until": "2026-11-01"}, "since"),
    ],
)
def test_bad_input_is_an_openai_style_400(gw, path, params, param):
    response = get(gw, path, **params)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"] and error["type"] == "invalid_request_error"


def test_reports_need_the_admin_key(gw):
    response = httpx.get(f"{gw.base_url}/admin/reports/cost", headers={"authorization": "Bearer nope"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_cli_table_csv_json_and_focus(gw, tmp_path, simulator):
    from tests.conftest import sim_deployments

    config = tmp_path / "cli.yaml"
    config.write_text(
        yaml.safe_dump({"database_url": gw.settings.database_url, "deployments": sim_deployments(simulator)})
    )
    runner = CliRunner()
    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")

    def run(command, *args):
        import typer

        app = typer.Typer()
        app.command()(command)
        app.command("unused")(lambda: None)  # keep typer in sub-command mode
        return runner.invoke(app, [command.__name__.replace("_", "-"), *args, "-c", str(config)])

    table = run(report, "--group-by", "team", "--since", since, "--format", "table")
    assert table.exit_code == 0, table.output
    assert "search" in table.output and "ads" in table.output and "total" in table.output
    data = json.loads(run(report, "--group-by", "deployment", "--format", "json").output)
    assert data["total"]["requests"] == 6
    rows = list(csv.DictReader(io.StringIO(run(report, "--group-by", "hour,team", "-f", "csv").output)))
    assert sum(int(r["requests"]) for r in rows) == 6
    bad = run(report, "--group-by", "colour")
    assert bad.exit_code == 2 and "cannot group by colour" in bad.output
    out = tmp_path / "focus.csv"
    exported = run(focus_export, "--granularity", "hour", "--output", str(out))
    assert exported.exit_code == 0, exported.output
    assert len(list(csv.DictReader(out.open()))) >= 6
