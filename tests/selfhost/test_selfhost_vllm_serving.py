"""One real vLLM replica (tiny bf16 Llama, max-num-seqs 2) started by the launcher, used by every test here."""

import asyncio
import itertools
import subprocess
import sys
from decimal import Decimal

import httpx
import openai
import pytest
import yaml

from gateway.upstreams.usage import Usage
from selfhost.cost import CostMeter, request_cost_micro_usd
from selfhost.launcher import Launcher
from selfhost.pool import LoadLimits, ReplicaPool
from selfhost.probe import probe
from tests.selfhost.conftest import REPO, serving, tiny_deployment

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

MAX_NUM_SEQS = 2
# Load that outlasts several scrapes even on a quiet machine, where the tiny model is fast and a busy
# server's /metrics answers slowly (4.5 s measured): 16 requests x 1,024 tokens, 2 at a time.
LOAD_REQUESTS, LOAD_TOKENS = 16, 1024
# ~330 tokens with the tiny tokenizer: more than two full 128-token KV blocks, so prefix caching can hit.
SYSTEM_PROMPT = "You are a careful assistant for a payments company. " * 24


# Known flaky on 2-core CI machines: vLLM on a saturated CPU answers /metrics late or stale, and the
# tiny model can finish the whole load between two scrapes. Still run; a pass is evidence, a failure is
# reported (not hidden) but does not block. Tracked as open in issue 7.
LOAD_DYNAMICS_FLAKY = pytest.mark.xfail(
    strict=False, reason="load dynamics of vLLM on a saturated 2-core CPU (see the comment above)"
)


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


@LOAD_DYNAMICS_FLAKY
async def test_continuous_batching_runs_max_num_seqs_and_queues_the_rest_then_pool_spills_over(
    client, replica
):
    """16 concurrent requests against max-num-seqs 2: /metrics shows 2 running and the rest waiting, a pool
    that tolerates no queue refuses the replica (spill-over), and takes it back once the queue drains."""
    async with ReplicaPool([replica.replica()], LoadLimits(max_waiting=0), refresh_interval=0.2) as pool:
        assert pool.pick() == replica.replica()
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
        seen_full, spilled, observed = None, False, []

        async def watch_the_pool() -> None:  # the pool's own scrapes, every 0.2 s, beside ours
            nonlocal spilled
            while not all(t.done() for t in requests):
                spilled = spilled or (pool.pick() is None)
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch_the_pool())
        answered_during_load = 0
        async with httpx.AsyncClient() as http:
            while not all(t.done() for t in requests):
                load = await probe(http, replica.plan.base_url, 120)  # its answer may wait for the batch
                answered_during_load += not all(t.done() for t in requests)
                observed.append((load.running, load.waiting, load.error))
                if load.running == MAX_NUM_SEQS and load.waiting >= 1:
                    seen_full = seen_full or load
                await asyncio.sleep(0.1)
        await watcher
        results = await asyncio.gather(*requests, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        assert not failed, f"load requests failed: {failed!r}"
        assert [r.usage.completion_tokens for r in results] == [LOAD_TOKENS] * LOAD_REQUESTS
        assert spilled, "the pool never refused the overloaded replica"
        await pool.refresh()
        await pool.refresh()
        assert pool.pick() == replica.replica()  # taken back once the queue drained
    if answered_during_load <= 1:  # only the probe sent before the load arrived came back in time
        pytest.skip(f"vLLM answered /metrics only after the batch ran, nothing to observe: {observed}")
    assert seen_full is not None, f"never saw a full batch with a queue behind it: {observed}"
    assert seen_full.running + seen_full.waiting <= LOAD_REQUESTS


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
    """The gateway with this replica's deployment registered from a catalogue file, plus simulated
    provider deployments, and a policy whose first band is the self-hosted tier."""
    from tests.conftest import sim_deployments

    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(yaml.safe_dump({"version": 1, "deployments": [deployment.model_dump(mode="json")]}))
    gw = make_gateway(selfhost_catalogue=catalogue, deployments=sim_deployments(simulator))
    admin = {"authorization": "Bearer admin-secret"}
    document = {
        "name": "onprem-first",
        "baseline": "gpt-4o",
        "bands": [
            {"from": 0, "to": 0.999, "deployment": deployment.name},
            {"from": 0.999, "to": 1, "deployment": "gpt-4o-mini"},
        ],
        "spillover": {"max_waiting": 0, "max_kv_cache_usage": None},
    }
    httpx.post(f"{gw.base_url}/admin/policies", headers=admin, json={"document": document}).raise_for_status()
    httpx.post(f"{gw.base_url}/admin/policies/onprem-first/activate", headers=admin, json={"version": 1})
    httpx.put(f"{gw.base_url}/admin/assignments", headers=admin, json={"team": "*", "policy": "onprem-first"})
    return gw


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


@LOAD_DYNAMICS_FLAKY
async def test_spill_over_to_the_next_tier_when_the_replicas_queue_up(gateway, deployment, replica):
    """Load sent through the gateway to the replica (by deployment name) fills its max-num-seqs: `auto`
    requests spill over to the next band at once, from what the gateway has in flight, without waiting for
    a /metrics scrape (vLLM on a saturated CPU answers its /metrics late); they come back afterwards."""
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

    pool = gateway.app.state.pipeline.upstreams.selfhosted[deployment.name].pool
    (state,) = pool.states()

    async def settled() -> None:  # nothing in flight and a fresh scrape that shows no queue
        for _ in range(300):
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

    await settled()
    assert (await route())[0] == f"selfhost/{deployment.name}"
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
    for _ in range(600):  # the load reaches the gateway's pool: more in flight than the replica batches
        if state.in_flight > MAX_NUM_SEQS or all(t.done() for t in load):
            break
        await asyncio.sleep(0.02)
    assert not all(t.done() for t in load), f"the load finished before it queued: {state}"
    routes = [await route() for _ in range(3)]
    results = await asyncio.gather(*load)
    assert [r.usage.completion_tokens for r in results] == [LOAD_TOKENS] * LOAD_REQUESTS
    assert [r for r, _ in routes] == ["economy/gpt-4o-mini"] * 3, (routes, state)
    assert all("spill-over" in reason for _, reason in routes), routes
    await settled()
    assert (await route())[0] == f"selfhost/{deployment.name}"
    await sdk.close()
