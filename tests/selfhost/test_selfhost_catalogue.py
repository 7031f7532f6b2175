import json
import re
import shlex

import pytest
import yaml

from selfhost import catalogue as cat
from selfhost.launcher import checkpoint_problems, compose_services, plan


def write(tmp_path, data) -> str:
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def minimal(**overrides):
    return {
        "name": "m",
        "model": "org/model",
        "served_model_name": "m",
        "cost": {"hourly_usd": "1"},
        **overrides,
    }


def test_shipped_catalogue_is_valid_and_its_published_schema_is_current():
    catalogue = cat.load()
    assert {d.name for d in catalogue.deployments} >= {"tiny-cpu", "llama-8b-awq"}
    assert json.loads(cat.SCHEMA_PATH.read_text()) == cat.json_schema(), "run: python -m selfhost.catalogue"


@pytest.mark.parametrize(
    ("deployment", "message"),
    [
        (minimal(replicaz=2), "deployments.0.replicaz: Extra inputs are not permitted"),
        (minimal(quantization={"scheme": "awq", "checkpoint": False}), "needs a pre-quantized checkpoint"),
        (minimal(speculative={"method": "medusa", "num_speculative_tokens": 2}), "deployments.0.speculative"),
        (minimal(device="cpu", memory={"gpu_memory_utilization": 0.9}), "applies to device 'cuda' only"),
        (
            minimal(speculative={"method": "ngram", "num_speculative_tokens": 2, "prompt_lookup_min": 5}),
            "min",
        ),
        (minimal(name="Bad Name"), "deployments.0.name: String should match pattern"),
    ],
)
def test_invalid_catalogues_are_rejected_with_the_path_of_the_problem(tmp_path, deployment, message):
    with pytest.raises(cat.CatalogueError) as err:
        cat.load(write(tmp_path, {"version": 1, "deployments": [deployment]}))
    assert message in str(err.value)
    assert str(tmp_path) in str(err.value)


def test_two_deployments_may_not_share_a_port(tmp_path):
    data = {"deployments": [minimal(replicas=2), minimal(name="n", base_port=8101)]}
    with pytest.raises(cat.CatalogueError, match=re.escape("n and m both use 127.0.0.1:8101")):
        cat.load(write(tmp_path, data))


def test_plan_turns_a_gpu_deployment_into_one_exact_vllm_command_per_replica():
    d = cat.load().get("llama-8b-awq")
    first, second = plan(d, vllm="vllm")
    assert (first.id, first.base_url, second.base_url) == (
        "llama-8b-awq-0",
        "http://127.0.0.1:8100",
        "http://127.0.0.1:8101",
    )
    assert (first.env["CUDA_VISIBLE_DEVICES"], second.env["CUDA_VISIBLE_DEVICES"]) == ("0", "1")
    assert shlex.join(first.argv) == (
        "vllm serve hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4 --served-model-name llama-3.1-8b-instruct"
        " --dtype auto --enable-prompt-tokens-details --speculative-config"
        """ '{"method":"ngram","num_speculative_tokens":4,"prompt_lookup_max":4,"prompt_lookup_min":2}'"""
        " --max-num-seqs 256 --max-num-batched-tokens 8192 --enable-chunked-prefill --enable-prefix-caching"
        " --max-model-len 16384 --gpu-memory-utilization 0.9 --host 127.0.0.1 --port 8100"
    )


def test_tensor_parallel_replicas_get_disjoint_gpus(tmp_path):
    d = cat.Deployment.model_validate(minimal(gpus_per_replica=4, replicas=2))
    plans = plan(d, vllm="vllm")
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in plans] == ["0,1,2,3", "4,5,6,7"]
    assert "--tensor-parallel-size" in plans[0].argv


def test_cpu_deployment_sets_kv_cache_space_and_expands_the_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TIERGATE_CACHE_DIR", str(tmp_path))
    (p,) = plan(cat.load().get("tiny-cpu"), vllm="vllm")
    assert p.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert p.argv[2] == f"{tmp_path}/tiny-models/main"
    assert "CUDA_VISIBLE_DEVICES" not in p.env


def test_online_quantization_and_draft_model_speculation_flags(monkeypatch, tmp_path):
    monkeypatch.setenv("TIERGATE_CACHE_DIR", str(tmp_path))
    d = cat.Deployment.model_validate(
        minimal(
            quantization={"scheme": "int8-weight-only", "checkpoint": False},
            speculative={"method": "draft_model", "model": "{cache_dir}/draft", "num_speculative_tokens": 3},
            prefix_caching=False,
            batching={"chunked_prefill": False},
        )
    )
    argv = plan(d, vllm="vllm")[0].argv
    assert argv[argv.index("--quantization") + 1] == "int8_per_channel_weight_only"
    spec = json.loads(argv[argv.index("--speculative-config") + 1])
    assert spec == {"method": "draft_model", "model": f"{tmp_path}/draft", "num_speculative_tokens": 3}
    assert {"--no-enable-prefix-caching", "--no-enable-chunked-prefill"} <= set(argv)


@pytest.mark.parametrize(
    ("declared", "quantization_config", "problem"),
    [
        (None, None, None),
        ({"scheme": "awq"}, {"quant_method": "awq"}, None),
        ({"scheme": "int8-w8a8"}, None, "declares int8-w8a8 but the checkpoint is not quantized"),
        (None, {"quant_method": "gptq"}, "checkpoint is quantized (gptq)"),
        (
            {"scheme": "w4a16"},
            {"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {"num_bits": 4}}}},
            None,
        ),
    ],
)
def test_local_checkpoint_is_checked_against_the_declared_quantization(
    tmp_path, declared, quantization_config, problem
):
    config = {"architectures": ["LlamaForCausalLM"]}
    if quantization_config:
        config["quantization_config"] = quantization_config
    (tmp_path / "config.json").write_text(json.dumps(config))
    d = cat.Deployment.model_validate(minimal(model=str(tmp_path), quantization=declared))
    problems = checkpoint_problems(d)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1
        assert problem in problems[0]


def test_compose_manifest_maps_each_replica_to_its_gpus_and_port():
    services = compose_services(cat.load().get("llama-70b-w8a8"))
    service = services["llama-70b-w8a8-0"]
    assert service["ports"] == ["8120:8000"]
    assert service["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["0", "1", "2", "3"]
    assert service["command"][:1] == ["RedHatAI/Meta-Llama-3.1-70B-Instruct-quantized.w8a8"]
    assert service["command"][-4:] == ["--host", "0.0.0.0", "--port", "8000"]


def test_cli_plan_prints_the_commands_and_rejects_a_bad_catalogue(tmp_path):
    from typer.testing import CliRunner

    from selfhost.cli import selfhost_app

    runner = CliRunner()
    out = runner.invoke(selfhost_app, ["plan", "llama-8b-awq", "--format", "json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert [r["id"] for r in rows] == ["llama-8b-awq-0", "llama-8b-awq-1"]
    bad = runner.invoke(selfhost_app, ["plan", "--catalogue", str(write(tmp_path, {"deployments": "x"}))])
    assert bad.exit_code == 2
    assert "deployments: Input should be a valid list" in bad.output
    missing = runner.invoke(selfhost_app, ["plan", "nope"])
    assert missing.exit_code == 2
    assert "no deployment 'nope'" in missing.output
