"""Provider-side cost of multi-turn chats that share long system prompts and tool definitions,
replayed against the simulated upstream with the prompt-caching transforms off and on.

    python scripts/bench_prompt_caching.py [--conversations 8] [--turns 6] [--seed 0] [--json out.json]
                                          [--through-gateway]

Two tenants, each with its own system prompt and tool set, shared by all of its conversations.
Conversations start at random times within 30 minutes; users answer after 15-120 s, or (one turn
in five) come back after 6-20 minutes. The simulator's clock follows the schedule, so cache TTLs
expire as they would. Every request goes through the gateway's own upstream clients (litellm for
Anthropic and Gemini, the OpenAI wire relay for OpenAI) exactly as the gateway forwards it, or with
`--through-gateway` through a running gateway whose routing policy carries the prompt-cache
settings (its ledgered cost must equal the provider's bill, or the run stops); only the transforms
differ between runs. Cost is what the provider would bill for the usage the
simulator reports, priced with `gateway.ledger.pricing` (litellm's cost map), in micro-dollars.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from gateway.embedded import GatewayServer
from gateway.ledger.pricing import micros_to_usd, resolve_price
from gateway.settings import Deployment, Settings
from gateway.simulator import Latency, SimulatorConfig
from gateway.simulator.server import SimulatorServer
from gateway.upstreams.caching import PromptCacheSettings, apply
from gateway.upstreams.litellm_bridge import LiteLLMUpstream
from gateway.upstreams.openai_wire import OpenAIWireUpstream
from gateway.upstreams.usage import Usage, from_openai

TENANTS = ("team-support", "team-research")
PROVIDERS = (("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-4.1"), ("gemini", "gemini-2.5-flash"))
RUNS = {  # label -> transform settings (None: the transforms are not applied at all)
    "off": None,
    "on": PromptCacheSettings(anthropic_ttl="5m"),
    "on, 1h TTL": PromptCacheSettings(anthropic_ttl="1h"),
}
VOCABULARY = (
    "account order refund policy shipping customer warranty invoice region latency model request "
    "answer escalate verify identity priority contract renewal discount billing cycle support agent "
    "ticket status summary document evidence research citation source method result analysis"
)
WORDS = VOCABULARY.split()


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def tenant_prompt(rng: random.Random) -> tuple[str, list[dict[str, Any]]]:
    """A long system prompt (~3,000 tokens) and six tools (~1,000 tokens together)."""
    system = "\n".join(f"Rule {i}: {text(rng, 40)}." for i in range(70))
    tools = [
        {
            "type": "function",
            "function": {
                "name": f"tool_{i}_{rng.choice(WORDS)}",
                "description": text(rng, 90),
                "parameters": {
                    "type": "object",
                    "properties": {
                        f"arg_{j}": {"type": "string", "description": text(rng, 12)} for j in range(3)
                    },
                    "required": ["arg_0"],
                },
            },
        }
        for i in range(6)
    ]
    return system, tools


@dataclass(order=True)
class Turn:
    at: float
    tenant: str = field(compare=False)
    conversation: int = field(compare=False)
    question: str = field(compare=False)


def schedule(rng: random.Random, conversations: int, turns: int) -> list[Turn]:
    events: list[Turn] = []
    for tenant in TENANTS:
        for conversation in range(conversations):
            at = rng.uniform(0, 1800)
            for _ in range(turns):
                events.append(Turn(at, tenant, conversation, text(rng, rng.randint(20, 80))))
                at += rng.uniform(360, 1200) if rng.random() < 0.2 else rng.uniform(15, 120)
    return sorted(events)


@dataclass
class Tally:
    cost_micros: int = 0
    list_micros: int = 0  # the same tokens with no caching at all
    input_total: int = 0
    cache_read: int = 0
    cache_write: int = 0
    requests: int = 0

    def add(self, usage: Usage, cost_micros: int, list_micros: int) -> None:
        self.cost_micros += cost_micros
        self.list_micros += list_micros
        self.input_total += usage.input_total
        self.cache_read += usage.input_cache_read
        self.cache_write += usage.input_cache_write
        self.requests += 1


#: (tenant, OpenAI-format chat body) -> (usage, cost in micro-dollars, answer text)
Send = Callable[[str, dict[str, Any]], Awaitable[tuple[Usage, int, str]]]


@asynccontextmanager
async def direct(deployment: Deployment, settings: PromptCacheSettings | None) -> AsyncIterator[Send]:
    """The gateway's upstream client, with the transforms applied as the pipeline would."""
    price = resolve_price(deployment)
    async with aiohttp.ClientSession() as session:
        openai_wire = deployment.provider == "openai"
        upstream = OpenAIWireUpstream(deployment, session) if openai_wire else LiteLLMUpstream(deployment)

        async def send(tenant: str, body: dict[str, Any]) -> tuple[Usage, int, str]:
            if settings is not None:
                body = apply(deployment.provider, deployment.model, body, tenant=tenant, settings=settings)
            response = await upstream.complete("chat", body)
            answer = response.data["choices"][0]["message"].get("content") or ""
            return response.usage, price.cost_micros(response.usage), answer

        yield send


