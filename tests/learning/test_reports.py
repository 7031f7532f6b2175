"""Reports of the learning loop: quality retained with intervals (per tier, team, task cluster),
feedback beside it, cost at quality, the FOCUS export's cost classes, and `gateway report --kind`."""

from __future__ import annotations

import csv
import io
import json
import os
from decimal import Decimal

import httpx
import openai
import pytest
import yaml
from typer.testing import CliRunner

from gateway.cli import app as cli_app
from gateway.embedded import GatewayServer
from gateway.learning.stats import bootstrap_mean, wilson
from gateway.settings import Settings
from tests.learning.conftest import (
    ADMIN,
    LedgerEntry,
    admin,
    deployments,
    drain,
    is_hard,
    policy,
    prompts,
    rows,
    send,
)


def test_intervals():
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    assert wilson(0, 0) is None
    low, high = bootstrap_mean([0.0, 1.0] * 50)
    assert low < 0.5 < high and high - low < 0.25
    assert bootstrap_mean([0.7]) is None and bootstrap_mean([0.7, 0.7]) == (0.7, 0.7)


@pytest.fixture(scope="module")
def graded(request):
    """One gateway with shadow-graded traffic from two teams and some feedback (built once)."""
    make_gateway = request.getfixturevalue("learning_gateway")
    gw = make_gateway()
    keys = {team: gw.create_key(team=team, project=None) for team in ("search", "ads")}
    ids: dict[str, str] = {}
    for i, prompt in enumerate(prompts()):
        team = "search" if i % 2 else "ads"
        client = openai.OpenAI(base_url=gw.openai_base_url, api_key=keys[team], max_retries=0)
        ids[send(client, prompt).headers["x-request-id"]] = prompt
    for rid, prompt in list(ids.items())[:10]:
        score = 0.0 if is_hard(prompt) else 1.0
        httpx.post(
            f"{gw.openai_base_url}/feedback", json={"request_id": rid, "score": score}, headers=ADMIN
        ).raise_for_status()
    drain(gw)
    return gw, ids


@pytest.fixture(scope="module")
def learning_gateway(tmp_path_factory, simulator):
    """A module-scoped variant of the conftest fixture: the graded traffic is built once."""
    path = tmp_path_factory.mktemp("reports")
    started = []

    def start():
        os.environ["SIM_KEY"] = "sk-sim"
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{path}/ledger.db",
            spool_dir=path / "spool",
            admin_key="admin-secret",
            baseline_deployment="gpt-4o",
            ledger_flush_interval_s=0.05,
            deployments=deployments(simulator),
        )
        gw = GatewayServer(settings).start()
        started.append(gw)
        assert admin(gw, "POST", "/policies", json={"document": policy()}).status_code == 201
        admin(gw, "POST", "/policies/learn/activate", json={"version": 1})
        admin(gw, "PUT", "/assignments", json={"team": "*", "policy": "learn"})
        return gw

    yield start
    for gw in started:
        gw.stop()


def test_quality_by_team_and_task_cluster(graded):
    gw, ids = graded
    by_team = admin(gw, "GET", "/reports/quality", params={"group_by": "team"}).json()
    assert {row["group"]["team"] for row in by_team["data"]} == {"search", "ads"}
    assert sum(row["graded"] for row in by_team["data"]) == len(ids) == by_team["total"]["graded"]
    assert by_team["total"]["feedback_count"] == 10
    for row in by_team["data"]:
        low, high = row["quality_retained_ci"]
        assert 0 <= low <= row["quality_retained"] <= high <= 1
        assert row["mean_grade_ci"][0] <= row["mean_grade"] <= row["mean_grade_ci"][1]
    clusters = admin(gw, "GET", "/reports/quality", params={"group_by": "task_cluster"}).json()["data"]
    names = {row["group"]["task_cluster"]: row for row in clusters}
    assert {"code", "chat"} <= set(names)
    assert names["chat"]["quality_retained"] == 1.0  # short chit-chat: the economy answer is as good
    csv_text = admin(gw, "GET", "/reports/quality", params={"group_by": "tier,team", "format": "csv"}).text
    header = next(csv.reader(io.StringIO(csv_text)))
    assert header[:2] == ["tier", "team"] and "quality_retained_ci_low" in header


def test_bad_quality_queries_are_400(graded):
    gw, _ = graded
    for path, params in (
        ("/reports/quality", {"group_by": "colour"}),
        ("/reports/cost-at-quality", {"group_by": "task_cluster"}),
        ("/reports/quality", {"tier": "x", "group_by": "day,day"}),
    ):
        response = admin(gw, "GET", path, params=params)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == "group_by"


def test_focus_export_shows_measurement_as_its_own_cost_class(graded):
    gw, _ = graded
    ledger = rows(gw, LedgerEntry)
    shadow_micros = sum(r.cost_micros for r in ledger if r.cost_class == "shadow")
    assert shadow_micros > 0
    for granularity in ("request", "day"):
        text = admin(gw, "GET", "/reports/focus", params={"granularity": granularity}).text
        records = list(csv.DictReader(io.StringIO(text)))
        shadow = [r for r in records if r["x_CostClass"] == "shadow"]
        assert sum(Decimal(r["EffectiveCost"]) for r in shadow) * 1_000_000 == shadow_micros
        assert all(Decimal(r["ListCost"]) == 0 and "cost_class" in r["Tags"] for r in shadow)
        requests = [r for r in records if r["x_CostClass"] == "request"]
        assert sum(Decimal(r["EffectiveCost"]) for r in requests) * 1_000_000 == sum(
            r.cost_micros for r in ledger if r.cost_class == "request"
        )


def test_cli_reports(graded, tmp_path, simulator):
    gw, ids = graded
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump({"database_url": gw.settings.database_url, "deployments": deployments(simulator)})
    )
    runner = CliRunner()
    result = runner.invoke(
        cli_app,
        ["report", "--kind", "at-quality", "--group-by", "team,tier", "-f", "json", "-c", str(config)],
    )
    assert result.exit_code == 0, result.output
    cli = json.loads(result.stdout)
    api = admin(gw, "GET", "/reports/cost-at-quality", params={"group_by": "team,tier"}).json()
    assert cli == api
    economy = [row for row in cli["data"] if row["group"]["tier"] == "economy"]
    assert sum(row["requests"] for row in economy) == len(ids)
    table = runner.invoke(
        cli_app, ["report", "--kind", "quality", "--group-by", "task_cluster", "-c", str(config)]
    )
    assert table.exit_code == 0 and "Quality retained" in table.stdout
    bad = runner.invoke(cli_app, ["report", "--kind", "vibes", "-c", str(config)])
    assert bad.exit_code == 2
