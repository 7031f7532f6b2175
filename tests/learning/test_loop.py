"""The whole loop on the simulated upstream: traffic -> shadow grades (+ feedback) -> `gateway router
calibrate --from-ledger` -> candidate version -> dry-run numbers -> activation -> better quality."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import httpx
import openai
import pytest
import yaml
from typer.testing import CliRunner

from gateway.routing.cli import router_app
from tests.learning.conftest import (
    ADMIN,
    LedgerEntry,
    ShadowGrade,
    admin,
    deployments,
    drain,
    is_hard,
    prompts,
    rows,
    send,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/ledger.db"
    return request.getfixturevalue("postgres_url")


def test_traffic_grades_calibration_dry_run_activation(learning_gateway, simulator, database_url, tmp_path):
    gw = learning_gateway(database_url=database_url)
    key = gw.create_key(team="search", project=None)
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=key, max_retries=0)
    served = {}
    for prompt in prompts():
        raw = send(client, prompt)
        assert raw.headers["x-tiergate-route"] == "economy/gpt-4o-mini"  # v1 sends everything below 0.9 there
        served[raw.headers["x-request-id"]] = prompt
    hard_ids = [rid for rid, p in served.items() if is_hard(p)]
    for rid in hard_ids[:3]:  # users complain about a few hard answers too
        response = httpx.post(
            f"{gw.openai_base_url}/feedback",
            json={"request_id": rid, "thumbs": "down"},
            headers={"authorization": f"Bearer {key}"},
        )
        assert response.status_code == 201
    drain(gw)
    assert len(rows(gw, ShadowGrade)) == len(served)

    # quality retained per tier, with its interval, before recalibration
    quality = admin(gw, "GET", "/reports/quality", params={"group_by": "tier"}).json()
    (economy,) = quality["data"]
    assert economy["group"] == {"tier": "economy"} and economy["graded"] == len(served)
    low, high = economy["quality_retained_ci"]
    assert economy["quality_retained"] == pytest.approx(1 - len(hard_ids) / len(served), abs=1e-4)
    assert low < economy["quality_retained"] < high and high - low < 0.3

    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"database_url": database_url, "deployments": deployments(simulator)}))
    result = CliRunner().invoke(
        router_app, ["calibrate", "--from-ledger", "--policy", "learn", "--team", "search", "-c", str(config)]
    )
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["evidence"] == {"shadow_grades": len(served), "feedback": 3}
    assert outcome["pass_curve"]["slope"] < 0 and outcome["pass_curve"]["n"] == len(served) + 3
    before, after = outcome["before"], outcome["after"]
    assert before["threshold"] == 0.9 and before["projected_quality"] < 0.8
    assert 0.2 < after["threshold"] < 0.32  # between the easy and the hard prompts' scores
    assert after["projected_quality"] >= 0.9 > before["projected_quality"]
    assert outcome["candidate"] == {"policy": "learn", "version": 2}

    dry_run = outcome["dry_run"]
    assert dry_run["candidate"]["version"] == 2 and dry_run["active"]["version"] == 1
    assert dry_run["quality"]["candidate"]["quality_retained"] >= 0.9
    assert dry_run["quality"]["active"]["quality_retained"] < 0.8
    assert dry_run["change_vs_active_micros"] > 0  # the better quality costs more: shown before activation
    assert (
        dry_run["candidate"]["tier_mix"]["frontier"] > 0 == dry_run["active"]["tier_mix"].get("frontier", 0)
    )

    # the admin API's dry-run shows the same projection; the candidate is not active yet
    simulated = admin(gw, "POST", "/policies/learn/simulate", json={"version": 2, "team": "search"}).json()
    assert simulated["quality"] == dry_run["quality"]
    assert (
        send(client, "Prove a theorem about tides step by step and explain why each step holds.").headers[
            "x-tiergate-route"
        ]
        == "economy/gpt-4o-mini"
    )

    assert admin(gw, "POST", "/policies/learn/activate", json={"version": 2}).status_code == 200
    gw.run(gw.app.state.policies.reload_if_changed())
    for prompt in prompts()[:16]:
        route = send(client, prompt).headers["x-tiergate-route"]
        assert route == ("frontier/gpt-4o" if is_hard(prompt) else "economy/gpt-4o-mini"), prompt
    drain(gw)
    newer = [g for g in rows(gw, ShadowGrade) if g.policy_version == 2]
    assert newer and all(g.passed for g in newer)  # what the cheap tier still gets, it answers well

    at_quality = admin(gw, "GET", "/reports/cost-at-quality", params={"group_by": "team,tier"}).json()["data"]
    by_tier = {row["group"]["tier"]: row for row in at_quality}
    assert by_tier["frontier"]["quality_retained"] == 1.0
    assert 0 < by_tier["economy"]["quality_retained"] < 1
    assert by_tier["economy"]["measurement_cost_usd"] != "0.000000"
    assert float(by_tier["economy"]["cost_per_query_at_quality_usd"]) > float(
        by_tier["economy"]["cost_per_query_usd"]
    )
    assert (
        httpx.get(
            f"{gw.base_url}/admin/reports/feedback", headers=ADMIN, params={"format": "csv"}
        ).text.count("\n")
        == 4
    )
    by_day = admin(gw, "GET", "/reports/quality", params={"group_by": "day,task_cluster"}).json()
    assert by_day["total"]["graded"] == len(rows(gw, ShadowGrade)) and by_day["data"][0]["group"]["day"]
    focus = list(
        csv.DictReader(io.StringIO(admin(gw, "GET", "/reports/focus", params={"granularity": "day"}).text))
    )
    measured = sum(r.cost_micros for r in rows(gw, LedgerEntry) if r.cost_class != "request")
    assert (
        sum(Decimal(r["EffectiveCost"]) for r in focus if r["x_CostClass"] != "request") * 1_000_000
        == measured
    )


def test_calibrate_from_ledger_refuses_without_policy_or_evidence(tmp_path, simulator, learning_gateway):
    runner = CliRunner()
    assert runner.invoke(router_app, ["calibrate", "--from-ledger"]).exit_code == 2
    gw = learning_gateway()  # the policy exists, but nothing has been graded yet
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump({"database_url": gw.settings.database_url, "deployments": deployments(simulator)})
    )
    unknown = runner.invoke(router_app, ["calibrate", "--from-ledger", "--policy", "nope", "-c", str(config)])
    assert unknown.exit_code == 1 and "no policy named nope" in unknown.output
    empty = runner.invoke(router_app, ["calibrate", "--from-ledger", "--policy", "learn", "-c", str(config)])
    assert empty.exit_code == 1 and "need at least 20" in empty.output
    listed = {row["name"]: row for row in admin(gw, "GET", "/policies").json()["data"]}
    assert listed["learn"]["latest_version"] == 1  # nothing was stored