@asynccontextmanager
async def through_gateway(
    deployment: Deployment, settings: PromptCacheSettings | None
) -> AsyncIterator[Send]:
    """A running gateway whose policy (assigned to every team) carries the prompt-cache settings;
    the cost is the one the gateway ledgers (`x-tiergate-cost-usd`)."""
    with tempfile.TemporaryDirectory() as tmp:
        gateway = GatewayServer(
            Settings(
                database_url=f"sqlite+aiosqlite:///{tmp}/ledger.db",
                spool_dir=Path(tmp) / "spool",
                admin_key="bench-admin",
                deployments=[deployment.model_dump()],
            )
        ).start()
        try:
            async with httpx.AsyncClient(base_url=gateway.base_url, timeout=60) as client:
                prompt = settings.model_dump() if settings else {"enabled": False}
                document = {
                    "name": "bench",
                    "bands": [{"from": 0, "to": 1, "deployment": deployment.name}],
                    "cache": {"enabled": False, "semantic": False, "prompt": prompt},
                }
                admin = {"authorization": "Bearer bench-admin"}
                for method, path, payload in [
                    ("POST", "/admin/policies", {"document": document}),
                    ("POST", "/admin/policies/bench/activate", {"version": 1}),
                    ("PUT", "/admin/assignments", {"team": "*", "policy": "bench"}),
                ]:
                    reply = await client.request(method, path, json=payload, headers=admin)
                    if reply.status_code not in (200, 201):
                        raise SystemExit(
                            f"{path}: {reply.status_code} {reply.text} (is prompt caching wired?)"
                        )
                keys = {tenant: gateway.create_key(team=tenant, project=None) for tenant in TENANTS}

                async def send(tenant: str, body: dict[str, Any]) -> tuple[Usage, int, str]:
                    headers = {"authorization": f"Bearer {keys[tenant]}"}
                    reply = await client.post(
                        "/v1/chat/completions", json={**body, "model": "auto"}, headers=headers
                    )
                    reply.raise_for_status()
                    data = reply.json()
                    cost = Decimal(reply.headers["x-tiergate-cost-usd"]) * 1_000_000
                    answer = data["choices"][0]["message"].get("content") or ""
                    return from_openai(data["usage"]), int(cost), answer

                yield send
        finally:
            gateway.stop()


async def replay(
    provider: str,
    model: str,
    settings: PromptCacheSettings | None,
    events: list[Turn],
    prompts: dict,
    via_gateway: bool,
) -> dict[str, Tally]:
    """One run on a fresh simulator: per-tenant tallies of what the provider bills."""
    config = SimulatorConfig(latency=Latency(min_tokens=100, max_tokens=250))
    with SimulatorServer(config) as sim:
        base = {"anthropic": sim.base_url, "gemini": sim.gemini_base_url}.get(provider, sim.openai_base_url)
        deployment = Deployment(
            name=model, provider=provider, model=model, api_base=base, api_key_env="SIM_KEY"
        )
        price = resolve_price(deployment)
        history: dict[tuple[str, int], list[dict[str, Any]]] = {}
        tallies = {tenant: Tally() for tenant in TENANTS}
        now = 0.0
        async with (through_gateway if via_gateway else direct)(deployment, settings) as send:
            for turn in events:
                sim.simulator.clock.advance(turn.at - now)
                now = turn.at
                system, tools = prompts[turn.tenant]
                key = (turn.tenant, turn.conversation)
                messages = history.setdefault(key, [{"role": "system", "content": system}])
                messages.append({"role": "user", "content": turn.question})
                body = {"model": model, "max_tokens": 300, "messages": list(messages), "tools": tools}
                usage, cost, answer = await send(turn.tenant, body)
                if cost != price.cost_micros(usage):
                    raise SystemExit(f"the gateway charged {cost} µ$ for usage {usage}")
                messages.append({"role": "assistant", "content": answer})
                tallies[turn.tenant].add(usage, cost, price.list_cost_micros(usage))
    return tallies


