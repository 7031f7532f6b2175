"""One real vLLM replica (tiny bf16 Llama, max-num-seqs 2) started by the launcher, used by every test here."""

import asyncio
import itertools
import subprocess
import sys
from collections import Counter
from decimal import Decimal

import httpx
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.upstreams.usage import Usage
from selfhost.cost import CostMeter, request_cost_micro_usd
from selfhost.launcher import Launcher
from selfhost.pool import LoadLimits, ReplicaPool
from tests.selfhost.conftest import REPO, onprem_first_gateway, serving, tiny_deployment

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

MAX_NUM_SEQS = 2
# Load that lasts tens of seconds even on a quiet machine (31 s measured): 16 requests x 1,024 tokens,
# 2 at a time, i.e. 8,192 engine steps at the least.
LOAD_REQUESTS, LOAD_TOKENS = 16, 1024
# ~330 tokens with the tiny tokenizer: more than two full 128-token KV blocks, so prefix caching can hit.
SYSTEM_PROMPT = "You are a careful assistant for a payments company. " * 24


@pytest.fixture(scope="module")
def deployment(tiny_models):
    return tiny_deployment(tiny_models["main"], batching={"max_num_seqs": MAX_NUM_SEQS})


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("selfhost-state")


@pytest.fixture(scope="module")
def replica(deployment, vllm_python, state_dir):
    with serving(deployment, vllm_python, state_dir) as running:
        yield running
    assert not running.alive(), "the launcher must stop the server"


@pytest.fixture
async def client(replica):
    async with openai.AsyncOpenAI(base_url=f"{replica.plan.base_url}/v1", api_key="unused") as c:
        yield c


async def test_chat_completion_reports_exact_usage(client):
    response = await client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=12,
        extra_body={"ignore_eos": True},
    )
    assert response.choices[0].finish_reason == "length"
    assert response.choices[0].message.content
    assert response.usage.completion_tokens == 12
    assert response.usage.prompt_tokens > 3
    assert response.usage.total_tokens == response.usage.prompt_tokens + 12
    assert response.usage.prompt_tokens_details.cached_tokens == 0


async def test_streaming_ends_with_a_usage_chunk(client):
    stream = await client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Count to five."}],
        max_tokens=10,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 10
    assert all(c.usage is None for c in chunks[:-1])


async def test_shared_long_prefix_is_served_from_the_prefix_cache(client):
    async def ask(question: str):
        return await client.chat.completions.create(
            model="tiny",
            messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}],
            max_tokens=2,
        )

    first = await ask("What is a chargeback?")
    second = await ask("What is a refund?")
    assert first.usage.prompt_tokens > 256
    assert second.usage.prompt_tokens_details.cached_tokens >= 256  # whole 128-token blocks


def _vllm_counters(text: str) -> Counter:
    """Every ``vllm:`` sample of a /metrics text, summed over label sets but a histogram bucket's ``le``."""
    totals: Counter = Counter()
    for family in text_string_to_metric_families(text):
        if family.name.startswith("vllm:"):
            for sample in family.samples:
                totals[sample.name, sample.labels.get("le")] += sample.value
    return totals


async def _counters(http: httpx.AsyncClient, base_url: str) -> Counter:
    response = await http.get(f"{base_url}/metrics", timeout=120)
    response.raise_for_status()
    return _vllm_counters(response.text)


async def _counters_once_served(http: httpx.AsyncClient, base_url: str, before: Counter, requests: int):
    """vLLM's counters once they account for `requests` more finished requests than `before` (they are
    updated as the answers go out; a busy server's /metrics may still lag the last answer a little)."""
    for _ in range(60):
        after = await _counters(http, base_url)
        done = after["vllm:request_success_total", None] - before["vllm:request_success_total", None]
        if done >= requests:
            return after
        await asyncio.sleep(0.5)
    raise AssertionError(f"vLLM counted {done} of {requests} finished requests")


