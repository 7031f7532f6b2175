"""The README's first command: `gateway demo` replays the example workload and reports from the ledger."""

from __future__ import annotations

from gateway.demo import DEFAULT_WORKLOAD, load_workload, run_demo


def test_demo_replays_the_workload_and_summarises_the_ledger(tmp_path):
    succeeded, total, by_team, by_deployment = run_demo(DEFAULT_WORKLOAD, tmp_path / "demo", concurrency=8)
    assert succeeded == total == len(load_workload(DEFAULT_WORKLOAD))
    assert sum(row["requests"] for row in by_team) == total
    # Repeated questions in the workload are answered by the exact-match cache: no deployment.
    assert {row["group"] for row in by_deployment} == {"gpt-4o", "gpt-4o-mini", "claude-sonnet", None}
    cached = next(row for row in by_deployment if row["group"] is None)
    assert cached["cost_micros"] == 0 and cached["baseline_cost_micros"] > 0
    support = next(row for row in by_team if row["group"] == "support")
    assert support["cost_micros"] > 0 and support["savings_pct"] > 80  # gpt-4o-mini against gpt-4o