def total(tallies: dict[str, Tally]) -> Tally:
    out = Tally()
    for tally in tallies.values():
        for name in vars(out):
            setattr(out, name, getattr(out, name) + getattr(tally, name))
    return out


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


async def run_all(
    events: list[Turn], prompts: dict, via_gateway: bool
) -> dict[str, dict[str, dict[str, Tally]]]:
    """Every (model, transforms) run; the 1-hour TTL is a choice only Anthropic offers."""
    results: dict[str, dict[str, dict[str, Tally]]] = {}
    for provider, model in PROVIDERS:
        for label, settings in RUNS.items():
            if label == "on, 1h TTL" and provider != "anthropic":
                continue
            results.setdefault(model, {})[label] = await replay(
                provider, model, settings, events, prompts, via_gateway
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=8, help="per tenant")
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument(
        "--through-gateway",
        action="store_true",
        help="send through a running gateway (policy cache.prompt settings) instead of the upstream clients",
    )
    args = parser.parse_args()
    os.environ.setdefault("SIM_KEY", "sk-bench")
    rng = random.Random(args.seed)
    prompts = {tenant: tenant_prompt(rng) for tenant in TENANTS}
    events = schedule(rng, args.conversations, args.turns)

    results = asyncio.run(run_all(events, prompts, args.through_gateway))

    print(
        f"{len(events)} requests per run: {len(TENANTS)} tenants x {args.conversations} conversations x {args.turns} turns\n"
    )
    print(
        "| Model | Transforms | Cost (USD) | Reduction vs off | Saving vs no caching "
        "| Cache-read share of input | Cache-write share |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    report: dict[str, Any] = {}
    grand = {label: 0 for label in ("off", "on")}
    for model, runs in results.items():
        off = total(runs["off"])
        for label, tallies in runs.items():
            t = total(tallies)
            reduction = pct(off.cost_micros - t.cost_micros, off.cost_micros) if label != "off" else "-"
            print(
                f"| {model} | {label} | {micros_to_usd(t.cost_micros)} | {reduction} | "
                f"{pct(t.list_micros - t.cost_micros, t.list_micros)} | {pct(t.cache_read, t.input_total)} | {pct(t.cache_write, t.input_total)} |"
            )
            report.setdefault(model, {})[label] = {
                "cost_micros": t.cost_micros,
                "list_cost_micros": t.list_micros,
                "input_tokens": t.input_total,
                "cache_read_tokens": t.cache_read,
                "cache_write_tokens": t.cache_write,
                "requests": t.requests,
                "per_tenant_cost_micros": {tenant: tally.cost_micros for tenant, tally in tallies.items()},
            }
            if label in grand:
                grand[label] += t.cost_micros
    print(
        f"\nAll three providers, transforms off -> on (5m): {micros_to_usd(grand['off'])} -> "
        f"{micros_to_usd(grand['on'])} USD ({pct(grand['off'] - grand['on'], grand['off'])} less)\n"
    )
    print(
        "| Tenant | Model | Cost off (USD) | Cost on (USD) | Reduction vs off | Saving vs no caching (on) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for tenant in TENANTS:
        for model, runs in results.items():
            off, on = runs["off"][tenant].cost_micros, runs["on"][tenant]
            print(
                f"| {tenant} | {model} | {micros_to_usd(off)} | {micros_to_usd(on.cost_micros)} | "
                f"{pct(off - on.cost_micros, off)} | {pct(on.list_micros - on.cost_micros, on.list_micros)} |"
            )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "results": report}, handle, indent=2)


if __name__ == "__main__":
    main()
