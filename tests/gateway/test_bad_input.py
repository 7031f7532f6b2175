"""Bad input gets a clear OpenAI-style 4xx, never a 500, and authenticated failures are ledgered."""

from __future__ import annotations

import httpx
import pytest

from tests.gateway.test_openai_sdk import ledger_rows

GOOD = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def gw(make_gateway):
    return make_gateway(max_body_bytes=64 * 1024)


def post(gw, key, *, json=None, content=None, path="/chat/completions", headers=None):
    return httpx.post(
        gw.openai_base_url + path,
        json=json,
        content=content,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json", **(headers or {})},
        timeout=30,
    )


def assert_openai_error(response, status, code=None, param=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"", None),
        (b"[1, 2]", "invalid_json"),
        (b'"a string"', "invalid_json"),
        (b"[" * 5000 + b"]" * 5000, "invalid_json"),  # deeper than the parser allows: refused, not recursed
    ],
)
def test_malformed_bodies_are_400(gw, content, code):
    assert_openai_error(post(gw, gw.create_key(), content=content), 400, code)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "gpt-4o-mini"}, "messages"),
        ({"model": "gpt-4o-mini", "messages": []}, "messages"),
        ({"model": "gpt-4o-mini", "messages": "hello"}, "messages"),
        ({"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ({**GOOD, "temperature": "hot"}, "temperature"),
        ({**GOOD, "temperature": 3}, "temperature"),
        ({**GOOD, "n": 0}, "n"),
        ({**GOOD, "max_tokens": -1}, "max_tokens"),
        ({**GOOD, "stream": "yes please"}, "stream"),
        ({**GOOD, "tools": [{"type": "function", "function": {}}]}, "tools.0.function.name"),
    ],
)
def test_wrong_types_are_400_with_the_param(gw, body, param):
    assert_openai_error(post(gw, gw.create_key(), json=body), 400, "invalid_value", param)


def test_unknown_model_is_404(gw):
    response = post(gw, gw.create_key(), json={**GOOD, "model": "gpt-9"})
    assert_openai_error(response, 404, "model_not_found", "model")
    [row] = ledger_rows(gw)
    assert (row.status_code, row.error_class, row.requested_model) == (404, "model_not_found", "gpt-9")


def test_oversized_body_is_413(gw):
    huge = {**GOOD, "messages": [{"role": "user", "content": "x" * 100_000}]}
    assert_openai_error(post(gw, gw.create_key(), json=huge), 413, "request_too_large")


def test_oversized_chunked_body_without_content_length_is_413(gw):
    def chunks():
        yield b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        for _ in range(100):
            yield b"y" * 1024
        yield b'"}]}'

    response = httpx.post(
        gw.openai_base_url + "/chat/completions",
        content=chunks(),
        headers={"authorization": f"Bearer {gw.create_key()}", "content-type": "application/json"},
    )
    assert_openai_error(response, 413, "request_too_large")


def test_unknown_route_and_method_are_openai_errors(gw):
    response = httpx.get(gw.openai_base_url + "/nope")
    assert response.status_code == 404 and "error" in response.json()
    response = httpx.get(gw.openai_base_url + "/chat/completions")
    assert response.status_code == 405 and "error" in response.json()


def test_invalid_requests_are_ledgered_after_auth(gw):
    key = gw.create_key()
    post(gw, key, json={"model": "gpt-4o-mini", "messages": []})
    [row] = ledger_rows(gw)
    assert (row.status_code, row.error_class, row.team, row.cost_micros) == (
        400,
        "invalid_value",
        "team-a",
        0,
    )
