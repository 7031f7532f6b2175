"""The simulator's answer-quality model and stand-in judge, through the openai SDK."""

from __future__ import annotations

import httpx
import openai

from gateway.learning.grading import judge_messages, parse_judge, similarity_grade


def answer(sim, model: str, prompt: str, quality: dict | None = None) -> str:
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="sk-sim", max_retries=0)
    extra = {"sim_quality": quality} if quality else None
    completion = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=64, extra_body=extra
    )
    return completion.choices[0].message.content


def words(text: str) -> list[str]:
    return text.lower().split()


def test_answers_agree_as_far_as_their_qualities_are_apart(simulator):
    prompt = "Explain tides in detail."
    canonical = answer(simulator, "model-a", prompt)
    assert answer(simulator, "model-b", prompt) == canonical  # no quality settings: same answer
    low_a = answer(simulator, "model-a", prompt, {"model-a": 0.0})
    low_b = answer(simulator, "model-b", prompt, {"model-b": 0.0})
    assert low_a == low_b != canonical  # equally bad models give the same wrong answer
    half = answer(simulator, "model-a", prompt, {"model-a": 0.5})
    agree = sum(x == y for x, y in zip(words(half), words(canonical), strict=True)) / len(words(canonical))
    assert 0.2 < agree < 0.8
    assert similarity_grade(low_a, canonical) < 0.3 < similarity_grade(half, canonical) < 0.95


def test_per_model_default_quality_and_the_judge(simulator):
    httpx.post(
        f"{simulator.base_url}/_sim/quality", json={"model": "dull-model", "quality": 0.0}
    ).raise_for_status()
    bad = httpx.post(f"{simulator.base_url}/_sim/quality", json={"model": "x", "quality": 2})
    assert bad.status_code == 400
    prompt = "Name three rivers."
    reference = answer(simulator, "model-a", prompt)
    poor = answer(simulator, "dull-model", prompt)
    assert poor != reference
    client = openai.OpenAI(base_url=simulator.openai_base_url, api_key="sk-sim", max_retries=0)

    def judge(candidate: str) -> float | None:
        messages = judge_messages([{"role": "user", "content": prompt}], reference, candidate)
        reply = client.chat.completions.create(model="sim-judge", messages=messages, max_tokens=8)
        return parse_judge(reply.choices[0].message.content)

    assert judge(reference) == 1.0
    assert judge(poor) < 0.4
    assert "sim-judge" in httpx.get(f"{simulator.base_url}/_sim/quality").json()["judges"]
