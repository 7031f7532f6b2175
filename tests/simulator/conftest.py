"""A real simulator on a free port for every test, plus helpers to build long prompts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.simulator import SimulatorServer
from gateway.simulator.tokens import vocabulary


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


def long_text(words: int, salt: str = "") -> str:
    """`words` single-token words (so about `words` tokens), varied by `salt`."""
    vocab = vocabulary()
    offset = sum(map(ord, salt))
    return " ".join(vocab[(i * 7 + offset) % len(vocab)] for i in range(words))
