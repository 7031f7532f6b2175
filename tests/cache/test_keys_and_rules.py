"""Request normalisation, keys and the read/store rules."""

from __future__ import annotations

from gateway.cache import is_storable
from gateway.cache.keys import exact_digest, final_user_text, normalise, partition_digest
from gateway.cache.policy import CacheSettings, header_directives, semantic_refusal
from tests.cache.helpers import chat, completion

NS = ("tenant", "policy")


def digest(body: dict) -> str:
    return exact_digest(NS, normalise(body))


def test_exact_key_ignores_transport_fields_but_not_output_parameters() -> None:
    base = chat("Hi")
    assert digest(base) == digest({**base, "stream": True, "stream_options": {"include_usage": True}})
    assert digest(base) == digest({**base, "user": "u1", "metadata": {"a": 1}, "temperature": None})
    assert digest(base) == digest(chat("  Hi  "))
    assert digest(base) == digest(
        {**base, "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}
    )
    for changed in ({"temperature": 0.2}, {"max_tokens": 5}, {"model": "gpt-4o-mini"}, {"seed": 1},
                    {"response_format": {"type": "json_object"}}, {"tools": [{"type": "function"}]}):  # fmt: skip
        assert digest(base) != digest({**base, **changed}), changed
    assert exact_digest(("other", "policy"), normalise(base)) != digest(base)


def test_partition_is_everything_but_the_final_user_turn() -> None:
    system = {"role": "system", "content": "Be brief."}
    a, b = normalise(chat("Question one?", system)), normalise(chat("Question two?", system))
    assert partition_digest(NS, a) == partition_digest(NS, b)
    assert partition_digest(NS, a) != partition_digest(NS, normalise(chat("Question one?")))
    assert final_user_text(a) == "Question one?"
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:..."}}]}
    assert final_user_text(normalise({"messages": [image]})) is None


def test_header_directives() -> None:
    assert header_directives({}).read and header_directives({}).store
    no_cache = header_directives({"Cache-Control": "max-age=0, no-cache"})
    assert (no_cache.read, no_cache.store) == (False, True)
    no_store = header_directives({"cache-control": "no-store"})
    assert (no_store.read, no_store.store) == (False, False)
    bypass = header_directives({"x-tiergate-cache-bypass": "true"})
    assert (bypass.read, bypass.store) == (False, False)


def test_semantic_refusals() -> None:
    settings = CacheSettings(max_semantic_temperature=0.7)
    assert semantic_refusal(normalise(chat("q")), settings) is None
    assert semantic_refusal(normalise(chat("q", temperature=0.7)), settings) is None
    assert semantic_refusal(normalise(chat("q", temperature=0.71)), settings) == "temperature"
    assert semantic_refusal(normalise(chat("q", n=3)), settings) == "n>1"
    tool = {"messages": [{"role": "tool", "tool_call_id": "1", "content": "r"}]}
    assert semantic_refusal(normalise(tool), settings) == "tool-results-pending"
    assert semantic_refusal(normalise(chat("q")), CacheSettings(semantic=False)) == "semantic-disabled"


def test_only_complete_successful_completions_are_storable() -> None:
    assert is_storable(completion("x"))
    assert not is_storable(completion("x"), status_code=429)
    assert not is_storable({"error": {"message": "boom"}})
    assert not is_storable({**completion("x"), "choices": []})
    assert not is_storable(completion("x", finish_reason="content_filter"))
    assert not is_storable({**completion("x"), "object": "chat.completion.chunk"})
