"""Deterministic response content: the same prompt and seed always give the same output.

Text is built from single-token words (see `tokens.vocabulary`), so a response of N words is N
tokens and each streamed delta is one real token.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Generated:
    """Generated text split into the pieces it is streamed as, and why generation stopped."""

    pieces: list[str]
    finish: str  # "stop" | "length" | "stop_sequence"
    stop_sequence: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def rng_for(prompt_digest: bytes, seed: int | None, index: int = 0) -> random.Random:
    """A random generator derived from the prompt, the request seed and the choice index."""
    material = prompt_digest + f"|{seed}|{index}".encode()
    return random.Random(int.from_bytes(hashlib.blake2b(material, digest_size=8).digest(), "big"))


def generate_text(
    rng: random.Random,
    vocabulary: tuple[str, ...],
    length: int,
    max_tokens: int | None,
    stop: list[str],
) -> Generated:
    """`length` words (capped by `max_tokens`), cut before the first stop sequence."""
    budget = length if max_tokens is None else min(length, max_tokens)
    words = rng.choices(vocabulary, k=budget)
    pieces = [words[0].capitalize(), *(" " + word for word in words[1:])] if words else []
    if stop:
        text = "".join(pieces)
        cuts = [(text.find(sequence), sequence) for sequence in stop if sequence]
        found = [(cut, sequence) for cut, sequence in cuts if cut != -1]
        if found:
            cut, sequence = min(found)
            return Generated(_truncate(pieces, cut), "stop_sequence", sequence)
    return Generated(pieces, "length" if budget < length else "stop")


def _truncate(pieces: list[str], cut: int) -> list[str]:
    """The pieces that make up the first `cut` characters of their concatenation."""
    kept: list[str] = []
    consumed = 0
    for piece in pieces:
        if consumed + len(piece) >= cut:
            if cut > consumed:
                kept.append(piece[: cut - consumed])
            break
        kept.append(piece)
        consumed += len(piece)
    return kept


def value_for_schema(schema: dict[str, Any], rng: random.Random, vocabulary: tuple[str, ...]) -> Any:
    """A JSON value that validates against `schema` (objects carry their required properties)."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for combinator in ("anyOf", "oneOf", "allOf"):
        if schema.get(combinator):
            return value_for_schema(schema[combinator][0], rng, vocabulary)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties: dict[str, Any] = schema.get("properties", {})
        wanted = schema.get("required", list(properties))
        return {name: value_for_schema(properties.get(name, {}), rng, vocabulary) for name in wanted}
    if kind == "array":
        count = max(1, schema.get("minItems", 1))
        return [value_for_schema(schema.get("items", {}), rng, vocabulary) for _ in range(count)]
    if kind == "integer":
        return rng.randint(schema.get("minimum", 1), schema.get("maximum", 100))
    if kind == "number":
        return round(rng.uniform(schema.get("minimum", 0), schema.get("maximum", 100)), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return " ".join(rng.choice(vocabulary) for _ in range(2))
