"""Gemini `generateContent` / `streamGenerateContent` (`?alt=sse`) with implicit caching.

`usageMetadata.promptTokenCount` includes `cachedContentTokenCount`, which implicit caching fills
when a prompt shares a long enough prefix (per-model minimum) with a recent one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson

from ..asgi import SSE_HEADERS, Headers, Request, send_json
from ..config import Latency
from ..core import Simulator
from ..generation import rng_for, value_for_schema
from ..model_facts import facts_for
from ..tokens import count, encode
from ..tokens import vocabulary as VOCAB
from .common import (
    digest_tokens,
    generate,
    new_id,
    plan_stream,
    response_delay,
    run_stream,
    send_response,
    string_list,
    token_delays,
    token_pieces,
    wait_for_fault,
)

PROVIDER = "gemini"
ENCODING = "o200k_base"  # stand-in for Gemini's SentencePiece tokenizer
_TURN_START, _TURN_END = 300_010, 300_011
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
FINISH_REASONS = {"stop": "STOP", "stop_sequence": "STOP", "length": "MAX_TOKENS"}


class GeminiError(Exception):
    """An error in Google's shape: `{"error": {"code", "message", "status"}}`."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        error: dict[str, Any] = {
            "code": status,
            "message": message,
            "status": STATUS_NAMES.get(status, "UNKNOWN"),
        }
        self.headers: Headers = []
        if retry_after is not None:  # quota errors say when to retry, in the body and the header
            delay = f"{retry_after:g}s"
            error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]
            self.headers = [(b"retry-after", str(math.ceil(retry_after)).encode())]
        self.body = {"error": error}


async def handle(sim: Simulator, request: Request) -> None:
    sim.stats.requests["/v1beta/models:" + request.path.rpartition(":")[2]] += 1
    try:
        await _generate(sim, request)
    except GeminiError as error:
        sim.stats.statuses[str(error.status)] += 1
        await send_json(request.send, error.status, error.body, error.headers)
    else:
        sim.stats.statuses["200"] += 1


def _get(mapping: dict[str, Any], name: str) -> Any:
    """A field by its camelCase name or its snake_case spelling (the REST API accepts both)."""
    value = mapping.get(name)
    return mapping.get(_snake_case(name)) if value is None else value


@cache
def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _route(request: Request) -> tuple[str, bool]:
    name, _, method = request.path.removeprefix("/v1beta/models/").rpartition(":")
    if method not in ("generateContent", "streamGenerateContent") or not name:
        raise GeminiError(404, f"Method not found: {request.path}")
    return name, method == "streamGenerateContent"


def prompt_tokens(body: dict[str, Any]) -> list[int]:
    """System instruction, tools and contents as token ids, in prefix order."""
    tokens: list[int] = []
    for tool in body.get("tools") or ():
        tokens.extend(encode(orjson.dumps(tool).decode(), ENCODING))
    system = _get(body, "systemInstruction")
    turns = [{"role": "system", **system}] if system else []
    for turn in [*turns, *body["contents"]]:
        tokens.append(_TURN_START)
        tokens.extend(encode(str(turn.get("role", "user")), ENCODING))
        for part in turn.get("parts") or ():
            text = part.get("text") if isinstance(part, dict) else None
            tokens.extend(encode(text if isinstance(text, str) else orjson.dumps(part).decode(), ENCODING))
        tokens.append(_TURN_END)
    return tokens


def _function_to_call(body: dict[str, Any]) -> dict[str, Any] | None:
    functions = [f for tool in body.get("tools") or () for f in _get(tool, "functionDeclarations") or ()]
    config = _get(_get(body, "toolConfig") or {}, "functionCallingConfig") or {}
    mode = config.get("mode", "AUTO")
    if not functions or mode == "NONE":
        return None
    allowed = _get(config, "allowedFunctionNames")
    if allowed:
        functions = [f for f in functions if f.get("name") in allowed] or functions
    last = body["contents"][-1]
    parts = last.get("parts") or ()
    if last.get("role", "user") == "user" and not any(_get(p, "functionResponse") for p in parts):
        text = " ".join(str(p.get("text", "")) for p in parts)
        named = next((f for f in functions if f.get("name") and f["name"] in text), None)
        if named is not None:
            return named
    return functions[0] if mode == "ANY" else None


