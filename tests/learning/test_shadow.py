"""Shadow quality sampling: grades that track answer quality, its own ledger cost class, the daily
spending cap, a bounded queue that drops and counts, and a request path that never waits for it."""

from __future__ import annotations

import time
from decimal import Decimal

import httpx
import openai
import pytest

from gateway.learning.clusters import task_cluster
from gateway.learning.grading import parse_judge, similarity_grade
from gateway.learning.shadow import ShadowSampler, sampled
from gateway.ledger.report import cost_report
from gateway.pipeline import Exchange
from gateway.upstreams.usage import Usage
from tests.learning.conftest import (
    LedgerEntry,
    ShadowGrade,
    deployments,
    drain,
    is_hard,
    policy,
    prompts,
    rows,
    send,
)

# --- pieces -------------------------------------------------------------------------------------


def test_sampling_is_deterministic_and_near_the_share():
    ids = [f"req-{i:06d}" for i in range(4000)]
    chosen = [i for i in ids if sampled(i, 0.1)]
    assert chosen == [i for i in ids if sampled(i, 0.1)]
    assert 0.08 < len(chosen) / len(ids) < 0.12
    assert not any(sampled(i, 0.0) for i in ids) and all(sampled(i, 1.0) for i in ids)


def test_graders():
    assert similarity_grade("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    assert similarity_grade("completely different words here", "the cat sat on the mat") == 0.0
    assert 0.2 < similarity_grade("the cat sat on a rug", "the cat sat on the mat") < 0.9
    assert parse_judge("8") == pytest.approx(7 / 9)
    assert parse_judge("Score: 10/10") == 1.0
    assert parse_judge("1") == 0.0
    assert parse_judge("no idea") is None


@pytest.mark.parametrize(
    ("prompt", "cluster"),
    [
        ("Fix this:\n```python\nprint(1\n```", "code"),
        ("Compute $\\int_0^1 x^2 dx$ and \\frac{1}{2}", "math"),
        ("Which is a mammal?\nA. shark\nB. whale\nC. trout\nD. eel", "multiple_choice"),
        ("Explain why the sky is blue, step by step.", "reasoning"),
        ("Write a poem about the sea.", "creative"),
        ("Hello there, how are you?", "chat"),
    ],
)
def test_task_clusters(prompt, cluster):
    assert task_cluster([{"role": "user", "content": prompt}]) == cluster


# --- through the gateway ------------------------------------------------------------------------


def test_similarity_grades_track_quality_and_are_ledgered_as_their_own_class(learning_gateway):
    gw = learning_gateway()
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(team="search"), max_retries=0)
    served = {}
    for prompt in prompts():
        raw = send(client, prompt)
        assert raw.headers["x-tiergate-route"] == "economy/gpt-4o-mini"
        served[raw.headers["x-request-id"]] = prompt
    drain(gw)

    grades = {g.request_id: g for g in rows(gw, ShadowGrade)}
    assert set(grades) == set(served)  # share 1.0: every economy answer measured
    for request_id, grade in grades.items():
        assert grade.team == "search" and grade.tier == "economy" and grade.reference_deployment == "gpt-4o"
        assert grade.method == "similarity" and grade.cost_micros > 0 and grade.task_cluster
        if is_hard(served[request_id]):
            assert grade.grade < 0.5 and not grade.passed
        else:
            assert grade.grade > 0.99 and grade.passed
    assert {g.passed for g in grades.values()} == {True, False}

    ledger = rows(gw, LedgerEntry)
    requests = [r for r in ledger if r.cost_class == "request"]
    shadows = [r for r in ledger if r.cost_class == "shadow"]
    assert len(requests) == len(shadows) == len(served)
    assert {r.parent_request_id for r in shadows} == set(served)
    assert all(r.deployment == "gpt-4o" and r.key_id is None and r.team == "search" for r in shadows)
    assert all(r.baseline_cost_micros == 0 and r.complexity_score is None for r in shadows)
    for request_id, grade in grades.items():
        (shadow,) = [r for r in shadows if r.parent_request_id == request_id]
        assert grade.reference_cost_micros == shadow.cost_micros == grade.cost_micros

    metrics = httpx.get(f"{gw.base_url}/metrics").text
    assert 'tiergate_shadow_cost_usd_total{cost_class="shadow",team="search"}' in metrics
    assert 'tiergate_shadow_samples_total{outcome="graded"}' in metrics

    # the cost report's request figures hold client requests only; measurement is not in their savings
    report = gw.run(cost_report(gw.app.state.engine, "team", None, None, {}))
    total = report.total.to_dict()
    assert total["requests"] == len(requests)
    assert total["cost_micros"] == sum(r.cost_micros for r in requests)