async def test_continuous_batching_runs_max_num_seqs_and_queues_the_rest_then_pool_spills_over(
    client, replica
):
    """16 concurrent requests of 1,024 tokens against max-num-seqs 2: vLLM batches 2 sequences per engine
    step and queues the rest; a pool that tolerates no queue refuses the replica (spill-over) during the
    load and takes it back once the queue has drained.

    What vLLM did is read from its own cumulative counters, before and after the load, not from its
    running/waiting gauges sampled mid-flight: on a saturated 2-core machine vLLM answers /metrics late
    (after the batch) or stale, and the tiny model can finish the load between two samples, so a sampled
    "2 running, 14 waiting" was luck rather than proof. The counters cannot miss what happened:
    - engine steps (`vllm:iteration_tokens_total` count): a step decodes at most one token per running
      sequence, so 16 x 1,024 generated tokens take at least 8,192 steps when at most 2 run at once (16
      at once would need ~1,024), and one request at a time would need 16,384; fewer than 3/4 of that
      means more than 1.33 sequences per step on average: continuous batching. (Measured: 8,193 steps,
      and 9,216 on a saturated machine where one request reached the engine late and ran alone.)
    - queue time (`vllm:request_queue_time_seconds` sum) against decode time: with 2 slots the k-th pair
      of requests waits for the k-1 pairs before it, about 3.5 x the total decode time for 8 pairs
      (with 4 slots it would be 1.5 x, with 16 none); we require at least half of 3.5 x (measured 3.0-3.8 x).
    The pool's spill-over comes from its own scrapes during the load (a queue, no answer in time, or no
    scrape for longer than its refresh loop takes all mean the queue may be long); the load lasts tens of
    seconds, far longer than its 0.2 s refresh interval. This process gets little CPU beside vLLM: its
    event loop stalls for 15-27 s at a time (measured), so a load may see only two or three scrapes; the
    pool must not read the idle scrape from before a stall as the replica's state after it.
    """
    expected_tokens = LOAD_REQUESTS * LOAD_TOKENS
    async with (
        httpx.AsyncClient() as http,
        ReplicaPool([replica.replica()], LoadLimits(max_waiting=0), refresh_interval=0.2) as pool,
    ):
        assert pool.pick() == replica.replica()
        pool.release(replica.replica().id)
        before = await _counters(http, replica.plan.base_url)
        requests = [
            asyncio.create_task(
                client.completions.create(
                    model="tiny",
                    prompt=f"request {i}:",
                    max_tokens=LOAD_TOKENS,
                    extra_body={"ignore_eos": True},
                )
            )
            for i in range(LOAD_REQUESTS)
        ]
        spilled = False
        while not all(t.done() for t in requests):  # the pool's own scrapes, every 0.2 s
            if (picked := pool.pick()) is None:
                spilled = True
            else:
                pool.release(picked.id)
            await asyncio.sleep(0.05)
        results = await asyncio.gather(*requests, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        assert not failed, f"load requests failed: {failed!r}"
        assert [r.usage.completion_tokens for r in results] == [LOAD_TOKENS] * LOAD_REQUESTS
        after = await _counters_once_served(http, replica.plan.base_url, before, LOAD_REQUESTS)
        for _ in range(300):  # taken back once the queue drained and a scrape answered in time again
            if (picked := pool.pick()) is not None:
                break
            await asyncio.sleep(0.1)
        assert picked == replica.replica(), f"the pool did not take the replica back: {pool.states()}"

    def delta(name: str) -> float:
        return after[name, None] - before[name, None]

    assert delta("vllm:generation_tokens_total") == expected_tokens  # we were the only client
    steps = delta("vllm:iteration_tokens_total_count")
    queued, decoding = (
        delta("vllm:request_queue_time_seconds_sum"),
        delta("vllm:request_decode_time_seconds_sum"),
    )
    print(
        f"{steps:.0f} engine steps for {expected_tokens} tokens; queued {queued:.1f} s, decoding {decoding:.1f} s"
    )
    assert steps >= expected_tokens / MAX_NUM_SEQS, f"more than {MAX_NUM_SEQS} sequences in a step: {steps}"
    assert steps < 0.75 * expected_tokens, (
        f"no continuous batching: {steps} steps for {expected_tokens} tokens"
    )
    pairs = LOAD_REQUESTS / MAX_NUM_SEQS
    assert queued >= decoding * (pairs - 1) / 4, (
        f"requests beyond max-num-seqs did not queue: {queued=} {decoding=}"
    )
    assert spilled, f"the pool never refused the replica during the load: {pool.states()}"


async def test_cost_meter_prices_the_window_from_vllms_own_token_counters(client, replica, deployment):
    meter = CostMeter(deployment.cost)
    pool = ReplicaPool([replica.replica()], on_scrape=meter.observe)
    await pool.refresh()
    responses = await asyncio.gather(
        *(
            client.completions.create(
                model="tiny", prompt=f"invoice {i}", max_tokens=32, extra_body={"ignore_eos": True}
            )
            for i in range(4)
        )
    )
    await pool.refresh()
    await pool.aclose()
    price = meter.price()
    prompt = sum(r.usage.prompt_tokens for r in responses)
    generation = sum(r.usage.completion_tokens for r in responses)
    # we are the only client: the server's counters moved by exactly what the responses report
    assert (price.prompt_tokens, price.generation_tokens) == (prompt, generation)
    window_cost = Decimal("0.10") * 1_000_000 * price.window_seconds / 3600
    expected = (window_cost * 1_000_000 / (prompt + generation)).to_integral_value()
    assert price.input_micro_usd_per_million == price.output_micro_usd_per_million == int(expected)
    charged = sum(
        request_cost_micro_usd(price, r.usage.prompt_tokens, r.usage.completion_tokens) for r in responses
    )
    assert abs(charged - window_cost) <= len(responses)  # rounding only


def test_launcher_state_and_cli_status_see_the_replica(replica, deployment, state_dir, vllm_python):
    launcher = Launcher(state_dir=state_dir, vllm=str(vllm_python.parent / "vllm"))
    (running,) = launcher.running()
    assert running.pid == replica.pid
    (again,) = launcher.up([deployment], timeout=5)  # already serving: nothing new is started
    assert again.pid == replica.pid
    out = subprocess.run(
        [sys.executable, "-m", "selfhost.cli", "status", "--state-dir", str(state_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    ).stdout
    assert replica.plan.id in out
    assert "yes" in out


async def test_cli_cost_prices_the_replica_from_live_traffic(
    client, replica, deployment, state_dir, tmp_path
):
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(yaml.safe_dump({"deployments": [deployment.model_dump(mode="json")]}))
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "selfhost.cli", "cost", "--window", "4"),
        *("--catalogue", str(catalogue), "--state-dir", str(state_dir)),
        cwd=REPO,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE,
    )
    finished = asyncio.create_task(cli.communicate())
    while not finished.done():  # traffic during the whole window, whenever its readings are taken
        await client.completions.create(
            model="tiny", prompt="traffic", max_tokens=16, extra_body={"ignore_eos": True}
        )
    out = (await finished)[0].decode()
    assert cli.returncode == 0
    row = next(line for line in out.splitlines() if replica.plan.id in line)
    assert "no traffic" not in row
    assert "0.10" in row  # $/hour from the catalogue


# --- through the gateway ----------------------------------------------------------------------------


@pytest.fixture
def gateway(make_gateway, simulator, deployment, tmp_path):
    """This replica's deployment first, gpt-4o-mini next; spill-over as soon as a request would queue."""
    return onprem_first_gateway(
        make_gateway,
        simulator,
        deployment,
        tmp_path,
        spillover={"max_waiting": 0, "max_kv_cache_usage": None},
    )


def _ledger(gw):
    from tests.gateway.test_openai_sdk import ledger_rows

    return ledger_rows(gw)


async def test_chat_and_streaming_through_the_gateway_with_usage_and_on_prem_cost(
    gateway, deployment, client
):
    key = gateway.create_key()
    sdk = openai.AsyncOpenAI(base_url=gateway.openai_base_url, api_key=key, max_retries=0)
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "Hello there"}]
    direct = await client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=16, temperature=0
    )
    await asyncio.sleep(2.5)  # two scrapes with traffic between them: the cost meter has a measured price
    raw = await sdk.chat.completions.with_raw_response.create(
        model=deployment.name, messages=messages, max_tokens=16, temperature=0
    )  # same prompt and sampling as `direct`: the same tokens
    completion = raw.parse()
    assert raw.headers["x-tiergate-route"] == f"selfhost/{deployment.name}"
    assert completion.usage.prompt_tokens == direct.usage.prompt_tokens  # vLLM's own counts, relayed
    price = gateway.app.state.pipeline.upstreams.selfhosted[deployment.name].price()

    stream = await sdk.chat.completions.create(
        model="auto",
        messages=messages,
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},  # a random model may stop at any token: make the length exact
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage.completion_tokens == 16
    await sdk.close()

    rows = _ledger(gateway)
    assert [(r.tier, r.provider, r.stream) for r in rows] == [
        ("selfhost", "vllm", False),
        ("selfhost", "vllm", True),
    ]
    first = rows[0]
    assert (first.input_uncached_tokens + first.input_cache_read_tokens, first.output_tokens) == (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
    )
    # The measured price moves a little with every scrape; the row must be priced by it, not by zero.
    priced = price.cost_micros(Usage(input_uncached=completion.usage.prompt_tokens, output=16))
    assert first.cost_micros > 0 and abs(first.cost_micros - priced) <= max(2, priced // 2)
    assert first.baseline_cost_micros > first.cost_micros  # gpt-4o list price for the same tokens


async def test_spill_over_to_the_next_tier_when_the_replicas_queue_up(
    gateway, deployment, replica, monkeypatch
):
    """Load sent through the gateway to the replica (by deployment name) fills its max-num-seqs: `auto`
    requests spill over to the next band at once, from what the gateway has in flight, without waiting for
    a /metrics scrape (vLLM on a saturated CPU answers its /metrics late); they come back afterwards.

    The routing decision is judged by what the gateway's pool had in flight when the policy asked it,
    recorded at that moment, not by when the client's requests happened to be sent or answered. On a
    saturated 2-core machine an `auto` request answered by the simulated provider took up to 26 s to come
    back (measured), so the earlier version, which sent its three `auto` requests one after the other,
    could have the last one decided after the load had drained, and routed to the replica. Now the three
    are sent together the moment more than max-num-seqs are in flight, and each decision must have seen
    at least max-num-seqs in flight (else the load ended first, which the test reports as such).
    Afterwards a scrape of the idle replica may still time out on a machine that busy (which counts as
    busy, by design): coming back is awaited, bounded.

    A load request once got a 504: this process's event loop, starved beside vLLM, stalled past aiohttp's
    10 s connect deadline while connecting to the replica (which had accepted at once). The self-hosted
    tier now sends a request whose connect timed out once more (`gateway.upstreams.selfhosted.SEND_ONCE_MORE`).
    """
    key = gateway.create_key()
    sdk = openai.AsyncOpenAI(
        base_url=gateway.openai_base_url, api_key=key, max_retries=0, timeout=httpx.Timeout(300, connect=60)
    )
    asked = itertools.count()

    def question() -> list[dict]:  # distinct each time: answered by routing, never by the response cache
        return [{"role": "user", "content": f"What is the capital of France? ({next(asked)})"}]

    async def route() -> tuple[str, str]:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="auto", messages=question(), max_tokens=4
        )
        return raw.headers["x-tiergate-route"], raw.headers["x-tiergate-route-reason"]

    upstream = gateway.app.state.pipeline.upstreams.selfhosted[deployment.name]
    (state,) = upstream.pool.states()
    selfhost = f"selfhost/{deployment.name}"
    decisions: list[tuple[int, bool]] = []  # (in flight, saturated) whenever routing asked the tier
    saturated = upstream.saturated

    def observed_saturated(limits):
        in_flight = state.in_flight
        answer = saturated(limits)
        decisions.append((in_flight, answer))
        return answer

    monkeypatch.setattr(upstream, "saturated", observed_saturated)

    async def settled() -> None:  # nothing in flight and a fresh scrape that shows no queue
        for _ in range(600):
            if (
                state.in_flight == 0
                and state.in_service
                and not state.slow
                and state.load
                and not state.load.waiting
            ):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"the replica did not settle: {state}")

    async def routed_back() -> list[tuple[str, str]]:
        """`auto` requests until one goes to the replica again (a scrape that timed out spills one)."""
        seen = []
        for _ in range(20):
            await settled()
            seen.append(await route())
            if seen[-1][0] == selfhost:
                return seen
        raise AssertionError(f"`auto` requests did not come back to the replica: {seen} {state}")

    await routed_back()
    load = [
        asyncio.create_task(
            sdk.completions.create(
                model=deployment.name,
                prompt=f"load {i}:",
                max_tokens=LOAD_TOKENS,
                extra_body={"ignore_eos": True},
            )
        )
        for i in range(LOAD_REQUESTS)
    ]
    for _ in range(2400):  # the load reaches the gateway's pool: more in flight than the replica batches
        if state.in_flight > MAX_NUM_SEQS or all(t.done() for t in load):
            break
        await asyncio.sleep(0.05)
    assert not all(t.done() for t in load), f"the load finished before it queued: {state}"
    decisions.clear()
    routes = await asyncio.gather(*(route() for _ in range(3)))
    during = list(decisions)
    results = await asyncio.gather(*load)
    assert [r.usage.completion_tokens for r in results] == [LOAD_TOKENS] * LOAD_REQUESTS
    assert len(during) == 3, during
    assert all(in_flight >= MAX_NUM_SEQS for in_flight, _ in during), f"the load ended first: {during}"
    assert [r for r, _ in routes] == ["economy/gpt-4o-mini"] * 3, (routes, during, state)
    assert all("spill-over" in reason for _, reason in routes), routes
    print(f"in flight when routing decided: {[n for n, _ in during]}; back after {len(await routed_back())}")
    await sdk.close()
