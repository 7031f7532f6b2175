"""Gemini generateContent / streamGenerateContent over HTTP and through litellm."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network: use the bundled cost map

import httpx
import litellm
import orjson
import pytest

from gateway.simulator import SimulatorServer

from .conftest import long_text

warnings.filterwarnings("ignore", category=DeprecationWarning)

HEADERS = {"x-goog-api-key": "test-key"}


def url(sim: SimulatorServer, method: str, model: str = "gemini-2.5-flash") -> str:
    return f"{sim.base_url}/v1beta/models/{model}:{method}"


def body(text: str = "Hello there", **config) -> dict:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}], "generationConfig": config}


def test_generate_content_shape(sim: SimulatorServer) -> None:
    response = httpx.post(url(sim, "generateContent"), json=body(), headers=HEADERS).json()
    candidate = response["candidates"][0]
    assert candidate["content"]["role"] == "model"
    assert candidate["finishReason"] == "STOP"
    usage = response["usageMetadata"]
    assert usage["candidatesTokenCount"] == len(candidate["content"]["parts"][0]["text"].split())
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
    assert "cachedContentTokenCount" not in usage
    assert response["modelVersion"] == "gemini-2.5-flash"


def test_max_output_tokens_and_key_in_query(sim: SimulatorServer) -> None:
    response = httpx.post(f"{url(sim, 'generateContent')}?key=k", json=body(maxOutputTokens=3)).json()
    assert response["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert response["usageMetadata"]["candidatesTokenCount"] == 3


def test_sse_stream_matches_the_json_response(sim: SimulatorServer) -> None:
    expected = httpx.post(url(sim, "generateContent"), json=body(), headers=HEADERS).json()
    raw = httpx.post(f"{url(sim, 'streamGenerateContent')}?alt=sse", json=body(), headers=HEADERS)
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = [orjson.loads(line[6:]) for line in raw.text.splitlines() if line.startswith("data: ")]
    text = "".join(part["text"] for e in events for c in e["candidates"] for part in c["content"]["parts"])
    assert text == expected["candidates"][0]["content"]["parts"][0]["text"]
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    assert events[-1]["usageMetadata"] == expected["usageMetadata"]


def test_implicit_caching_of_a_long_prefix(sim: SimulatorServer) -> None:
    request = {"systemInstruction": {"parts": [{"text": long_text(1500, "gemini")}]}, **body()}
    cold = httpx.post(url(sim, "generateContent"), json=request, headers=HEADERS).json()["usageMetadata"]
    warm = httpx.post(url(sim, "generateContent"), json=request, headers=HEADERS).json()["usageMetadata"]
    assert "cachedContentTokenCount" not in cold
    assert warm["promptTokenCount"] == cold["promptTokenCount"]  # includes the cached tokens
    assert warm["cachedContentTokenCount"] == 1024 + (cold["promptTokenCount"] - 1024) // 128 * 128
    pro = httpx.post(url(sim, "generateContent", "gemini-2.5-pro"), json=request, headers=HEADERS).json()
    pro_again = httpx.post(
        url(sim, "generateContent", "gemini-2.5-pro"), json=request, headers=HEADERS
    ).json()
    assert "cachedContentTokenCount" not in pro_again["usageMetadata"]  # below Pro's 4,096 minimum
    assert pro["usageMetadata"]["promptTokenCount"] == cold["promptTokenCount"]


def test_function_call_when_mode_any(sim: SimulatorServer) -> None:
    request = {
        **body("book it"),
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "book_table",
                        "parameters": {
                            "type": "OBJECT",
                            "properties": {"guests": {"type": "INTEGER"}},
                            "required": ["guests"],
                        },
                    }
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
    }
    response = httpx.post(url(sim, "generateContent"), json=request, headers=HEADERS).json()
    call = response["candidates"][0]["content"]["parts"][0]["functionCall"]
    assert call["name"] == "book_table"
    assert isinstance(call["args"]["guests"], int)


def test_errors_in_google_shape(sim: SimulatorServer) -> None:
    anonymous = httpx.post(url(sim, "generateContent"), json=body())
    assert anonymous.status_code == 403
    assert anonymous.json()["error"]["status"] == "PERMISSION_DENIED"
    empty = httpx.post(url(sim, "generateContent"), json={"contents": []}, headers=HEADERS)
    assert empty.status_code == 400
    assert empty.json()["error"]["code"] == 400
    httpx.post(f"{sim.base_url}/_sim/faults", json={"status": 429, "provider": "gemini", "retry_after": 7})
    limited = httpx.post(url(sim, "generateContent"), json=body(), headers=HEADERS)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "7"
    error = limited.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert error["details"][0]["retryDelay"] == "7s"


async def test_litellm_gemini_reads_cached_tokens(sim: SimulatorServer) -> None:
    messages = [{"role": "system", "content": long_text(1500, "ll")}, {"role": "user", "content": "hello"}]
    kwargs = {"model": "gemini/gemini-2.5-flash", "api_base": sim.gemini_base_url, "api_key": "k"}
    cold = await litellm.acompletion(messages=messages, **kwargs)
    warm = await litellm.acompletion(messages=messages, **kwargs)
    assert warm.choices[0].message.content == cold.choices[0].message.content
    assert warm.usage.prompt_tokens == cold.usage.prompt_tokens
    assert warm.usage.prompt_tokens_details.cached_tokens == 1408
    stream = await litellm.acompletion(messages=messages, stream=True, **kwargs)
    text = ""
    async for chunk in stream:
        text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text == cold.choices[0].message.content


def test_reset_mid_sse_stream(sim: SimulatorServer) -> None:
    httpx.post(f"{sim.base_url}/_sim/faults", json={"kind": "reset", "after_tokens": 2, "provider": "gemini"})
    events = []
    stream_url = f"{url(sim, 'streamGenerateContent')}?alt=sse"
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("POST", stream_url, json=body(), headers=HEADERS) as response,
    ):
        events.extend(line for line in response.iter_lines() if line.startswith("data: "))
    assert len(events) == 2
