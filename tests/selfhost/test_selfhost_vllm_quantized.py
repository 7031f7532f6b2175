"""A compressed-tensors int8 W8A8 checkpoint (built by selfhost.tiny_model) served by real vLLM."""

import openai
import pytest

from selfhost.launcher import checkpoint_problems
from tests.selfhost.conftest import serving, tiny_deployment

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(scope="module")
def deployment(tiny_models):
    return tiny_deployment(tiny_models["w8a8"], quantization={"scheme": "int8-w8a8"})


@pytest.fixture(scope="module")
def replica(deployment, vllm_python, tmp_path_factory):
    with serving(deployment, vllm_python, tmp_path_factory.mktemp("w8a8-state")) as running:
        yield running


def test_catalogue_declaration_matches_the_checkpoint(deployment):
    assert checkpoint_problems(deployment) == []


def test_engine_loads_the_checkpoint_with_compressed_tensors(replica):
    with open(replica.log) as log:
        assert "quantization=compressed-tensors" in log.read()


async def test_w8a8_checkpoint_serves_chat(replica):
    async with openai.AsyncOpenAI(base_url=f"{replica.plan.base_url}/v1", api_key="unused") as client:
        response = await client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "Summarise the invoice."}],
            max_tokens=16,
            extra_body={"ignore_eos": True},
        )
    assert response.choices[0].message.content
    assert response.usage.completion_tokens == 16
