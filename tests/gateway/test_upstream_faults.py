"""Upstream 429 / 5xx / timeouts / resets: retries and fallbacks where configured, a clear
502/503/504 where not, and a ledger row for every request either way."""

from __future__ import annotations

import contextlib
import time

import httpx
import openai
import orjson
import pytest

from tests.conftest import sim_deployments
from tests.gateway.test_openai_sdk import ledger_rows

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture
def faults(simulator):
    """Add simulator fault rules for this test; all are removed afterwards."""

    def add(**rule):
        httpx.post(f"{simulator.base_url}/_sim/faults", json=rule).raise_for_status()

    yield add
    httpx.delete(f"{simulator.base_url}/_sim/faults").raise_for_status()


def client_for(gw):
    return openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(), max_retries=0, timeout=30)


def test_429_is_retried_then_succeeds(make_gateway, faults):
    gw = make_gateway()
    faults(status=429, count=1, model="gpt-4o", retry_after=0)
    raw = client_for(gw).chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    assert raw.headers["x-tiergate-route"] == "frontier/gpt-4o"
    [row] = ledger_rows(gw)
    assert (row.status_code, row.attempts, row.deployment) == (200, 2, "gpt-4o")


def test_500s_fall_back_to_the_next_deployment(make_gateway, faults):
    gw = make_gateway()
    faults(status=500, count=2, model="gpt-4o")  # gpt-4o: 1 try + 1 retry, both fail
    raw = client_for(gw).chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-tiergate-route"] == "economy/gpt-4o-mini"
    assert raw.headers["x-tiergate-route-reason"] == "explicit deployment; fallback from gpt-4o"
    [row] = ledger_rows(gw)
    assert (row.deployment, row.attempts, row.requested_model) == ("gpt-4o-mini", 3, "gpt-4o")
    assert row.cost_micros > 0


@pytest.mark.parametrize(
    ("rule", "status", "code"),
    [
        ({"status": 500}, 502, "upstream_error"),
        ({"status": 503}, 503, "upstream_overloaded"),
        ({"status": 429, "retry_after": 0}, 503, "upstream_overloaded"),
        ({"kind": "reset"}, 502, "upstream_error"),
    ],
)
def test_without_fallback_the_client_gets_a_clear_5xx(make_gateway, faults, rule, status, code):
    gw = make_gateway()
    faults(**rule, count=5, model="gpt-4o-mini")
    response = httpx.post(
        f"{gw.openai_base_url}/chat/completions",
        headers={"authorization": f"Bearer {gw.create_key()}"},
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        timeout=30,
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    if status == 503:
        assert int(response.headers["retry-after"]) >= 1
    [row] = ledger_rows(gw)
    assert (row.status_code, row.error_class, row.cost_micros) == (status, code, 0)


def test_timeout_is_504(make_gateway, simulator, faults):
    deployments = sim_deployments(simulator)
    for d in deployments:
        d["timeout_s"] = 0.5
        d["max_retries"] = 0
    gw = make_gateway(deployments=deployments)
    faults(kind="hang", hang_s=5, count=1, model="gpt-4o-mini")
    started = time.monotonic()
    response = httpx.post(
        f"{gw.openai_base_url}/chat/completions",
        headers={"authorization": f"Bearer {gw.create_key()}"},
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        timeout=30,
    )
    assert response.status_code == 504 and response.json()["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 4


def test_upstream_client_errors_pass_through_without_retry(make_gateway, faults):
    gw = make_gateway()
    faults(status=400, count=1, model="gpt-4o")
    with pytest.raises(openai.BadRequestError):
        client_for(gw).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    [row] = ledger_rows(gw)
    assert (row.status_code, row.attempts) == (400, 1)


def test_stream_broken_mid_way_tells_the_client_and_ledgers_partial_usage(make_gateway, faults):
    gw = make_gateway()
    faults(kind="reset", after_tokens=5, count=1, model="gpt-4o-mini")
    client = client_for(gw)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received
    [row] = ledger_rows(gw)
    assert row.error_class == "connection_reset"
    assert row.usage_estimated and row.output_tokens > 0


def test_client_disconnect_mid_stream_cancels_upstream_and_ledgers_partial_usage(make_gateway, simulator):
    gw = make_gateway()
    key = gw.create_key()
    httpx.post(f"{simulator.base_url}/_sim/latency", json={"model": "gpt-4o", "itl_ms": 50, "tokens": 200})
    before = httpx.get(f"{simulator.base_url}/_sim/stats").json()["streams_cancelled"]
    try:
        with httpx.stream(
            "POST",
            f"{gw.openai_base_url}/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "gpt-4o", "messages": MESSAGES, "stream": True},
            timeout=30,
        ) as response:
            lines = response.iter_lines()
            seen = 0
            for line in lines:
                seen += line.startswith("data: {")
                if seen == 5:
                    break  # leaving the block closes the connection mid-stream
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if httpx.get(f"{simulator.base_url}/_sim/stats").json()["streams_cancelled"] > before:
                break
            time.sleep(0.05)
        assert httpx.get(f"{simulator.base_url}/_sim/stats").json()["streams_cancelled"] == before + 1
        time.sleep(0.2)
        [row] = ledger_rows(gw)
        assert row.error_class == "client_disconnected" and row.stream
        assert row.usage_estimated and 3 <= row.output_tokens < 200
        assert row.cost_micros > 0
    finally:
        httpx.post(f"{simulator.base_url}/_sim/latency", json={"model": "gpt-4o", "itl_ms": 0, "tokens": 24})


def test_client_gone_before_the_first_byte_still_closes_the_upstream_and_is_ledgered(make_gateway, simulator):
    """The stream's response never starts (the client went away first): the relay generator never runs,
    yet the upstream stream is closed and the request has its ledger row."""
    gw = make_gateway()
    key = gw.create_key()
    body = orjson.dumps({"model": "gpt-4o", "messages": MESSAGES, "stream": True})
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {key}".encode()), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    httpx.post(f"{simulator.base_url}/_sim/latency", json={"model": "gpt-4o", "itl_ms": 50, "tokens": 200})
    before = httpx.get(f"{simulator.base_url}/_sim/stats").json()

    async def served_to_a_vanished_client() -> list[str]:
        messages = iter([{"type": "http.request", "body": body, "more_body": False}])
        sent: list[str] = []

        async def receive() -> dict:
            return next(messages, {"type": "http.disconnect"})

        async def send(message: dict) -> None:
            sent.append(message["type"])
            raise OSError("connection reset by peer")  # the socket is gone: nothing can be written

        with contextlib.suppress(Exception):
            await gw.app(scope, receive, send)
        return sent

    try:
        assert gw.run(served_to_a_vanished_client()) == ["http.response.start"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            stats = httpx.get(f"{simulator.base_url}/_sim/stats").json()
            if stats["streams_cancelled"] > before["streams_cancelled"]:
                break
            time.sleep(0.05)
        assert stats["requests_total"] == before["requests_total"] + 1
        assert stats["streams_cancelled"] == before["streams_cancelled"] + 1  # generation stopped upstream
        time.sleep(0.2)
        [row] = ledger_rows(gw)
        assert (row.status_code, row.error_class, row.stream) == (200, "client_disconnected", True)
    finally:
        httpx.post(f"{simulator.base_url}/_sim/latency", json={"model": "gpt-4o", "itl_ms": 0, "tokens": 24})