async def _generate(sim: Simulator, request: Request) -> None:
    requested, stream = _route(request)
    key = request.headers.get("x-goog-api-key") or request.query.get("key")
    if not key:
        raise GeminiError(403, "Method doesn't allow unregistered callers. Please use an API key.")
    if not sim.key_accepted(key):
        raise GeminiError(400, "API key not valid. Please pass a valid API key.")
    try:
        body = request.json()
    except orjson.JSONDecodeError:
        raise GeminiError(400, "Invalid JSON payload received.") from None
    if not isinstance(body, dict) or not body.get("contents"):
        raise GeminiError(400, "* GenerateContentRequest.contents: contents is not specified")
    try:
        model, latency = sim.resolve(requested, request.headers)
    except ValueError as exc:
        raise GeminiError(400, str(exc)) from None
    if not sim.knows_model(model):
        raise GeminiError(404, f"models/{model} is not found for API version v1beta.")
    sim.stats.models[model] += 1
    fault = sim.faults.draw(PROVIDER, model)
    if fault is not None:
        if fault.kind == "status" or (fault.kind == "stream_error" and not stream):
            status = fault.status if fault.kind == "status" else 500
            sim.stats.faults[str(status)] += 1
            if status == 429:
                raise GeminiError(429, "Resource has been exhausted (e.g. check quota).", fault.retry_after)
            raise GeminiError(status, "Internal error.")
        sim.stats.faults[fault.kind] += 1
    if not await wait_for_fault(request, fault, stream):
        sim.stats.disconnects["before_response"] += 1
        return

    prompt = prompt_tokens(body)
    facts = facts_for(model)
    cached = sim.gemini_cache.read_and_write(
        (key, model), prompt, facts.cache_min_tokens, sim.config.gemini_cache_ttl_s
    )
    digest = digest_tokens(prompt)
    config = _get(body, "generationConfig") or {}
    candidates = [
        _candidate(body, config, digest, index, latency)
        for index in range(int(_get(config, "candidateCount") or 1))
    ]
    output = sum(candidate.tokens for candidate in candidates)
    sim.stats.tokens["prompt"] += len(prompt)
    sim.stats.tokens["cached"] += cached
    sim.stats.tokens["completion"] += output
    usage = _usage(len(prompt), cached, output)
    response_id = new_id("")
    if not stream:
        payload = {
            "candidates": [
                {"content": {"parts": [c.part], "role": "model"}, "finishReason": c.finish, "index": i}
                for i, c in enumerate(candidates)
            ],
            "usageMetadata": usage,
            "modelVersion": model,
            "responseId": response_id,
        }
        delay = response_delay(max(c.tokens for c in candidates), latency)
        await send_response(sim, request, fault, orjson.dumps(payload), [], delay)
        return
    frames = _stream_frames(candidates, len(prompt), cached, model, response_id, latency)
    if request.query.get("alt") != "sse":  # without alt=sse the stream is one JSON array
        body_bytes = b"[" + b",".join(frame.removeprefix(b"data: ").strip() for _, frame in frames) + b"]"
        delay = response_delay(output, latency)
        await send_response(sim, request, fault, body_bytes, [], delay)
        return
    error_frame = b"data: " + orjson.dumps(GeminiError(500, "Internal error.").body) + b"\r\n\r\n"
    plan = plan_stream(frames, fault, fault.after_tokens if fault else 0, error_frame)
    await run_stream(sim, request, SSE_HEADERS, plan)


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A candidate's final part, the pieces it is streamed in, its finishReason and token count."""

    part: dict[str, Any]
    pieces: list[dict[str, Any]]
    finish: str
    tokens: int


def _candidate(
    body: dict[str, Any], config: dict[str, Any], digest: bytes, index: int, latency: Latency
) -> _Candidate:
    max_tokens = _get(config, "maxOutputTokens")
    seed = config.get("seed")
    function = _function_to_call(body)
    schema = _get(config, "responseJsonSchema") or _get(config, "responseSchema")
    rng = rng_for(digest, seed, index)
    if function is not None:  # function calls arrive whole, in a single chunk
        parameters = (
            _get(function, "parametersJsonSchema") or function.get("parameters") or {"type": "object"}
        )
        part = {
            "functionCall": {
                "name": function["name"],
                "args": value_for_schema(_lower(parameters), rng, VOCAB()),
            }
        }
        return _Candidate(part, [part], "STOP", count(orjson.dumps(part).decode(), ENCODING))
    if _get(config, "responseMimeType") == "application/json":
        value = value_for_schema(_lower(schema or {"type": "object"}), rng, VOCAB())
        texts = token_pieces(orjson.dumps(value).decode(), ENCODING)
        finish = "STOP"
        if max_tokens is not None and len(texts) > max_tokens:
            texts, finish = texts[:max_tokens], "MAX_TOKENS"
    else:
        generated = generate(
            digest, seed, index, latency, max_tokens, string_list(_get(config, "stopSequences"))
        )
        texts, finish = generated.pieces, FINISH_REASONS[generated.finish]
    return _Candidate({"text": "".join(texts)}, [{"text": t} for t in texts], finish, len(texts))


def _lower(schema: Any) -> Any:
    """Gemini's OpenAPI-style schemas spell types in capitals (`OBJECT`, `STRING`)."""
    if isinstance(schema, dict):
        return {
            k: (v.lower() if k == "type" and isinstance(v, str) else _lower(v)) for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_lower(item) for item in schema]
    return schema


def _usage(prompt: int, cached: int, output: int) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": output,
        "totalTokenCount": prompt + output,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    if cached:
        usage["cachedContentTokenCount"] = cached
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    return usage


def _stream_frames(
    candidates: list[_Candidate], prompt: int, cached: int, model: str, response_id: str, latency: Latency
) -> list[tuple[float, bytes]]:
    """One SSE event per token position; each carries the usage so far."""
    length = max(max(len(c.pieces) for c in candidates), 1)
    frames: list[tuple[float, bytes]] = []
    produced = 0
    for position, delay in enumerate(token_delays(length, latency)):
        entries = []
        for index, candidate in enumerate(candidates):
            last = max(len(candidate.pieces), 1) - 1
            if position > last:
                continue
            parts = [candidate.pieces[position]] if candidate.pieces else []
            entry: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": index}
            if position == last:
                entry["finishReason"] = candidate.finish
                produced += candidate.tokens - (len(candidate.pieces) - 1 if "text" in candidate.part else 0)
            else:
                produced += 1
            entries.append(entry)
        payload = {
            "candidates": entries,
            "usageMetadata": _usage(prompt, cached, produced),
            "modelVersion": model,
            "responseId": response_id,
        }
        frames.append((delay, b"data: " + orjson.dumps(payload) + b"\r\n\r\n"))
    return frames
