"""OpenAI's automatic prompt caching: route repeated prefixes to the same cache.

OpenAI caches prompts of 1,024+ tokens per organisation, model and `prompt_cache_key`. All tenants
of the gateway share one organisation, so the gateway sets the key itself: a hash of the tenant and
the prefix every conversation with the same instructions shares (tools and system/developer
messages). It deliberately leaves out the conversation turns: a key that changed every turn would
put each turn in a different cache and no turn would ever read the previous one. A key the client
sent is kept as the grouping it asked for, scoped to the tenant. Nothing per request (ids,
timestamps) enters the key.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from gateway.upstreams.caching.facts import supports_extended_retention

INSTRUCTION_ROLES = frozenset({"system", "developer"})


def _stable_prefix(body: dict[str, Any]) -> list[Any]:
    instructions = []
    for message in body.get("messages") or ():
        if not isinstance(message, dict) or message.get("role") not in INSTRUCTION_ROLES:
            break
        instructions.append(message)
    return [body.get("tools"), instructions]


def prompt_cache_key(body: dict[str, Any], tenant: str) -> str:
    """`tg-` and 32 hex digits: the same for every request of `tenant` with the same prefix."""
    hasher = hashlib.blake2b(digest_size=16, person=b"tiergate-pck")
    hasher.update(tenant.encode())
    hasher.update(b"\x00")
    client_key = body.get("prompt_cache_key")
    if isinstance(client_key, str) and client_key:
        hasher.update(b"client\x00" + client_key.encode())
    else:
        hasher.update(orjson.dumps(_stable_prefix(body), option=orjson.OPT_SORT_KEYS))
    return "tg-" + hasher.hexdigest()


def add_cache_key(body: dict[str, Any], model: str, *, tenant: str, retention: str | None) -> dict[str, Any]:
    """`body` with `prompt_cache_key` (and `prompt_cache_retention` where the model takes it)."""
    body = {**body, "prompt_cache_key": prompt_cache_key(body, tenant)}
    if retention and "prompt_cache_retention" not in body and supports_extended_retention(model):
        body["prompt_cache_retention"] = retention
    return body
