"""Hostile bodies: absurd nesting, bodies at and just past the size limit, element floods. Each
gets a clear OpenAI-style 400/404/413 quickly, and the gateway's memory stays bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest

from gateway.api.body import MAX_JSON_CONTAINERS

LIMIT = 8 * 1024 * 1024  # Settings.max_body_bytes default, which the module gateway uses
MAX_RSS_GROWTH_MB = 200


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


class PeakRss:
    """Samples this process's RSS (the embedded gateway runs in it) while a request is served."""

    def __enter__(self) -> PeakRss:
        self.start = self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return self.peak - self.start


def padded(prefix: bytes, element: bytes, suffix: bytes, size: int = LIMIT) -> bytes:
    """`prefix` + `element` repeated (comma-separated) + `suffix`, padded with spaces to `size`."""
    count = (size - len(prefix) - len(suffix)) // (len(element) + 1)
    body = prefix + b",".join([element] * count) + suffix
    assert len(body) <= size
    return body + b" " * (size - len(body))


def deep_array(depth: int) -> bytes:
    return b'{"model":"gpt-4o-mini","messages":' + b"[" * depth + b"]" * depth + b"}"


def deep_object(depth: int) -> bytes:
    return b'{"model":"gpt-4o-mini","messages":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"


CASES: dict[str, tuple[Callable[[], bytes], str, int, str | None]] = {
    # name: (body, path, status, error code)
    "100k-deep array": (lambda: deep_array(100_000), "/v1/chat/completions", 400, "invalid_json"),
    "100k-deep object": (lambda: deep_object(100_000), "/v1/chat/completions", 400, "invalid_json"),
    "limit-sized flood of empty objects": (
        lambda: padded(b'{"model":"gpt-4o-mini","messages":[', b"{}", b"]}"),
        "/v1/chat/completions",
        400,
        "invalid_json",
    ),
    "limit-sized flood of empty arrays": (
        lambda: padded(b'{"model":"gpt-4o-mini","input":[', b"[]", b"]}"),
        "/v1/embeddings",
        400,
        "invalid_json",
    ),
    "limit-sized flood of valid messages": (
        lambda: padded(b'{"model":"gpt-4o-mini","messages":[', b'{"role":"user"}', b"]}"),
        "/v1/chat/completions",
        400,
        "invalid_json",
    ),
    "flood of invalid messages just under the container cap": (
        lambda: padded(b'{"model":"gpt-4o-mini","messages":[', b'{"role":1}', b"]}", size=11 * 245_000),
        "/v1/chat/completions",
        400,
        "invalid_value",
    ),
    "flood of valid messages just under the container cap": (
        lambda: padded(b'{"model":"gpt-4o-mini","messages":[', b'{"role":"user"}', b"]}", size=16 * 245_000),
        "/v1/chat/completions",
        400,
        "invalid_value",
    ),
    "limit-sized token array": (
        lambda: padded(b'{"model":"gpt-4o-mini","prompt":[', b"7", b"]}"),
        "/v1/completions",
        400,
        "invalid_value",
    ),
    "limit-sized token array, strings expected first": (
        lambda: padded(b'{"model":"gpt-4o-mini","input":[', b"70000", b"]}"),
        "/v1/embeddings",
        400,
        "invalid_value",
    ),
    "limit-sized valid prompt for an unknown model": (
        lambda: padded(
            b'{"model":"no-such-model","messages":[{"role":"user","content":"', b"x" * 1023, b'"}]}'
        ),
        "/v1/chat/completions",
        404,
        "model_not_found",
    ),
    "limit-sized anthropic flood": (
        lambda: padded(b'{"model":"claude-sonnet","max_tokens":5,"messages":[', b'{"role":"user"}', b"]}"),
        "/v1/messages",
        400,
        None,
    ),
    "one byte over the limit": (
        lambda: (
            padded(b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"', b"x", b'"}]}') + b" "
        ),
        "/v1/chat/completions",
        413,
        "request_too_large",
    ),
}


@pytest.fixture(scope="module")
def key(module_gateway) -> str:
    return module_gateway.create_key(team="hostile", project="bodies")


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_body_gets_a_clear_error_fast_with_bounded_memory(module_gateway, key, name):
    make, path, status, code = CASES[name]
    body = make()
    assert len(body) <= LIMIT + 1
    with PeakRss() as rss:
        started = time.perf_counter()
        response = httpx.post(
            module_gateway.base_url + path,
            content=body,
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
            timeout=30,
        )
        elapsed = time.perf_counter() - started
    assert response.status_code == status, response.text[:500]
    error = response.json()["error"]
    if path == "/v1/messages":
        assert response.json()["type"] == "error" and error["message"]
    else:
        assert set(error) == {"message", "type", "param", "code"} and error["code"] == code
    assert elapsed < 5, f"{name}: {elapsed:.2f}s"
    print(f"{name}: {elapsed:.2f}s, RSS +{rss.growth_mb:.0f} MB")
    assert rss.growth_mb < MAX_RSS_GROWTH_MB, f"{name}: RSS grew {rss.growth_mb:.0f} MB"


def test_the_container_cap_admits_big_real_requests(module_gateway, key):
    """A long conversation full of code (braces in strings count against the cap) is still served."""
    code = "function f(a) { return [a, {b: [1, 2]}]; }\n" * 150  # 6 KB, 600 brackets
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": code} for i in range(301)]
    body = {"model": "no-such-model", "messages": messages}  # 404 after parsing and validation
    raw = httpx.Request("POST", "/", json=body).content
    assert raw.count(b"{") + raw.count(b"[") > 150_000 and len(raw) < LIMIT
    assert MAX_JSON_CONTAINERS >= 250_000
    response = httpx.post(
        module_gateway.base_url + "/v1/chat/completions",
        content=raw,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 404, response.text[:300]


def _body_routes() -> list[tuple[str, str]]:
    """Every non-hot operation that takes a request body, from the app's own OpenAPI document."""
    from gateway.api.openai.routes import HOT_ROUTES
    from gateway.app import create_app
    from gateway.settings import Settings

    document = create_app(Settings(deployments=[])).openapi()
    return [
        (method.upper(), path.replace("{name}", "x"))
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation and path not in HOT_ROUTES and path != "/v1/messages"
    ]


BODY_ROUTES = _body_routes()


def test_every_body_route_was_found():
    assert ("POST", "/admin/keys") in BODY_ROUTES and ("PUT", "/admin/assignments") in BODY_ROUTES
    assert len(BODY_ROUTES) >= 7


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES, ids=[f"{m} {p}" for m, p in BODY_ROUTES])
def test_other_routes_refuse_huge_bodies_before_buffering_them(module_gateway, method, path):
    """Without credentials, 3x the limit streamed in 1 MB chunks: a 413 before the framework (which
    reads bodies before checking the admin key) buffers it all."""

    def chunks():
        for _ in range(3 * LIMIT // (1 << 20)):
            yield b"[" * (1 << 20)

    with PeakRss() as rss:
        response = httpx.request(
            method,
            module_gateway.base_url + path,
            content=chunks(),
            headers={"content-type": "application/json"},
            timeout=30,
        )
    assert response.status_code == 413, response.text[:300]
    assert response.json()["error"]["code"] == "request_too_large"
    assert rss.growth_mb < 100, f"RSS grew {rss.growth_mb:.0f} MB"


def test_other_routes_refuse_container_floods(module_gateway):
    flood = padded(b'{"team": "t", "name": [', b"{}", b"]}", size=LIMIT // 2)
    response = httpx.post(
        module_gateway.base_url + "/admin/keys",
        content=flood,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
