"""Routing policies: validation, every rule type, the admin API's version lifecycle and audit log,
routing `auto` / `policy/<name>` through the gateway, and simulate against a replayed ledger."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest
from typer.testing import CliRunner

from gateway.ledger.pricing import Price
from gateway.routing.policy import (
    DeploymentFacts,
    PolicyError,
    PolicySpec,
    Router,
    check_references,
    parse_policy,
)
from gateway.settings import Tier
from tests.gateway.test_openai_sdk import ledger_rows

ROOT = Path(__file__).resolve().parents[2]


def price(per_mtok: str) -> Price:
    p = Decimal(per_mtok)
    return Price(p, p * 4, p / 10, p, p, p * 4)


FACTS = {
    "local-small": DeploymentFacts("local-small", Tier.selfhost, price("0.02"), 2048),
    "gpt-4o-mini": DeploymentFacts("gpt-4o-mini", Tier.economy, price("0.15"), 128_000),
    "gpt-4o": DeploymentFacts("gpt-4o", Tier.frontier, price("2.5"), 128_000),
    "claude-sonnet": DeploymentFacts("claude-sonnet", Tier.frontier, price("3"), 200_000),
}


def policy(**overrides) -> dict:
    document = {
        "name": "balanced",
        "baseline": "gpt-4o",
        "bands": [
            {"from": 0.0, "to": 0.3, "deployment": "local-small"},
            {"from": 0.3, "to": 0.6, "deployment": "gpt-4o-mini"},
            {"from": 0.6, "to": 1.0, "deployment": "gpt-4o"},
        ],
        "fallbacks": {"local-small": ["gpt-4o-mini"], "gpt-4o-mini": ["gpt-4o"], "gpt-4o": ["claude-sonnet"]},
    }
    document.update(overrides)
    return document


def router(**overrides) -> Router:
    return Router(parse_policy(policy(**overrides)), 1, FACTS)


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bands", "message"),
    [
        ([{"from": 0.1, "to": 1, "deployment": "gpt-4o"}], "gap in bands: scores [0, 0.1)"),
        (
            [
                {"from": 0, "to": 0.5, "deployment": "gpt-4o-mini"},
                {"from": 0.6, "to": 1, "deployment": "gpt-4o"},
            ],
            "gap in bands: scores [0.5, 0.6)",
        ),
        (
            [
                {"from": 0, "to": 0.6, "deployment": "gpt-4o-mini"},
                {"from": 0.5, "to": 1, "deployment": "gpt-4o"},
            ],
            "overlapping bands: [0.0, 0.6) and [0.5, 1.0)",
        ),
        ([{"from": 0, "to": 0.9, "deployment": "gpt-4o"}], "gap in bands: scores [0.9, 1]"),
        ([{"from": 0.5, "to": 0.5, "deployment": "gpt-4o"}], "empty or reversed"),
        ([], "at least 1 item"),
    ],
)
def test_bands_must_cover_zero_to_one_exactly(bands, message):
    with pytest.raises(
        PolicyError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
    ):
        parse_policy(policy(bands=bands))


def test_unknown_deployments_are_named_with_where_they_appear():
    spec = parse_policy(policy(baseline="gpt-5", fallbacks={"gpt-4o": ["gpt-9"]}))
    with pytest.raises(PolicyError) as info:
        check_references(spec, FACTS)
    assert "fallbacks.gpt-4o: 'gpt-9'" in str(info.value) and "baseline: 'gpt-5'" in str(info.value)


def test_fallback_cycles_are_rejected_with_the_cycle():
    spec = parse_policy(
        policy(fallbacks={"gpt-4o": ["claude-sonnet"], "claude-sonnet": ["gpt-4o-mini", "gpt-4o"]})
    )
    with pytest.raises(PolicyError, match=r"fallback cycle: .*gpt-4o -> claude-sonnet -> gpt-4o"):
        check_references(spec, FACTS)


def test_unknown_fields_and_bad_names_are_rejected():
    with pytest.raises(PolicyError, match="bandz"):
        parse_policy({**policy(), "bandz": []})
    with pytest.raises(PolicyError, match="name"):
        parse_policy(policy(name="no spaces allowed"))


def test_published_schema_is_current():
    published = json.loads((ROOT / "gateway/routing/policy.schema.json").read_text())
    assert published == PolicySpec.model_json_schema(by_alias=True), "regenerate policy.schema.json"


def test_example_policy_is_valid():
    import yaml

    document = yaml.safe_load((ROOT / "examples/policy.yaml").read_text())
    facts = {**FACTS, "local-llama": FACTS["local-small"]}
    check_references(parse_policy(document), facts)


# --- decisions: one test per rule type ------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "deployment"),
    [(0.0, "local-small"), (0.29, "local-small"), (0.3, "gpt-4o-mini"), (1.0, "gpt-4o")],
)
def test_score_bands(score, deployment):
    decision = router().decide(score)
    assert decision.chain[0] == deployment
    assert f"-> {deployment}" in decision.reason and "policy balanced v1" in decision.reason


def test_fallback_chain_follows_the_policy():
    assert router().decide(0.1).chain == ("local-small", "gpt-4o-mini")
    assert router().decide(0.9).chain == ("gpt-4o", "claude-sonnet")


def test_on_prem_tag_never_leaves_the_self_hosted_tier():
    decision = router().decide(0.95, tags=["on-prem-only"])
    assert decision.chain == ("local-small",)  # not even its non-self-hosted fallback
    assert "on-prem tag" in decision.reason
    only_cloud = router(bands=[{"from": 0, "to": 1, "deployment": "gpt-4o"}], fallbacks={})
    with pytest.raises(PolicyError, match="no self-hosted deployment"):
        only_cloud.decide(0.1, tags=["on-prem-only"])


def test_price_ceiling_moves_to_an_allowed_deployment():
    decision = router(constraints={"max_price_per_mtok": 5}).decide(0.9)  # gpt-4o output $10/Mtok
    assert decision.chain[0] == "gpt-4o-mini" and "over the price ceiling" in decision.reason


def test_context_length_moves_up_to_a_bigger_window():
    decision = router().decide(0.1, prompt_tokens=5000)  # local-small holds 2048
    assert decision.chain[0] == "gpt-4o-mini" and "context 2048 < 5000" in decision.reason
    assert router(constraints={"enforce_context_length": False}).decide(0.1, prompt_tokens=5000).chain[0] == (
        "local-small"
    )


def test_spillover_when_the_self_hosted_tier_is_saturated():
    decision = router().decide(0.1, saturated=lambda name: name == "local-small")
    assert decision.chain[0] == "gpt-4o-mini" and "spill-over" in decision.reason
    assert router().decide(0.1, saturated=lambda name: False).chain[0] == "local-small"


# --- through the gateway ------------------------------------------------------------------------

ADMIN = {"authorization": "Bearer admin-secret", "x-tiergate-actor": "alice"}


def admin(gw, method, path, **kwargs):
    return httpx.request(method, f"{gw.base_url}/admin{path}", headers=ADMIN, timeout=30, **kwargs)


def test_policy_lifecycle_and_audit_log(make_gateway):
    gw = make_gateway()
    invalid = admin(
        gw,
        "POST",
        "/policies",
        json={"document": policy(bands=[{"from": 0, "to": 0.5, "deployment": "gpt-4o"}])},
    )
    assert invalid.status_code == 400 and "gap in bands" in invalid.json()["error"]["message"]
    assert admin(gw, "GET", "/policies").json()["data"] == []

    created = admin(gw, "POST", "/policies", json={"document": policy(), "comment": "first"})
    assert created.status_code == 201 and created.json() == {
        "name": "balanced",
        "version": 1,
        "active": False,
    }
    key = gw.create_key(team="search")
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=key, max_retries=0)
    with pytest.raises(openai.NotFoundError):  # created is not active, and nothing is assigned
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])

    assert admin(gw, "POST", "/policies/balanced/activate", json={"version": 1}).status_code == 200
    assert admin(gw, "PUT", "/assignments", json={"team": "search", "policy": "balanced"}).status_code == 200
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "What is 2+2?"}]
    )
    assert "policy balanced v1" in raw.headers["x-tiergate-route-reason"]
    assert raw.headers["x-tiergate-route"].split("/")[1] in FACTS

    cheap = policy(bands=[{"from": 0, "to": 1, "deployment": "gpt-4o-mini"}], fallbacks={})
    assert admin(gw, "POST", "/policies", json={"document": cheap}).json()["version"] == 2
    diff = admin(gw, "GET", "/policies/balanced/diff", params={"from_version": 1, "to_version": 2}).json()[
        "diff"
    ]
    assert "-  deployment: local-small" in diff and "+++ balanced v2" in diff
    admin(gw, "POST", "/policies/balanced/activate", json={"version": 2})
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "x"}]
    )
    assert raw.headers["x-tiergate-route"] == "economy/gpt-4o-mini"
    assert "policy balanced v2" in raw.headers["x-tiergate-route-reason"]

    rolled = admin(gw, "POST", "/policies/balanced/rollback")
    assert rolled.json() == {"name": "balanced", "active_version": 1}
    assert admin(gw, "GET", "/policies/balanced").json()["version"] == 1

    audit = admin(gw, "GET", "/audit").json()["data"]
    assert [(e["action"], e["version"], e["actor"]) for e in reversed(audit)] == [
        ("create", 1, "alice"),
        ("activate", 1, "alice"),
        ("assign", 1, "alice"),
        ("create", 2, "alice"),
        ("activate", 2, "alice"),
        ("rollback", 1, "alice"),
    ]
    rows = ledger_rows(gw)
    assert [(r.status_code, r.policy, r.policy_version) for r in rows] == [
        (404, None, None),  # `auto` before any policy was assigned: refused, and still ledgered
        (200, "balanced", 1),
        (200, "balanced", 2),
    ]
    assert all(0 <= r.complexity_score <= 1 for r in rows[1:])


def test_named_policy_explicit_deployment_and_models_list(make_gateway):
    gw = make_gateway()
    admin(
        gw,
        "POST",
        "/policies",
        json={
            "document": policy(
                name="cheap", bands=[{"from": 0, "to": 1, "deployment": "gpt-4o-mini"}], fallbacks={}
            )
        },
    )
    admin(gw, "POST", "/policies/cheap/activate", json={"version": 1})
    admin(gw, "PUT", "/assignments", json={"team": "*", "policy": "cheap"})
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(team="any"), max_retries=0)
    ids = [m.id for m in client.models.list()]
    assert ids[:2] == ["auto", "policy/cheap"] and "gpt-4o" in ids

    raw = client.chat.completions.with_raw_response.create(
        model="policy/cheap", messages=[{"role": "user", "content": "x"}]
    )
    assert raw.headers["x-tiergate-route"] == "economy/gpt-4o-mini"
    explicit = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}]
    )
    assert explicit.headers["x-tiergate-route-reason"] == "explicit deployment"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="policy/nope", messages=[{"role": "user", "content": "x"}])
    rows = ledger_rows(gw)
    assert rows[0].policy == "cheap" and rows[1].policy is None
    assert rows[1].baseline_deployment == "gpt-4o"


def test_on_prem_tag_header_through_the_gateway(make_gateway):
    gw = make_gateway()
    admin(gw, "POST", "/policies", json={"document": policy()})
    admin(gw, "POST", "/policies/balanced/activate", json={"version": 1})
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(), max_retries=0)
    hard = "Prove the Riemann hypothesis. " * 20
    raw = client.chat.completions.with_raw_response.create(
        model="policy/balanced",
        messages=[{"role": "user", "content": hard}],
        extra_headers={"x-tiergate-tags": "pii, on-prem-only"},
    )
    assert raw.headers["x-tiergate-route"] == "selfhost/local-small"


def test_simulate_against_a_replayed_workload(make_gateway):
    gw = make_gateway()
    admin(gw, "POST", "/policies", json={"document": policy()})
    admin(gw, "POST", "/policies/balanced/activate", json={"version": 1})
    admin(gw, "PUT", "/assignments", json={"team": "*", "policy": "balanced"})
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(), max_retries=0)
    workload = [json.loads(line) for line in (ROOT / "examples/workload.jsonl").read_text().splitlines()]
    for item in workload:
        client.chat.completions.create(model="auto", messages=item["messages"], max_tokens=64)
    gw.flush_ledger()
    everything_frontier = policy(bands=[{"from": 0, "to": 1, "deployment": "gpt-4o"}], fallbacks={})
    result = admin(
        gw, "POST", "/policies/balanced/simulate", json={"document": everything_frontier, "last": 1000}
    )
    assert result.status_code == 200, result.text
    report = result.json()
    rows = ledger_rows(gw)
    routed = [r for r in rows if r.complexity_score is not None]  # repeated questions were cache hits
    assert len(rows) == len(workload) and report["rows"] == len(routed) < len(rows)
    assert report["candidate"]["tier_mix"] == {"frontier": 100.0}
    # Everything on the baseline model: the candidate saves nothing on uncached traffic.
    assert report["candidate"]["cost_micros"] == report["baseline_cost_micros"]
    assert report["active"]["cost_micros"] == sum(r.cost_micros for r in routed)
    assert report["change_vs_active_micros"] > 0
    assert set(report["active"]["deployment_mix"]) <= set(FACTS)


def test_policy_cli_round_trip(tmp_path, simulator, monkeypatch):
    import yaml

    from gateway.cli import app as cli
    from tests.conftest import sim_deployments

    monkeypatch.setenv("SIM_KEY", "x")
    config = tmp_path / "tiergate.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database_url": f"sqlite+aiosqlite:///{tmp_path}/p.db",
                "deployments": sim_deployments(simulator),
            }
        )
    )
    document = tmp_path / "p.yaml"
    document.write_text(yaml.safe_dump(policy()))
    runner = CliRunner()
    run = lambda *args: runner.invoke(cli, ["policy", *args, "-c", str(config)], env={"COLUMNS": "200"})  # noqa: E731
    assert "valid" in run("validate", str(document)).output
    assert "created balanced v1" in run("create", str(document), "--actor", "bob").output
    assert run("activate", "balanced", "1", "--actor", "bob").exit_code == 0
    assert run("assign", "balanced", "--team", "*", "--actor", "bob").exit_code == 0
    assert "local-small" in run("show", "balanced").output
    document.write_text(yaml.safe_dump(policy(bands=[{"from": 0, "to": 0.5, "deployment": "gpt-4o"}])))
    bad = run("create", str(document))
    assert bad.exit_code == 2 and "gap in bands" in bad.output
    audit = json.loads(run("audit").output)
    assert [e["action"] for e in audit] == ["assign", "activate", "create"] and audit[0]["actor"] == "bob"
