"""Deployment manifests, validated without a container engine or a cluster: the Helm chart rendered
(tests/deploy/helm_subset.py, plus the real `helm` when installed) and every object checked against
the Kubernetes JSON schemas (kubernetes-validate, strict); the compose file against the Compose
Specification schema; the gateway configs they ship loaded as Settings; the vLLM flags kept equal
to the self-hosted catalogue; the Dockerfile's paths checked against the tree.

compose_spec.json is the Compose Specification schema as shipped in the docker-compose 1.29.2 wheel
on PyPI (Apache-2.0)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from gateway.settings import Settings
from selfhost import catalogue, launcher
from tests.deploy.helm_subset import Renderer, TemplateError

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "tiergate"
COMPOSE = ROOT / "deploy" / "compose"
K8S_VERSION = "1.30.0"
SECRETS = {"secrets": {"adminKey": "admin", "databaseUrl": "postgresql://u:p@db:5432/tiergate"}}


def render(**values) -> list[dict]:
    return Renderer(CHART).manifests({**SECRETS, **values})


def by_kind(manifests: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for m in manifests:
        out.setdefault(m["kind"], []).append(m)
    return out


def catalogue_args(name: str) -> list[str]:
    [deployment] = [d for d in catalogue.load().deployments if d.name == name]
    return launcher.serve_args(deployment)


VARIANTS = {
    "defaults": {},
    "fixed-replicas": {"autoscaling": {"enabled": False}, "replicaCount": 4},
    "existing-secret": {"secrets": {"create": True, "existingSecret": "tiergate-prod"}},
    "vllm-and-tracing": {
        "vllm": {"enabled": True, "hfTokenSecret": "hf"},
        "tracing": {"exporter": "otlp", "otlpEndpoint": "http://otel:4318"},
        "nodeSelector": {"pool": "cpu"},
        "secrets": {
            **SECRETS["secrets"],
            "redisUrl": "redis://r:6379/0",
            "providerKeys": {"OPENAI_API_KEY": "sk"},
        },
    },
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_chart_objects_are_valid_kubernetes(variant):
    manifests = render(**VARIANTS[variant])
    assert manifests
    for manifest in manifests:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_gateway_scales_horizontally_with_an_hpa_and_a_pdb():
    kinds = by_kind(render())
    [deployment], [hpa], [pdb] = (
        kinds["Deployment"],
        kinds["HorizontalPodAutoscaler"],
        kinds["PodDisruptionBudget"],
    )
    assert "replicas" not in deployment["spec"]  # the HPA owns the replica count
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "tiergate",
    }
    assert hpa["spec"]["minReplicas"] >= pdb["spec"]["minAvailable"] + 1
    fixed = by_kind(render(autoscaling={"enabled": False}, replicaCount=4))
    assert "HorizontalPodAutoscaler" not in fixed and fixed["Deployment"][0]["spec"]["replicas"] == 4


def test_selectors_pick_exactly_their_own_pods():
    manifests = render(vllm={"enabled": True})
    pods = {
        (m["kind"], m["metadata"]["name"]): m["spec"]["template"]["metadata"]["labels"]
        for m in manifests
        if m["kind"] in ("Deployment", "Job")
    }

    def selected(selector: dict) -> set:
        return {name for name, labels in pods.items() if selector.items() <= labels.items()}

    kinds = by_kind(manifests)
    services = {s["metadata"]["name"]: selected(s["spec"]["selector"]) for s in kinds["Service"]}
    assert services == {
        "tiergate": {("Deployment", "tiergate")},
        "tiergate-vllm": {("Deployment", "tiergate-vllm")},
    }
    assert selected(kinds["PodDisruptionBudget"][0]["spec"]["selector"]["matchLabels"]) == {
        ("Deployment", "tiergate")
    }
    for deployment in kinds["Deployment"]:
        assert (
            deployment["spec"]["selector"]["matchLabels"].items()
            <= pods[("Deployment", deployment["metadata"]["name"])].items()
        )


def test_migrations_run_as_a_hook_job_before_the_pods():
    kinds = by_kind(render())
    [job], [deployment] = kinds["Job"], kinds["Deployment"]
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    migrate, gateway = (
        job["spec"]["template"]["spec"]["containers"][0],
        deployment["spec"]["template"]["spec"]["containers"][0],
    )
    assert (
        migrate["args"] == ["migrate"]
        and migrate["image"] == gateway["image"] == "ghcr.io/tiergate/tiergate:0.1.0"
    )
    assert {"name": "TIERGATE_AUTO_MIGRATE", "value": "false"} in gateway["env"]
    assert migrate["envFrom"] == gateway["envFrom"]
    assert "Job" not in by_kind(render(migrations={"enabled": False}))


def test_secrets_come_from_the_chart_or_an_existing_secret():
    kinds = by_kind(render())
    [secret] = kinds["Secret"]
    assert secret["stringData"]["TIERGATE_ADMIN_KEY"] == "admin"
    assert kinds["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["envFrom"] == [
        {"secretRef": {"name": "tiergate"}}
    ]
    external = by_kind(render(secrets={"existingSecret": "tiergate-prod"}))
    assert "Secret" not in external
    assert external["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["envFrom"] == [
        {"secretRef": {"name": "tiergate-prod"}}
    ]
    with pytest.raises(TemplateError, match=r"secrets\.adminKey is required"):
        Renderer(CHART).manifests({})


def test_configured_gateway_settings_are_valid_and_reach_the_vllm_service(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    kinds = by_kind(render(vllm={"enabled": True}))
    config = yaml.safe_load(kinds["ConfigMap"][0]["data"]["tiergate.yaml"])
    settings = Settings(**config)
    selfhost = next(d for d in settings.deployments if d.tier == "selfhost")
    vllm_service = next(s for s in kinds["Service"] if s["metadata"]["name"].endswith("-vllm"))
    assert selfhost.api_base == f"http://{vllm_service['metadata']['name']}:8000/v1"
    [vllm] = [d for d in kinds["Deployment"] if d["metadata"]["name"].endswith("-vllm")]
    container = vllm["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == [*catalogue_args("llama-8b-awq"), "--host", "0.0.0.0", "--port", "8000"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    served = container["args"][container["args"].index("--served-model-name") + 1]
    assert served == selfhost.model


def test_compose_file_follows_the_compose_specification(monkeypatch):
    schema = json.loads((Path(__file__).parent / "compose_spec.json").read_text())
    compose = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    jsonschema.validate(compose, schema)
    services = compose["services"]
    assert services["gateway"]["deploy"]["replicas"] >= 2 and "ports" not in services["gateway"]
    assert services["gateway"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert services["migrate"]["command"] == ["migrate"]
    assert services["redis"]["image"].startswith("redis:8")
    assert services["postgres"]["image"].startswith("postgres:")
    gpu = services["vllm"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    assert services["vllm"]["command"] == [
        *catalogue_args("llama-8b-awq"),
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
    ]
    assert re.search(r"server gateway:8080", (COMPOSE / "nginx.conf").read_text())
    for env in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.setenv(env, "x")
    settings = Settings(**yaml.safe_load((COMPOSE / "tiergate.yaml").read_text()))
    llama = settings.deployment("llama-8b")
    assert llama.api_base == "http://vllm:8000/v1" and llama.model == services["vllm"]["command"][2]


def test_dockerfile_copies_what_exists_and_runs_unprivileged():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(\S+)", dockerfile, re.M):
        assert (ROOT / source).exists(), source
    assert re.search(r"^USER 10001$", dockerfile, re.M)
    assert 'ENTRYPOINT ["gateway"]' in dockerfile
    # Alembic scripts land where gateway/db/engine.py looks for them (beside the installed package).
    assert "site-packages/migrations" in dockerfile


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm is not installed")
def test_real_helm_lint_and_template(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({**SECRETS, "vllm": {"enabled": True}}))
    subprocess.run(["helm", "lint", str(CHART), "-f", str(values)], check=True)
    rendered = subprocess.run(
        ["helm", "template", "tiergate", str(CHART), "-f", str(values)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    ours = render(vllm={"enabled": True})
    theirs = [d for d in yaml.safe_load_all(rendered) if d]
    assert sorted(json.dumps(d, sort_keys=True) for d in theirs) == sorted(
        json.dumps(d, sort_keys=True) for d in ours
    )