def test_judge_grader(learning_gateway):
    gw = learning_gateway(policy(grader="judge", judge="judge"))
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(), max_retries=0)
    easy, hard = (
        "What is primes?",
        "Prove a theorem about gravity step by step and explain why each step holds.",
    )
    assert not is_hard(easy) and is_hard(hard)
    ids = {send(client, p).headers["x-request-id"]: p for p in (easy, hard)}
    drain(gw)
    grades = {g.request_id: g for g in rows(gw, ShadowGrade)}
    assert set(grades) == set(ids)
    by_prompt = {ids[rid]: g for rid, g in grades.items()}
    assert by_prompt[easy].method == "judge" and by_prompt[easy].grade == 1.0 and by_prompt[easy].passed
    assert by_prompt[hard].grade < 0.5 and not by_prompt[hard].passed
    assert "judge_reply" in by_prompt[hard].detail
    ledger = rows(gw, LedgerEntry)
    judges = [r for r in ledger if r.cost_class == "judge"]
    assert {r.parent_request_id for r in judges} == set(ids) and all(r.deployment == "judge" for r in judges)
    for grade in grades.values():
        spent = sum(r.cost_micros for r in ledger if r.parent_request_id == grade.request_id)
        assert grade.cost_micros == spent > grade.reference_cost_micros


def test_daily_spending_cap_is_never_exceeded(learning_gateway):
    cap = Decimal("0.004")
    gw = learning_gateway(policy(max_usd_per_day=str(cap)))
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(), max_retries=0)
    for prompt in prompts()[:24]:
        send(client, prompt)
    drain(gw)
    sampler = gw.app.state.shadow_sampler
    spent = sum(r.cost_micros for r in rows(gw, LedgerEntry) if r.cost_class != "request")
    assert 0 < spent <= cap * 1_000_000
    assert sampler.counts["graded"] >= 1 and sampler.counts["over_cap"] >= 1
    assert sampler.counts["graded"] + sampler.counts["over_cap"] == 24
    assert len(rows(gw, ShadowGrade)) == sampler.counts["graded"]


def test_a_restarted_gateway_keeps_counting_todays_spend(learning_gateway, make_gateway, simulator):
    gw = learning_gateway(policy(max_usd_per_day="0.004"))
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(), max_retries=0)
    for prompt in prompts()[:12]:
        send(client, prompt)
    drain(gw)
    spent = gw.app.state.shadow_sampler.spend.spent["learn"]
    gw.stop()
    again = make_gateway(deployments=deployments(simulator))  # same database (tmp_path)
    assert again.app.state.shadow_sampler.spend.spent["learn"] == spent > 0


def test_the_request_path_never_waits_for_the_shadow_call(learning_gateway, simulator):
    gw = learning_gateway()
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(), max_retries=0)
    httpx.post(
        f"{simulator.base_url}/_sim/latency", json={"model": "gpt-4o", "ttft_ms": 1500}
    ).raise_for_status()
    try:
        started = time.perf_counter()
        for prompt in prompts()[:4]:
            send(client, prompt)
        assert time.perf_counter() - started < 1.5  # four answers while the first shadow call still runs
        assert gw.app.state.shadow_sampler.counts["queued"] == 4
        drain(gw)
    finally:
        httpx.post(
            f"{simulator.base_url}/_sim/latency", json={"model": "gpt-4o", "ttft_ms": 0}
        ).raise_for_status()
    assert len(rows(gw, ShadowGrade)) == 4


def test_a_full_queue_drops_and_counts(learning_gateway):
    gw = learning_gateway()
    state = gw.app.state
    sampler = ShadowSampler(state.engine, state.pipeline.upstreams, state.ledger, queue_size=2)  # no workers
    router = state.policies.book.routers["learn"]
    for i in range(5):
        ex = Exchange(request_id=f"req-{i:08d}", endpoint="chat", started=0.0, policy=router)
        ex.target = state.pipeline.upstreams.targets["gpt-4o-mini"]
        ex.usage = Usage(input_uncached=10, output=20)
        sampler.observe(
            ex, {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}, {"choices": []}
        )
    assert sampler.counts == {"queued": 2, "dropped": 3}
    assert sampler.queue.qsize() == 2
